"""Data-quality checks: definition, SQL push-down evaluation and streaming evaluation of rows.

Pure SQLAlchemy; no Django. Everything returned is JSON-safe so callers can store it as is.

Decisions worth knowing before changing anything here:

* ``unique`` counts *surplus duplicates*: ``count(col) - count(DISTINCT col)``. Three rows
  sharing one value are two failures; NULLs never fail ``unique``.
* Every check but ``not_null`` lets NULL pass: a missing value is ``not_null``'s business.
* ``matches_pattern`` uses search semantics (unanchored, like ``re.search``). Patterns are
  validated with Python's ``re``. SQLite runs them with Python's ``re`` too (the REGEXP function
  SQLAlchemy's pysqlite dialect registers); PostgreSQL runs them with ``~`` as POSIX advanced
  regular expressions, MariaDB with PCRE2's ``REGEXP`` and DuckDB with RE2's
  ``regexp_matches`` (both search semantics, as SQLAlchemy compiles ``regexp_match`` there).
  Stay in the common subset (classes, anchors, quantifiers, alternation);
  a pattern PostgreSQL rejects (named groups, for one) becomes that check's error, never the
  whole scan's. One quiet difference: Python's ``$`` also matches before a final newline.
* Stored naive date-times are taken to be UTC. ``not_future`` compares a DATE column with the
  UTC date of ``now`` and date-time columns with ``now`` itself. On SQLite, dates and
  date-times are ISO text, written with either a space or a ``T`` separator depending on the
  writer, so both sides go through ``julianday()`` and compare as instants, never as text.
  PostgreSQL, MariaDB and DuckDB compare typed DATE/TIMESTAMP columns with a typed ``now``.
* Connections are only read from. After a failed statement the connection's transaction is
  rolled back, because PostgreSQL refuses every later statement of a failed transaction: pass a
  connection from ``engine.connect()`` that holds no writes, not one inside ``engine.begin()``.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.elements import ColumnElement

CHECK_TYPES: tuple[str, ...] = (
    "not_null",
    "unique",
    "between",
    "not_negative",
    "expected_values",
    "matches_pattern",
    "max_length",
    "not_future",
    "row_count_between",
)

# Parameter names per check type; every name listed is accepted, nothing else is.
_PARAM_NAMES: dict[str, frozenset[str]] = {
    "not_null": frozenset(),
    "unique": frozenset(),
    "between": frozenset({"min", "max"}),
    "not_negative": frozenset(),
    "expected_values": frozenset({"values"}),
    "matches_pattern": frozenset({"pattern"}),
    "max_length": frozenset({"length"}),
    "not_future": frozenset(),
    "row_count_between": frozenset({"min", "max"}),
}

_TABLE_LEVEL_TYPES = frozenset({"row_count_between"})
_ERROR_MESSAGE_MAX = 300


class CheckDefinitionError(ValueError):
    """A check definition that cannot be evaluated; the message is meant for the user."""


class RowDecodeError(ValueError):
    """A value of a streamed row that cannot be read as its field's type."""

    def __init__(self, *, column: str, row_number: int, value: str, field_type: str) -> None:
        self.column = column
        self.row_number = row_number
        self.value = value
        self.field_type = field_type
        super().__init__(
            f"row {row_number}, column {column!r}: cannot read {value!r} as {field_type}"
        )


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """One check to evaluate. ``key`` is the caller's id and keys the results."""

    key: str
    type: str
    field: str | None = None
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class CheckResult:
    """``failed_count`` is None exactly when ``error`` says why the check could not run."""

    failed_count: int | None = None
    error: str | None = None
    # Filled by evaluate_rows only; SQL callers fetch examples with fetch_examples.
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.failed_count)


@dataclasses.dataclass
class Evaluation:
    records_scanned: int
    results: dict[str, CheckResult]
    # JSON-safe max of the high-water column over the scanned rows; see high_water_filter.
    high_water_mark: Any = None


class _CheckLike(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def field(self) -> str | None: ...

    @property
    def params(self) -> Mapping[str, Any]: ...


# ---------------------------------------------------------------------------------------------
# Definitions


def validate_check(type: str, field: str | None, params: Mapping[str, Any] | None) -> dict:
    """Return the normalized params of a check, or raise CheckDefinitionError saying why not."""
    if type not in _PARAM_NAMES:
        raise CheckDefinitionError(
            f"unknown check type {type!r}; expected one of: {', '.join(CHECK_TYPES)}"
        )
    if type in _TABLE_LEVEL_TYPES:
        if field:
            raise CheckDefinitionError(f"{type} applies to the whole table and takes no field")
    elif not field:
        raise CheckDefinitionError(f"{type} needs a field")
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise CheckDefinitionError(f"{type} params must be an object, not {params!r}")
    unknown = sorted(set(params) - _PARAM_NAMES[type])
    if unknown:
        raise CheckDefinitionError(f"unknown parameter(s) for {type}: {', '.join(unknown)}")
    return _NORMALIZERS.get(type, _no_params)(type, params)


def _no_params(type: str, params: Mapping[str, Any]) -> dict:
    return {}


def _normalize_range(type: str, params: Mapping[str, Any]) -> dict:
    low, high = params.get("min"), params.get("max")
    for name, value in (("min", low), ("max", high)):
        if value is not None and not _is_number(value):
            raise CheckDefinitionError(f"{type}.{name} must be a number, not {value!r}")
        if type == "row_count_between" and value is not None and (value < 0 or value % 1):
            raise CheckDefinitionError(f"{type}.{name} must be a whole number >= 0, not {value}")
    if low is None and high is None:
        raise CheckDefinitionError(f"{type} needs min, max or both")
    if low is not None and high is not None and low > high:
        raise CheckDefinitionError(f"{type}.min ({low}) is greater than {type}.max ({high})")
    if type == "row_count_between":
        low, high = _whole(low), _whole(high)
    return {"min": low, "max": high}


def _normalize_expected_values(type: str, params: Mapping[str, Any]) -> dict:
    values = _require(type, params, "values")
    if not isinstance(values, list | tuple) or not values:
        raise CheckDefinitionError(f"{type}.values must be a non-empty list")
    for value in values:
        if value is None:
            raise CheckDefinitionError(
                f"{type}.values cannot contain null; NULLs pass, use not_null to forbid them"
            )
        if not (isinstance(value, str | bool) or _is_number(value)):
            raise CheckDefinitionError(f"{type}.values holds {value!r}: not a string or number")
    return {"values": list(dict.fromkeys(values))}


def _normalize_pattern(type: str, params: Mapping[str, Any]) -> dict:
    pattern = _require(type, params, "pattern")
    if not isinstance(pattern, str) or not pattern:
        raise CheckDefinitionError(f"{type}.pattern must be a non-empty string")
    try:
        re.compile(pattern)
    except re.error as error:
        raise CheckDefinitionError(
            f"{type}.pattern {pattern!r} is not a valid regular expression: {error}"
        ) from None
    return {"pattern": pattern}


def _normalize_max_length(type: str, params: Mapping[str, Any]) -> dict:
    length = _require(type, params, "length")
    if not _is_number(length) or length % 1 or length <= 0:
        raise CheckDefinitionError(f"{type}.length must be a positive whole number, not {length!r}")
    return {"length": int(length)}


_NORMALIZERS: dict[str, Callable[[str, Mapping[str, Any]], dict]] = {
    "between": _normalize_range,
    "row_count_between": _normalize_range,
    "expected_values": _normalize_expected_values,
    "matches_pattern": _normalize_pattern,
    "max_length": _normalize_max_length,
}


def _require(type: str, params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise CheckDefinitionError(f"{type} needs the parameter {name!r}")
    return params[name]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def describe(check: _CheckLike) -> str:
    """A short sentence for humans, e.g. "quantity is not negative"."""
    subject, params = check.field or "", check.params
    match check.type:
        case "not_null":
            return f"{subject} is not null"
        case "unique":
            return f"{subject} is unique"
        case "not_negative":
            return f"{subject} is not negative"
        case "not_future":
            return f"{subject} is not in the future"
        case "between":
            return f"{subject} {_describe_range(params)}"
        case "row_count_between":
            return f"row count {_describe_range(params)}"
        case "expected_values":
            return f"{subject} is one of {_describe_values(params.get('values') or [])}"
        case "matches_pattern":
            return f"{subject} matches {params.get('pattern')}"
        case "max_length":
            return f"{subject} is at most {params.get('length')} characters long"
    return f"{check.type}({subject})" if subject else check.type


def _describe_range(params: Mapping[str, Any]) -> str:
    low, high = params.get("min"), params.get("max")
    if low is None:
        return f"is at most {high}"
    if high is None:
        return f"is at least {low}"
    return f"is between {low} and {high}"


def _describe_values(values: Sequence[Any], shown: int = 5) -> str:
    listed = ", ".join(repr(value) for value in values[:shown])
    hidden = len(values) - shown
    return f"{listed} and {hidden} more" if hidden > 0 else listed


# ---------------------------------------------------------------------------------------------
# JSON-safe values and high-water marks


def json_safe(value: Any) -> Any:
    """A value as stored in JSON; Decimals stay exact (int, float only when lossless, else str)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)  # UUIDs, intervals, driver-specific types


def high_water_filter(table: sa.FromClause, column: str, mark: Any) -> ColumnElement[bool] | None:
    """The incremental-scan filter ``column > mark`` for a mark from Evaluation.high_water_mark.

    The mark went through json_safe, so dates come back as ISO text and are decoded here
    according to the column's type before binding.
    """
    if mark is None:
        return None
    target = table.c[column]
    return target > _decode_mark(target.type, mark)


def _decode_mark(type_: sa.types.TypeEngine, mark: Any) -> Any:
    if isinstance(mark, str):
        if isinstance(type_, sa.DateTime):
            return datetime.fromisoformat(mark)
        if isinstance(type_, sa.Date):
            return date.fromisoformat(mark)
        if isinstance(type_, sa.Numeric):
            return Decimal(mark)
    return mark


# ---------------------------------------------------------------------------------------------
# SQL push-down evaluation


@dataclasses.dataclass(frozen=True)
class _Source:
    """The rows a scan reads: a FROM clause plus an optional filter applied on it."""

    from_: sa.FromClause
    where: ColumnElement[bool] | None

    def select(self, *columns: Any) -> sa.Select:
        statement = sa.select(*columns).select_from(self.from_)
        return statement if self.where is None else statement.where(self.where)


def _scan_source(
    table: sa.FromClause,
    where: ColumnElement[bool] | None,
    record_limit: int | None,
    high_water_column: str | None,
) -> _Source:
    if record_limit is None:
        return _Source(table, where)
    if record_limit <= 0:
        raise ValueError(f"record_limit must be positive, not {record_limit}")
    limited = sa.select(table)
    if where is not None:
        limited = limited.where(where)
    if high_water_column:
        # The mark is the max of the rows read: without this order a LIMIT could read rows
        # past unread ones, and the next incremental scan would skip those for good.
        limited = limited.order_by(table.c[high_water_column])
    return _Source(limited.limit(record_limit).subquery("scanned_rows"), None)


@dataclasses.dataclass
class _PreparedCheck:
    spec: CheckSpec
    params: dict
    measure: ColumnElement[Any] | None = None  # None: table-level or not runnable
    failed_count: int | None = None
    error: str | None = None

    def result(self, records: int) -> CheckResult:
        if self.error is not None:
            return CheckResult(error=self.error)
        if self.spec.type == "row_count_between":
            return CheckResult(failed_count=int(not _within(records, self.params)))
        return CheckResult(failed_count=int(self.failed_count or 0))


# Per dialect: whether distinct counts get statements of their own. PostgreSQL plans any
# aggregate holding a COUNT(DISTINCT) serially; without it, the one-pass aggregate of every
# other check runs on parallel workers (8.1 s -> 5.7 s at 10^7 rows), and the distinct count
# runs beside it on a second connection. SQLite has no parallel plans and runs REGEXP in
# Python under the GIL: one pass, a second connection measured no faster. DuckDB spends 5-7%
# less CPU on the other checks with the distinct count in a statement of its own.
_DISTINCT_APART: dict[str, bool] = {"postgresql": True, "duckdb": True}
# Dialects whose statements run one after the other on the one connection: DuckDB already
# spreads one statement over every core, and side by side the two took ~13% more CPU time
# for the same wall time (BENCHMARKS.md, Scan and Profile).
_ONE_CONNECTION: frozenset[str] = frozenset({"duckdb"})


@dataclasses.dataclass
class _Statement:
    """One aggregate over the scanned rows; ``base`` adds the row count and high-water max."""

    checks: list[_PreparedCheck]
    base: bool = False


def _plan_statements(dialect: str, checks: Sequence[_PreparedCheck]) -> list[_Statement]:
    apart = _DISTINCT_APART.get(dialect, False)
    distinct = [check for check in checks if apart and check.spec.type == "unique"]
    main = [check for check in checks if check not in distinct]
    return [_Statement(main, base=True), *(_Statement([check]) for check in distinct)]


def evaluate_sql(
    conn: sa.Connection,
    table: sa.FromClause,
    checks: Sequence[CheckSpec],
    *,
    where: ColumnElement[bool] | None = None,
    record_limit: int | None = None,
    high_water_column: str | None = None,
    now: datetime,
    more_connections: Callable[[int], sa.Connection] | None = None,
    max_connections: int = 1,
) -> Evaluation:
    """Evaluate all checks of one table in as few passes as the dialect runs best.

    The checks are grouped into statements (``_plan_statements``): one aggregate with the row
    count and every check the dialect evaluates well together, plus, where that keeps the
    aggregate parallel, one statement per distinct count. With ``more_connections`` (the i-th
    extra connection, 0-based; the caller owns and reuses them) up to ``max_connections``
    statements run at once, so the wall time approaches the slowest statement, not the sum
    (not on DuckDB, which spreads each statement over the cores itself: ``_ONE_CONNECTION``).
    Concurrent statements read separate snapshots: a table written meanwhile may give counts
    taken a moment apart.

    A failing statement does not fall back to one pass per check: each check is first tried
    on one sample row (cheap, and it catches dropped columns and patterns the database
    rejects), the statement runs again without the broken ones, and only a failure that needs
    the data is found by halving the statement. A failure of the table itself (or a cancelled
    query) is raised.
    """
    source = _scan_source(table, where, record_limit, high_water_column)
    prepared = [_prepare(source.from_, spec, conn.dialect.name, now) for spec in checks]
    runnable = [check for check in prepared if check.measure is not None]
    base_columns = [sa.func.count().label("records")]
    if high_water_column:
        base_columns.append(sa.func.max(source.from_.c[high_water_column]).label("high_water"))
    statements = _plan_statements(conn.dialect.name, runnable)

    def run(statement: _Statement, on: sa.Connection) -> sa.Row | None:
        return _evaluate_statement(
            on, source, base_columns if statement.base else [], statement.checks, now
        )

    parallel = more_connections and conn.dialect.name not in _ONE_CONNECTION
    workers = min(max_connections, len(statements)) if parallel else 1
    if workers <= 1:
        rows = [run(statement, conn) for statement in statements]
    else:
        rows = _run_concurrently(
            statements, run, [conn, *map(more_connections, range(workers - 1))]
        )
    row = rows[0]

    records = int(row.records)
    return Evaluation(
        records_scanned=records,
        results={check.spec.key: check.result(records) for check in prepared},
        high_water_mark=json_safe(row.high_water) if high_water_column else None,
    )


def _run_concurrently(
    statements: Sequence[_Statement],
    run: Callable[[_Statement, sa.Connection], sa.Row | None],
    connections: Sequence[sa.Connection],
) -> list[sa.Row | None]:
    """Run the statements on a pool of connections, each used by one thread at a time."""
    free: queue.SimpleQueue[sa.Connection] = queue.SimpleQueue()
    for connection in connections:
        free.put(connection)

    def on_a_free_connection(statement: _Statement) -> sa.Row | None:
        connection = free.get()
        try:
            return run(statement, connection)
        finally:
            free.put(connection)

    with ThreadPoolExecutor(len(connections), thread_name_prefix="scan-statement") as pool:
        futures = [pool.submit(on_a_free_connection, statement) for statement in statements]
        # All finish before the first error is raised: no statement is left running on a
        # connection the caller goes on using.
        wait(futures)
        return [future.result() for future in futures]


def _execute_aggregate(
    conn: sa.Connection,
    source: _Source,
    base_columns: list[ColumnElement[Any]],
    checks: list[_PreparedCheck],
) -> sa.Row:
    # Positional labels: check keys and field names need not be valid SQL identifiers.
    measures = [check.measure.label(f"check_{index}") for index, check in enumerate(checks)]
    row = conn.execute(source.select(*base_columns, *measures)).one()
    for index, check in enumerate(checks):
        check.failed_count = row._mapping[f"check_{index}"]
    return row


def _evaluate_statement(
    conn: sa.Connection,
    source: _Source,
    base_columns: list[ColumnElement[Any]],
    checks: list[_PreparedCheck],
    now: datetime | None,
) -> sa.Row | None:
    """Fill the checks' counts from one statement; returns its row (the base columns).

    On failure: with ``now``, probe each check on one row and run again without the broken
    ones; otherwise (or if none broke on one row) each half on its own, until the broken
    checks are alone.
    """
    if not checks and not base_columns:
        return None
    try:
        return _execute_aggregate(conn, source, base_columns, checks)
    except sa_exc.DBAPIError as error:
        _recover(conn, error)
        if not checks:
            raise  # the row count failed: the table itself is unreadable, that is the caller's
        if len(checks) == 1 and not base_columns:
            checks[0].error = _short_error(error)
            return None
    if now is not None and (broken := _probe(conn, source, checks, now)):
        healthy = [check for check in checks if check not in broken]
        return _evaluate_statement(conn, source, base_columns, healthy, None)
    # Only the data makes it fail (a value that does not cast...): find the checks by halving.
    half = len(checks) // 2
    row = _evaluate_statement(conn, source, base_columns, checks[:half], None)
    _evaluate_statement(conn, source, [], checks[half:], None)
    return row


def _probe(
    conn: sa.Connection, source: _Source, checks: list[_PreparedCheck], now: datetime
) -> list[_PreparedCheck]:
    """The checks that fail on a one-row sample, each with its error set."""
    broken = []
    for check in checks:
        # Only the check's own column: the sample must not fail for another check's reason.
        column = source.from_.c[check.spec.field]
        sample = source.select(column).limit(1).subquery("sample_row")
        probe = _prepare(sample, check.spec, conn.dialect.name, now)
        if probe.measure is None:
            continue
        try:
            conn.execute(sa.select(probe.measure).select_from(sample)).one()
        except sa_exc.DBAPIError as error:
            _recover(conn, error)
            check.error = _short_error(error)
            broken.append(check)
    return broken


def _execute(conn: sa.Connection, statement: sa.Executable) -> sa.CursorResult[Any]:
    """Execute; on failure leave the connection usable (see _recover), then raise."""
    try:
        return conn.execute(statement)
    except sa_exc.DBAPIError as error:
        _recover(conn, error)
        raise


def _recover(conn: sa.Connection, error: sa_exc.DBAPIError) -> None:
    """Re-raise errors that must stop the scan; otherwise make the connection usable again."""
    # An Abort cancels the running query (psycopg cancel, sqlite3 interrupt): retrying check by
    # check would turn one fast cancel into N slow queries.
    if error.connection_invalidated or _is_cancellation(error.orig):
        raise error
    conn.rollback()


def _is_cancellation(orig: BaseException | None) -> bool:
    # PostgreSQL's query_canceled, sqlite3's interrupt, MySQL's ER_QUERY_INTERRUPTED (1317),
    # DuckDB's InterruptException.
    return (
        getattr(orig, "sqlstate", None) == "57014"
        or str(orig) == "interrupted"
        or (getattr(orig, "args", None) or (None,))[0] == 1317
        or type(orig).__name__ == "InterruptException"
    )


def _short_error(error: sa_exc.DBAPIError) -> str:
    lines = str(error.orig or error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:_ERROR_MESSAGE_MAX]


def _within(value: float, bounds: Mapping[str, Any]) -> bool:
    low, high = bounds.get("min"), bounds.get("max")
    return (low is None or value >= low) and (high is None or value <= high)


def _prepare(from_: sa.FromClause, spec: CheckSpec, dialect: str, now: datetime) -> _PreparedCheck:
    try:
        params = validate_check(spec.type, spec.field, spec.params)
    except CheckDefinitionError as error:
        return _PreparedCheck(spec, {}, error=str(error))
    if spec.type in _TABLE_LEVEL_TYPES:
        return _PreparedCheck(spec, params)
    if spec.field not in from_.c:
        return _PreparedCheck(spec, params, error=f"column {spec.field!r} not found")
    column = from_.c[spec.field]
    if spec.type == "unique":
        measure = sa.func.count(column) - sa.func.count(sa.distinct(column))
    else:
        measure = _count_rows_where(
            _failure_predicate(column, spec.type, params, dialect, now), dialect
        )
    return _PreparedCheck(spec, params, measure=measure)


def _count_rows_where(condition: ColumnElement[bool], dialect: str) -> ColumnElement[int]:
    """The number of rows for which ``condition`` is true, in the cheapest form per dialect.

    ``count(*) FILTER (WHERE ...)`` where the dialect has it: SQLite spent ~10% less CPU on
    it than on ``SUM(CASE ...)`` (BENCHMARKS.md, Scan and Profile). DuckDB's ``count_if``
    spent 8-10% less CPU than FILTER there. MySQL/MariaDB have no FILTER; their 1 is a
    constant, one bound value fewer per check.
    """
    if dialect == "duckdb":
        return sa.func.count_if(condition)
    if dialect in ("sqlite", "postgresql"):
        return sa.func.count().filter(condition)
    return sa.func.count(sa.case((condition, sa.literal_column("1"))))


def _failure_predicate(
    column: ColumnElement[Any], type: str, params: Mapping[str, Any], dialect: str, now: datetime
) -> ColumnElement[bool]:
    """SQL that is true for a failing row; NULL (not true) lets the row pass."""
    match type:
        case "not_null":
            return column.is_(None)
        case "not_negative":
            return column < 0
        case "between":
            return sa.or_(
                *([column < params["min"]] if params["min"] is not None else []),
                *([column > params["max"]] if params["max"] is not None else []),
            )
        case "expected_values":
            return column.not_in(params["values"])
        case "matches_pattern":
            return ~_as_text(column).regexp_match(params["pattern"])
        case "max_length":
            return text_length(column, dialect) > params["length"]
        case "not_future":
            return _is_future(column, dialect, now)
    raise AssertionError(f"no SQL predicate for {type}")


def text_length(column: ColumnElement[Any], dialect: str) -> ColumnElement[int]:
    """The length of a value's text in characters (MySQL's length() counts bytes)."""
    length = sa.func.char_length if dialect == "mysql" else sa.func.length
    return length(_as_text(column))


def _as_text(column: ColumnElement[Any]) -> ColumnElement[str]:
    return column if isinstance(column.type, sa.String) else sa.cast(column, sa.String)


def _is_future(column: ColumnElement[Any], dialect: str, now: datetime) -> ColumnElement[bool]:
    now_utc = _as_utc(now)
    if dialect == "sqlite":
        # ISO text on both sides; julianday() reads any ISO layout (and offsets) as an instant.
        # ``now`` as a Julian day computed here: one julianday() call per row, not two.
        return sa.func.julianday(column) > sa.literal(_julian_day(now_utc), sa.Float)
    if isinstance(column.type, sa.DateTime):
        if column.type.timezone:
            return column > sa.literal(now_utc, sa.DateTime(timezone=True))
        return column > sa.literal(now_utc.replace(tzinfo=None), sa.DateTime())
    if isinstance(column.type, sa.Date):
        return column > sa.literal(now_utc.date(), sa.Date())
    return column > sa.literal(now_utc, sa.DateTime(timezone=True))


def _julian_day(moment: datetime) -> float:
    """SQLite's julianday() of a UTC instant."""
    return moment.timestamp() / 86400 + 2440587.5


def _as_utc(moment: datetime) -> datetime:
    """Naive datetimes are read as UTC, like naive stored values."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def fetch_examples(
    conn: sa.Connection,
    table: sa.FromClause,
    check: CheckSpec,
    *,
    where: ColumnElement[bool] | None = None,
    record_limit: int | None = None,
    high_water_column: str | None = None,
    limit: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Up to ``limit`` failing source rows as JSON-safe dicts.

    Pass the same where/record_limit/high_water_column as to evaluate_sql so the examples come
    from the rows that were scanned. For ``unique`` these are all rows whose value occurs more
    than once, grouped by value; ``row_count_between`` has no failing rows to show.
    """
    params = validate_check(check.type, check.field, check.params)
    if check.type in _TABLE_LEVEL_TYPES or limit <= 0:
        return []
    source = _scan_source(table, where, record_limit, high_water_column)
    column = source.from_.c[check.field]
    statement = source.select(source.from_)
    if check.type == "unique":
        # Only the first ``limit`` duplicated values can appear among the examples: bounding
        # them spares joining every duplicated value back and sorting all their rows (10x
        # faster on PostgreSQL at 10^6 rows). A derived table, because MySQL refuses LIMIT
        # directly inside IN.
        duplicated = (
            source.select(column)
            .where(column.is_not(None))
            .group_by(column)
            .having(sa.func.count() > 1)
            .order_by(column)
            .limit(limit)
            .subquery("duplicated")
        )
        statement = statement.where(column.in_(sa.select(duplicated.c[0]))).order_by(column)
    else:
        statement = statement.where(
            _failure_predicate(column, check.type, params, conn.dialect.name, now)
        )
    rows = _execute(conn, statement.limit(limit)).mappings()
    return [{name: json_safe(value) for name, value in row.items()} for row in rows]


# ---------------------------------------------------------------------------------------------
# Streaming evaluation of rows read from a file

_NUMERIC_TYPES = frozenset({"integer", "float", "decimal"})
_TEMPORAL_TYPES = frozenset({"date", "datetime"})
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


def _decode_boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(text)


def _decode_decimal(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(text) from None


def _decode_datetime(text: str) -> datetime:
    return _as_utc(datetime.fromisoformat(text.strip()))


_DECODERS: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "float": float,
    "decimal": _decode_decimal,
    "string": str,
    "other": str,
    "date": lambda text: date.fromisoformat(text.strip()),
    "datetime": _decode_datetime,
    "boolean": _decode_boolean,
}


class _Duplicates:
    """Fails every non-null value already seen: the count equals SQL's surplus duplicates.

    The one check that needs memory: it keeps each distinct value once.
    """

    def __init__(self) -> None:
        self.seen: set[Any] = set()

    def __call__(self, value: Any) -> bool:
        if value is None:
            return False
        if value in self.seen:
            return True
        self.seen.add(value)
        return False


# Checks on the text of a value read it as written in the file, not as re-printed after decoding.
_TEXT_CHECKS = frozenset({"matches_pattern", "max_length"})


@dataclasses.dataclass
class _RowCheck:
    spec: CheckSpec
    params: dict
    reads: tuple[str, str] | None = None  # (field, type to decode it as); None: not per row
    fails: Callable[[Any], bool] | None = None
    result: CheckResult = dataclasses.field(default_factory=lambda: CheckResult(failed_count=0))


def evaluate_rows(
    rows: Iterable[Mapping[str, str | None]],
    checks: Sequence[CheckSpec],
    *,
    field_types: Mapping[str, str],
    now: datetime,
    example_limit: int = 10,
) -> Evaluation:
    """Evaluate checks over text rows (e.g. a CSV) with the semantics of evaluate_sql.

    Streams: memory stays constant but for ``unique``, which remembers each distinct value.
    Empty strings and missing keys are NULL. Only the fields checks use are decoded; a value
    that does not decode raises RowDecodeError (``row_number`` counts data rows from 1).
    Examples are the failing rows as given; for ``unique``, the repeated occurrences.
    """
    prepared = [_prepare_row_check(spec, field_types, now) for spec in checks]
    active = [check for check in prepared if check.reads is not None]
    reads = {check.reads for check in active}
    records = 0
    for records, row in enumerate(rows, start=1):
        values = {
            (field, as_type): _decode(row.get(field), field, as_type, records)
            for field, as_type in reads
        }
        for check in active:
            if check.fails(values[check.reads]):
                check.result.failed_count += 1
                if len(check.result.examples) < example_limit:
                    check.result.examples.append(dict(row))
    for check in prepared:
        if check.spec.type == "row_count_between" and check.result.error is None:
            check.result.failed_count = int(not _within(records, check.params))
    return Evaluation(
        records_scanned=records, results={check.spec.key: check.result for check in prepared}
    )


def _decode(text: str | None, column: str, as_type: str, row_number: int) -> Any:
    if text is None or text == "":
        return None
    try:
        return _DECODERS[as_type](text)
    except ValueError:
        raise RowDecodeError(
            column=column, row_number=row_number, value=text, field_type=as_type
        ) from None


def _prepare_row_check(spec: CheckSpec, field_types: Mapping[str, str], now: datetime) -> _RowCheck:
    try:
        params = validate_check(spec.type, spec.field, spec.params)
    except CheckDefinitionError as error:
        return _RowCheck(spec, {}, result=CheckResult(error=str(error)))
    if spec.type in _TABLE_LEVEL_TYPES:
        return _RowCheck(spec, params)
    field_type = field_types.get(spec.field)
    if field_type not in _DECODERS:
        return _RowCheck(
            spec, params, result=CheckResult(error=f"column {spec.field!r} has no known type")
        )
    try:
        fails = _row_predicate(spec.type, params, field_type, now)
    except CheckDefinitionError as error:
        return _RowCheck(spec, params, result=CheckResult(error=str(error)))
    as_type = "string" if spec.type in _TEXT_CHECKS else field_type
    return _RowCheck(spec, params, reads=(spec.field, as_type), fails=fails)


def _row_predicate(
    type: str, params: Mapping[str, Any], field_type: str, now: datetime
) -> Callable[[Any], bool]:
    """A function telling whether a decoded value fails; NULL fails only not_null."""
    if type in {"between", "not_negative"} and field_type not in _NUMERIC_TYPES:
        raise CheckDefinitionError(f"{type} needs a numeric column, not a {field_type} one")
    if type == "not_future" and field_type not in _TEMPORAL_TYPES:
        raise CheckDefinitionError(
            f"{type} needs a date or datetime column, not a {field_type} one"
        )
    match type:
        case "not_null":
            return lambda value: value is None
        case "unique":
            return _Duplicates()
        case "not_negative":
            return lambda value: value is not None and value < 0
        case "between":
            return lambda value: value is not None and not _within(value, params)
        case "expected_values":
            expected = _expected_set(params["values"], field_type)
            return lambda value: value is not None and value not in expected
        case "matches_pattern":
            pattern = re.compile(params["pattern"])
            return lambda text: text is not None and pattern.search(text) is None
        case "max_length":
            return lambda text: text is not None and len(text) > params["length"]
        case "not_future":
            now_utc = _as_utc(now)
            limit = now_utc.date() if field_type == "date" else now_utc
            return lambda value: value is not None and value > limit
    raise AssertionError(f"no row predicate for {type}")


def _expected_set(values: Iterable[Any], field_type: str) -> frozenset[Any]:
    # Decoded values are typed, so textual expectations on typed columns are decoded alike.
    decode = _DECODERS[field_type]
    try:
        return frozenset(decode(value) if isinstance(value, str) else value for value in values)
    except ValueError as error:
        raise CheckDefinitionError(
            f"expected_values.values do not all read as {field_type}: {error}"
        ) from None
