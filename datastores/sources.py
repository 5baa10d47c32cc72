"""Connections to source and enrichment datastores, with cancellation of in-flight queries.

Abort must be fast even inside a long source query, so the watchdog thread of a running task
calls ``SourceConnection.cancel()``, which uses the driver's own thread-safe cancel:
``sqlite3.Connection.interrupt()`` and psycopg's ``cancel_safe()``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool


class SourceError(Exception):
    """A datastore URL that cannot be used; the message is safe to show (no secrets)."""


def parse_url(url: str) -> sa.URL:
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


def create_engine(url: str) -> Engine:
    parsed = parse_url(url)
    connect_args: dict = {}
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        connect_args["connect_timeout"] = settings.SOURCE_CONNECT_TIMEOUT
    elif backend == "sqlite":
        connect_args["timeout"] = settings.SOURCE_CONNECT_TIMEOUT
        # SQLite would silently create an empty file for a wrong path; a source must exist.
        if parsed.database and parsed.database != ":memory:" and "mode=" not in str(parsed):
            from pathlib import Path

            if not Path(parsed.database).exists():
                raise SourceError(f"SQLite database file not found: {parsed.database}")
    # NullPool: a Run owns its connections for its lifetime and closes them when it ends.
    return sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)


def redact(message: str, url: str) -> str:
    """Remove the password of ``url`` from a driver message, whatever the driver printed."""
    try:
        password = make_url(url).password
    except Exception:
        password = None
    if password:
        message = message.replace(str(password), "***")
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

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self._lock = threading.Lock()
        self._conn: Connection | None = None

    def __enter__(self) -> SourceConnection:
        try:
            self._conn = self.engine.connect()
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise SourceError(
                f"Cannot connect to datastore: {describe_error(exc, self.url)}"
            ) from None
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
        if hasattr(driver_conn, "interrupt"):  # sqlite3
            driver_conn.interrupt()
        elif hasattr(driver_conn, "cancel_safe"):  # psycopg 3
            driver_conn.cancel_safe(timeout=2.0)
        elif hasattr(driver_conn, "cancel"):
            driver_conn.cancel()
