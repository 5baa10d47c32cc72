"""Row locks that web requests and housekeeping never wait on for long.

A worker holds its Run's row lock for the length of a unit's commit; a worker that is frozen
(SIGSTOP, a VM pause, a partition) inside that transaction holds it until PostgreSQL ends the
session (``idle_in_transaction_session_timeout``). Nobody else may queue behind it: a page or
an Abort would hang, and housekeeping tasks would pile up on the lock and take every slot.
"""

from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, OperationalError, connection, transaction

from runs.errors import Unavailable

LOCK_NOT_AVAILABLE = "55P03"


@contextmanager
def brief_lock_waits(what: str = "The Run"):
    """A transaction in which a row lock held longer than ``RUN_LOCK_TIMEOUT`` gives up.

    Raises ``Unavailable`` (HTTP 503: nothing changed, try again) instead of waiting. SQLite has
    no row locks: its single write lock is bounded by the connection's busy timeout.
    """
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT set_config('lock_timeout', %s, true)",
                        [f"{int(settings.RUN_LOCK_TIMEOUT * 1000)}ms"],
                    )
            yield
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise Unavailable(
            f"{what} is being written by its worker right now; nothing was changed. "
            "Try again in a few seconds."
        ) from None


@contextmanager
def limited_lock_waits():
    """For a housekeeping pass (the reaper's, the schedules'): a row lock held longer than
    ``RUN_LOCK_TIMEOUT`` fails the statement instead of waiting; the row is looked at again at
    the next pass.

    Set for the session, since a pass runs many transactions, and put back at the end: workers
    keep their connection between tasks (``CELERY_DB_REUSE_MAX``), and the next task on it
    must not inherit the limit (an advisory lock or another service's wait would fail too).
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s,"
                       " false)", [f"{int(settings.RUN_LOCK_TIMEOUT * 1000)}ms"])
        previous = cursor.fetchone()[0]
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, false)", [previous])
        except DatabaseError:
            # The connection broke during the pass: it is discarded (close_old_connections),
            # and a new one starts without the limit.
            pass
