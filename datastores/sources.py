"""Connections to source and enrichment datastores, with cancellation of in-flight queries.

Abort must be fast even inside a long source query, so the watchdog thread of a running task
calls ``SourceConnection.cancel()``, which uses the driver's own thread-safe cancel:
``sqlite3.Connection.interrupt()`` (DuckDB's alike), psycopg's ``cancel_safe()``, and for
MySQL/MariaDB a ``KILL QUERY`` sent from a second session.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from datastores import url_policy
from datastores.models import SECRET_OPTION, mask_url
from datastores.url_policy import UNIFORM_REFUSAL, UrlRefused

logger = logging.getLogger(__name__)


class SourceError(Exception):
    """A datastore URL that cannot be used; the message is safe to show (no secrets)."""


class SourceUnavailable(SourceError):
    """Vetting refused the URL, or the connection failed.

    The message is the same for every cause (no answer to "is this port open?", "does this
    file exist?"); ``detail`` says which, for the worker's log and for admins.
    """

    def __init__(self, url: str, detail: str):
        super().__init__(UNIFORM_REFUSAL)
        self.detail = detail
        # Operators find the cause in the worker's log; the Run shows the uniform message.
        logger.warning("Cannot connect to datastore %s: %s", mask_url(url), detail)


def parse_url(url: str) -> sa.URL:
    """Syntax and driver only (cheap, no network): a launch-time sanity check."""
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise SourceError(f"Invalid datastore URL: {redact(str(exc), url)}") from None
    try:
        # The dialect loads without its driver; fail here, not deep inside a worker.
        dialect.import_dbapi()
    except ImportError:
        raise SourceError(
            f"Invalid datastore URL: the {parsed.drivername} driver is not installed"
        ) from None
    return parsed


# DuckDB settings of every connection: a DuckDB file can hold views that read other files or
# URLs (read_csv, httpfs) or load extensions; none of it runs, and SQL cannot turn it back on.
DUCKDB_LOCKED_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "lock_configuration": True,
}


def create_engine(url: str, *, writable: bool = False) -> Engine:
    """An engine for a vetted URL only: the policy is checked at every connection.

    ``writable`` is for enrichment datastores; a DuckDB source is opened read-only, so several
    worker processes can read one file at once (a writer holds it alone).
    """
    try:
        vetted = url_policy.vet(url)
    except UrlRefused as exc:
        raise SourceUnavailable(url, f"URL refused: {exc.detail}") from None
    parsed = vetted.url
    connect_args: dict = dict(vetted.connect_args)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "mysql"):
        connect_args["connect_timeout"] = settings.SOURCE_CONNECT_TIMEOUT
    elif backend == "sqlite":
        connect_args["timeout"] = settings.SOURCE_CONNECT_TIMEOUT
    elif backend == "duckdb":
        connect_args["config"] = dict(DUCKDB_LOCKED_CONFIG)
        connect_args["read_only"] = not writable
    # NullPool: a Run owns its connections for its lifetime and closes them when it ends.
    return sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)


def redact(message: str, url: str) -> str:
    """Remove the secrets of ``url`` (its password, secret options) from a driver message."""
    try:
        parsed = make_url(url)
    except Exception:
        return message
    secrets = [parsed.password] + [
        value for key, value in parsed.query.items() if SECRET_OPTION.search(key)
    ]
    for secret in secrets:
        for text in secret if isinstance(secret, tuple) else (secret,):
            if text:
                message = message.replace(str(text), "***")
    return message


def describe_error(exc: BaseException, url: str) -> str:
    """One line, no traceback, no secrets."""
    if isinstance(exc, SQLAlchemyError):
        text = str(getattr(exc, "orig", None) or exc)
    else:
        text = str(exc)
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return redact(text, url)[:500]


class SourceConnection:
    """One open connection to a datastore that another thread may cancel."""

    def __init__(self, url: str, *, writable: bool = False):
        self.url = url
        self.engine = create_engine(url, writable=writable)
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def __enter__(self) -> SourceConnection:
        try:
            self._conn = self.engine.connect()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise SourceUnavailable(self.url, describe_error(exc, self.url)) from None
        return self

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self.engine.dispose()

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "use SourceConnection as a context manager"
        return self._conn

    @contextmanager
    def transaction(self):
        with self.conn.begin():
            yield self.conn

    def cancel(self) -> None:
        """Interrupt the statement running on this connection, from any thread."""
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed:
                return
            try:
                driver_conn = conn.connection.driver_connection
            except Exception:
                return
        if hasattr(driver_conn, "interrupt"):  # sqlite3, DuckDB
            driver_conn.interrupt()
        elif hasattr(driver_conn, "thread_id"):  # PyMySQL: KILL QUERY from a second session
            with self.engine.connect() as killer:
                killer.exec_driver_sql(f"KILL QUERY {int(driver_conn.thread_id())}")
        elif hasattr(driver_conn, "cancel_safe"):  # psycopg 3
            driver_conn.cancel_safe(timeout=2.0)
        elif hasattr(driver_conn, "cancel"):
            driver_conn.cancel()
