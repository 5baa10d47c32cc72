"""Field profiles by SQL push-down, and checks inferred from them.

Profiling reads a table in one aggregate statement (count, nulls, distinct, min/max, mean,
std-dev, lengths for every column at once) plus one bounded statement for the top values of
low-cardinality columns. Everything in a profile is JSON-safe.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from .checks import _as_text, _as_utc, json_safe, text_length, validate_check

FIELD_TYPES: tuple[str, ...] = (
    "integer",
    "float",
    "decimal",
    "string",
    "date",
    "datetime",
    "boolean",
    "other",
)
_NUMERIC_TYPES = frozenset({"integer", "float", "decimal"})

# PostgreSQL returns at most 1664 columns per SELECT, SQLite 2000 (and it joins at most 500 UNION
# terms): wider tables are profiled in a few statements rather than failing.
_COLUMNS_PER_AGGREGATE_STATEMENT = 125  # at most 7 aggregates each
_COLUMNS_PER_TOP_VALUES_STATEMENT = 400

# Patterns inference may propose; both read the same in Python's re and PostgreSQL's ARE.
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_DIGITS = r"[0-9]+"


@dataclasses.dataclass
class FieldProfile:
    field_type: str
    count: int  # non-null values
    nulls: int
    distinct: int | None = None  # None where the type has no equality (field_type "other")
    min: Any = None
    max: Any = None
    mean: float | None = None
    std_dev: float | None = None  # population standard deviation
    min_length: int | None = None
    max_length: int | None = None
    top_values: list[list[Any]] = dataclasses.field(default_factory=list)  # [[value, count]]


@dataclasses.dataclass
class TableProfile:
    record_count: int
    fields: dict[str, FieldProfile]


@dataclasses.dataclass(frozen=True)
class InferredCheck:
    type: str
    field: str | None
    params: dict


def classify_type(type_: sa.types.TypeEngine) -> str:
    """The field type name of a SQLAlchemy column type (one of FIELD_TYPES)."""
    if isinstance(type_, sa.Interval):
        return "other"  # an Interval is a TypeDecorator over DateTime on most dialects
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Float):  # before Numeric: Float subclasses it
        return "float"
    if isinstance(type_, sa.Numeric):
        return "decimal"
    if isinstance(type_, sa.DateTime):
        return "datetime"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.String | sa.Uuid):
        return "string"
    return "other"


@dataclasses.dataclass(frozen=True)
class _ProfiledColumn:
    name: str
    column: ColumnElement[Any]
    field_type: str
    label: str  # SQL-safe prefix of this column's aggregate labels

    def aggregates(self, dialect: str) -> list[sa.Label[Any]]:
        column, field_type = self.column, self.field_type
        measures: dict[str, ColumnElement[Any]] = {"count": sa.func.count(column)}
        if field_type != "other":
            measures["distinct"] = sa.func.count(sa.distinct(column))
        if field_type not in {"other", "boolean"}:  # PostgreSQL has no min(boolean)
            value = _as_text(column) if field_type == "string" else column
            measures["min"], measures["max"] = sa.func.min(value), sa.func.max(value)
        if field_type in _NUMERIC_TYPES:
            # Float keeps squares of integers from overflowing, and avg(x*x) - avg(x)^2 gives
            # the variance on SQLite, which has no stddev aggregate.
            number = sa.cast(column, sa.Float)
            measures["mean"] = sa.func.avg(number)
            measures["mean_square"] = sa.func.avg(number * number)
        if field_type == "string":
            length = text_length(column, dialect)
            measures["min_length"], measures["max_length"] = (
                sa.func.min(length),
                sa.func.max(length),
            )
        return [measure.label(f"{self.label}_{name}") for name, measure in measures.items()]

    def profile(self, row: sa.RowMapping, record_count: int) -> FieldProfile:
        def measure(name: str) -> Any:
            return row.get(f"{self.label}_{name}")

        count = int(measure("count"))
        mean, mean_square = measure("mean"), measure("mean_square")
        std_dev = None
        if mean is not None and mean_square is not None:
            variance = float(mean_square) - float(mean) * float(mean)  # inf, not OverflowError
            std_dev = math.sqrt(max(variance, 0.0)) if math.isfinite(variance) else None
        return FieldProfile(
            field_type=self.field_type,
            count=count,
            nulls=record_count - count,
            distinct=measure("distinct"),
            min=json_safe(measure("min")),
            max=json_safe(measure("max")),
            mean=_finite_float(mean),
            std_dev=_finite_float(std_dev),
            min_length=measure("min_length"),
            max_length=measure("max_length"),
        )


def _finite_float(value: float | Decimal | None) -> float | None:
    # JSON has no NaN or infinity (PostgreSQL's jsonb refuses them).
    return float(value) if value is not None and math.isfinite(value) else None


def profile_table(
    conn: sa.Connection,
    table: sa.FromClause,
    *,
    record_limit: int | None = None,
    top_values: int = 10,
    low_cardinality_max: int = 50,
) -> TableProfile:
    """Profile every column of ``table`` (the first ``record_limit`` rows when given)."""
    source = table
    if record_limit is not None:
        if record_limit <= 0:
            raise ValueError(f"record_limit must be positive, not {record_limit}")
        source = sa.select(table).limit(record_limit).subquery("profiled_rows")
    columns = [
        _ProfiledColumn(column.name, column, classify_type(column.type), f"f{index}")
        for index, column in enumerate(source.c)
    ]
    record_count, fields = 0, {}
    for chunk in _chunks(columns, _COLUMNS_PER_AGGREGATE_STATEMENT):
        aggregates = [label for column in chunk for label in column.aggregates(conn.dialect.name)]
        statement = sa.select(sa.func.count().label("records"), *aggregates).select_from(source)
        row = conn.execute(statement).mappings().one()
        record_count = int(row["records"])
        fields.update({column.name: column.profile(row, record_count) for column in chunk})

    low_cardinality = [
        column
        for column in columns
        if column.field_type != "other"
        and 0 < (fields[column.name].distinct or 0) <= low_cardinality_max
    ]
    if top_values > 0:
        for chunk in _chunks(low_cardinality, _COLUMNS_PER_TOP_VALUES_STATEMENT):
            for column, values in _top_values(conn, source, chunk, top_values).items():
                fields[column].top_values = values
    return TableProfile(record_count=record_count, fields=fields)


def _chunks[T](items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _top_values(
    conn: sa.Connection, source: sa.FromClause, columns: Sequence[_ProfiledColumn], limit: int
) -> dict[str, list[list[Any]]]:
    """The most frequent values of several columns in one UNION ALL statement.

    Values keep their SQL type (and the dialect's result processing) instead of being cast to
    text: each branch puts its values in the slot of its column's type and typed NULLs in the
    other slots. Slots are per type, not per column, so the statement grows linearly with the
    number of columns.
    """
    slot_types: dict[str, sa.types.TypeEngine] = {}
    for column in columns:
        slot_types.setdefault(_type_key(column, conn.dialect), column.column.type)
    slots = list(slot_types)
    slot_of = [slots.index(_type_key(column, conn.dialect)) for column in columns]

    branches = []
    for index, column in enumerate(columns):
        frequency = sa.func.count()
        counted = (
            sa.select(column.column.label("value"), frequency.label("frequency"))
            .select_from(source)
            .where(column.column.is_not(None))
            .group_by(column.column)
            .order_by(frequency.desc(), column.column)
            .limit(limit)
            .subquery()
        )
        values = [
            counted.c.value if number == slot_of[index] else sa.cast(sa.null(), slot_types[slot])
            for number, slot in enumerate(slots)
        ]
        branches.append(
            sa.select(
                sa.literal(index).label("column_index"),
                counted.c.frequency,
                *(value.label(f"slot_{number}") for number, value in enumerate(values)),
            )
        )
    statement = branches[0] if len(branches) == 1 else sa.union_all(*branches)

    found: dict[str, list[tuple[Any, int]]] = {column.name: [] for column in columns}
    for row in conn.execute(statement).mappings():
        index = row["column_index"]
        value = row[f"slot_{slot_of[index]}"]
        found[columns[index].name].append((value, int(row["frequency"])))
    return {
        name: [[json_safe(value), frequency] for value, frequency in _by_frequency(pairs)]
        for name, pairs in found.items()
    }


def _type_key(column: _ProfiledColumn, dialect: sa.Dialect) -> str:
    try:
        return str(column.column.type.compile(dialect=dialect))
    except sa.exc.CompileError:
        # A type MySQL cannot name alone (VARCHAR without a length, as catalogued), though it
        # casts to it (CHAR) fine.
        return repr(column.column.type)


def _by_frequency(pairs: list[tuple[Any, int]]) -> list[tuple[Any, int]]:
    # UNION ALL keeps no order: most frequent first, then by value, like each branch's ORDER BY.
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))


# ---------------------------------------------------------------------------------------------
# Inference


def infer_checks(profile: TableProfile, *, level: int, now: datetime) -> list[InferredCheck]:
    """Checks that hold on the profiled data, more of them as ``level`` (0-5) rises.

    1: not_null, not_negative, expected_values, not_future. 2: also between, matches_pattern,
    unique, max_length. 3 to 5: also row_count_between (record count ±50%). Every check is
    valid and passes on the data it was inferred from; an empty table yields none.
    """
    if not 0 <= level <= 5:
        raise ValueError(f"inference level must be between 0 and 5, not {level}")
    if level == 0 or profile.record_count == 0:
        return []
    proposals: list[tuple[str, str | None, dict]] = []
    for name, field in profile.fields.items():
        proposals += [(type, name, params) for type, params in _level_one(field, now)]
        if level >= 2:
            proposals += [(type, name, params) for type, params in _level_two(field)]
    if level >= 3:
        count = profile.record_count
        bounds = {"min": math.floor(count * 0.5), "max": math.ceil(count * 1.5)}
        proposals.append(("row_count_between", None, bounds))
    return [
        InferredCheck(type, field, validate_check(type, field, params))
        for type, field, params in proposals
    ]


def _level_one(field: FieldProfile, now: datetime) -> Iterator[tuple[str, dict]]:
    if field.nulls == 0:
        yield "not_null", {}
    if field.field_type in _NUMERIC_TYPES and _finite(field.min) and _exact(field.min) >= 0:
        yield "not_negative", {}
    few_strings = field.field_type == "string" and field.count >= 20 and (field.distinct or 0) <= 10
    if few_strings and _all_values_known(field):
        yield "expected_values", {"values": [value for value, _ in field.top_values]}
    temporal = field.field_type in {"date", "datetime"} and field.max is not None
    if temporal and _not_after_now(field.field_type, field.max, now):
        yield "not_future", {}


def _level_two(field: FieldProfile) -> Iterator[tuple[str, dict]]:
    if field.field_type in _NUMERIC_TYPES and _finite(field.min) and _finite(field.max):
        yield "between", {"min": _bound(field.min, -1), "max": _bound(field.max, +1)}
    if field.field_type == "string":
        pattern = _evident_pattern(field)
        if pattern:
            yield "matches_pattern", {"pattern": pattern}
        if field.max_length:
            yield "max_length", {"length": field.max_length}
    if field.field_type not in {"other", "boolean"} and 0 < field.count == field.distinct:
        yield "unique", {}


def _all_values_known(field: FieldProfile) -> bool:
    """Top values list every distinct value, so a rule true of them is true of the column."""
    return bool(field.distinct) and len(field.top_values) == field.distinct


def _evident_pattern(field: FieldProfile) -> str | None:
    """A pattern only when every value plainly has it: fixed-length digits, or e-mail."""
    if not _all_values_known(field) or field.distinct < 2:
        return None
    values = [value for value, _ in field.top_values]
    if not all(isinstance(value, str) for value in values):
        return None
    if all(re.fullmatch(_DIGITS, value) for value in values) and len(set(map(len, values))) == 1:
        return f"^[0-9]{{{len(values[0])}}}$"
    if all(re.fullmatch(_EMAIL, value) for value in values):
        return f"^{_EMAIL}$"
    return None


def _not_after_now(field_type: str, latest: str, now: datetime) -> bool:
    now_utc = _as_utc(now)
    if field_type == "date":
        return date.fromisoformat(latest) <= now_utc.date()
    return _as_utc(datetime.fromisoformat(latest)) <= now_utc


def _finite(value: int | float | str | None) -> bool:
    """False for a missing extreme and for NaN and infinities, which json_safe keeps as text."""
    return value is not None and _exact(value).is_finite()


def _exact(value: int | float | str) -> Decimal:
    # Profiles keep Decimals that floats cannot hold as text (see json_safe).
    return Decimal(value) if isinstance(value, int | float) else Decimal(str(value))


def _bound(value: int | float | str, direction: int) -> int | float:
    """``value`` as a JSON number, rounded outwards (-1 down, +1 up) when a float cannot hold it.

    An inward rounding would make the inferred between fail on its own extreme value.
    """
    if isinstance(value, int):
        return value
    exact = _exact(value)
    approximation = float(exact)
    if (Decimal(approximation) - exact) * direction < 0:
        approximation = math.nextafter(approximation, direction * math.inf)
    return approximation
