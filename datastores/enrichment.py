"""Writing tables into a datastore's enrichment datastore (Export and Materialize).

Every written table is *replaced*: dropped, re-created and filled inside one enrichment
transaction, so a reader sees either the previous table or the complete new one, never half
of it, and an aborted or failed write leaves the previous table in place. PostgreSQL has
transactional DDL; SQLite has it too, but Python's sqlite3 driver only opens a transaction
before DML, so the DROP/CREATE would commit on their own without the explicit BEGIN below.

Column types are generic SQLAlchemy types, so a table read from one dialect can be created on
another (SQLite <-> PostgreSQL and any other dialect with these generic types).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# PostgreSQL truncates longer identifiers silently, which could make two tables collide.
MAX_TABLE_NAME = 63

# Generic types that every tested dialect creates and round-trips. Anything else (ARRAY,
# INET, MONEY, dialect types without a generic form) is re-typed from its values.
_PORTABLE = (
    sa.Boolean,
    sa.Integer,  # SmallInteger and BigInteger subclass it
    sa.Float,  # Double subclasses it
    sa.Numeric,
    sa.String,  # Text, Unicode, UnicodeText subclass it
    sa.Date,
    sa.DateTime,
    sa.Time,
    sa.Interval,
    sa.LargeBinary,
    sa.Uuid,
    sa.JSON,
)


class TableNameError(ValueError):
    """An enrichment table name the destination cannot hold."""


def enrichment_table_name(prefix: str, *parts: str) -> str:
    """``<prefix>_<parts...>`` with every character outside [A-Za-z0-9_] replaced by ``_``."""
    name = re.sub(r"\W", "_", "_".join((prefix, *parts)), flags=re.ASCII)
    if len(name) > MAX_TABLE_NAME:
        raise TableNameError(
            f"Enrichment table name {name!r} is longer than {MAX_TABLE_NAME} characters."
        )
    return name


@contextmanager
def replacing_transaction(conn: Connection) -> Iterator[Connection]:
    """One enrichment transaction for DROP + CREATE + INSERTs (see the module doc)."""
    if conn.in_transaction():
        conn.rollback()
    with conn.begin():
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        yield conn


def replace_table(
    conn: Connection,
    table: sa.Table,
    batches: Iterable[Sequence[dict[str, Any]]],
    *,
    checkpoint: Callable[[], None],
) -> tuple[int, int]:
    """Replace ``table`` with the rows of ``batches``; return (rows, batches) written.

    ``checkpoint`` runs before each batch; whatever it raises (an Abort) rolls the whole
    replacement back and leaves the previous table as it was.
    """
    rows = count = 0
    with replacing_transaction(conn):
        table.drop(conn, checkfirst=True)
        table.create(conn)
        for batch in batches:
            checkpoint()
            if batch:
                conn.execute(table.insert(), list(batch))
                rows += len(batch)
                count += 1
        checkpoint()
    return rows, count


# -- generic column types ------------------------------------------------------------------------
Converter = Callable[[Any], Any]


def generic_type(type_: sa.types.TypeEngine) -> sa.types.TypeEngine | None:
    """A dialect-neutral equivalent of a reflected column type, or None if there is none."""
    if isinstance(type_, sa.types.NullType | sa.ARRAY):
        return None
    try:
        generic = type_.as_generic()
    except NotImplementedError:
        return None
    if isinstance(generic, sa.Enum):
        # An Enum would create a named type (PostgreSQL) or a CHECK constraint; a snapshot
        # only needs the values.
        return sa.String(max((len(v) for v in generic.enums), default=None) or None)
    if isinstance(generic, sa.String):
        # Collations are dialect-specific ("C", "NOCASE"...); the copy uses the default one.
        # Some dialects need a VARCHAR length: an unbounded string becomes TEXT.
        return type(generic)(length=generic.length) if generic.length else sa.Text()
    if not isinstance(generic, _PORTABLE):
        return None
    return generic


def type_from_value(value: Any) -> tuple[sa.types.TypeEngine, Converter | None]:
    """Column type (and value converter) for a column known only by one of its values."""
    # bool before int: bool subclasses int.
    simple: list[tuple[type, sa.types.TypeEngine]] = [
        (bool, sa.Boolean()),
        (int, sa.BigInteger()),
        (float, sa.Double()),
        (Decimal, sa.Numeric()),
        (datetime, sa.DateTime(timezone=isinstance(value, datetime) and value.tzinfo is not None)),
        (date, sa.Date()),
        (time, sa.Time()),
        (timedelta, sa.Interval()),
        (bytes | bytearray | memoryview, sa.LargeBinary()),
        (uuid.UUID, sa.Uuid()),
        (str, sa.Text()),
        (dict | list, sa.JSON()),
    ]
    for python_type, column_type in simple:
        if isinstance(value, python_type):
            return column_type, None
    return sa.Text(), as_text  # network addresses, ranges, geometry...: their text form


def as_text(value: Any) -> Any:
    return None if value is None else str(value)


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def value_converter(
    column_type: sa.types.TypeEngine, dialect: str, converter: Converter | None
) -> Converter | None:
    """SQLite stores datetimes as text and drops the offset: write aware values as UTC."""
    if dialect == "sqlite" and isinstance(column_type, sa.DateTime):
        if converter is None:
            return _naive_utc
        return lambda value: _naive_utc(converter(value))
    return converter
