"""Time as Assay's database tells it.

Heartbeats, abort requests and message sends are written by different hosts (workers, web,
beat) and compared by another one (the reaper): their clocks must not matter, so every time
that liveness depends on is written and compared with the database's clock.
"""

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, Value
from django.db.models.functions import Now


def ago(seconds: float) -> ExpressionWrapper:
    """The database's now minus ``seconds``, as an expression for filters."""
    return ExpressionWrapper(
        Now() - Value(timedelta(seconds=seconds), output_field=DurationField()),
        output_field=DateTimeField(),
    )


def db_now() -> datetime:
    """The database's current time (one round trip), for values written through ``create``."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')")
            return datetime.fromisoformat(cursor.fetchone()[0]).replace(tzinfo=UTC)
        cursor.execute("SELECT STATEMENT_TIMESTAMP()")
        return cursor.fetchone()[0]
