"""The data-quality check engine (datastores.quality.checks) on SQLite, PostgreSQL, MariaDB
and DuckDB."""

from __future__ import annotations

import csv
import io
import json
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from datastores.quality import (
    CheckDefinitionError,
    CheckSpec,
    RowDecodeError,
    classify_type,
    describe,
    evaluate_rows,
    evaluate_sql,
    fetch_examples,
    high_water_filter,
    json_safe,
    validate_check,
)
from tests.databases import throwaway_mariadb_database, throwaway_postgres_database

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)

metadata = sa.MetaData()
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sku", sa.String(20)),
    sa.Column("quantity", sa.Integer),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("status", sa.String(20)),
    sa.Column("code", sa.String(40)),
    sa.Column("shipped_on", sa.Date),
    sa.Column("created_at", sa.DateTime),  # naive, UTC by convention
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
# A second table whose date-times were written by another tool, with a "T" separator.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("happened_at", sa.DateTime),
)


ORDER_ROWS = [
    # id, sku, quantity, price, status, code, shipped_on, created_at, updated_at (both UTC)
    ("1", "A1", "5", "10.50", "new", "12345", "2024-06-01", "2024-06-15 11:00", "2024-06-15 11:00"),
    ("2", "A2", "-1", "0", "sent", "1234x", "2024-06-15", "2024-06-15 12:30", "2024-06-15 11:30"),
    ("3", "A2", None, None, None, None, None, None, None),
    ("4", "A3", "99", "500", "lost", "99999", "2024-06-16", "2024-06-14 00:00", "2024-06-16 00:00"),
    ("5", "A2", "0", "5.00", "new", "abcdef", "2023-01-01", "2023-01-01 00:00", "2023-01-01 00:00"),
    ("6", None, "7", "12.25", "new", "54321", "2024-06-14", "2024-06-15 12:00", "2024-06-15 13:00"),
]  # fmt: skip
COLUMN_NAMES = [column.name for column in orders.c]
_DECODE = {
    "id": int,
    "quantity": int,
    "price": Decimal,
    "shipped_on": date.fromisoformat,
    "created_at": datetime.fromisoformat,
    "updated_at": lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC),
}


def _order_record(row: tuple[str | None, ...]) -> dict[str, object]:
    return {
        name: None if text is None else _DECODE.get(name, str)(text)
        for name, text in zip(COLUMN_NAMES, row, strict=True)
    }


# Each check with its failed count on ORDER_ROWS at NOW.
EXPECTED_FAILURES = [
    (CheckSpec("sku-not-null", "not_null", "sku"), 1),
    (CheckSpec("quantity-not-null", "not_null", "quantity"), 1),
    (CheckSpec("sku-unique", "unique", "sku"), 2),  # A2 three times: two surplus duplicates
    (CheckSpec("id-unique", "unique", "id"), 0),
    (CheckSpec("quantity-between", "between", "quantity", {"min": 0, "max": 10}), 2),
    (CheckSpec("quantity-at-most", "between", "quantity", {"min": None, "max": 10}), 1),
    (CheckSpec("price-between", "between", "price", {"min": 0, "max": 100.5}), 1),
    (CheckSpec("quantity-not-negative", "not_negative", "quantity"), 1),
    (CheckSpec("price-not-negative", "not_negative", "price"), 0),
    (CheckSpec("status-expected", "expected_values", "status", {"values": ["new", "sent"]}), 1),
    (CheckSpec("code-pattern", "matches_pattern", "code", {"pattern": "^[0-9]{5}$"}), 2),
    (CheckSpec("code-length", "max_length", "code", {"length": 5}), 1),
    (CheckSpec("shipped-not-future", "not_future", "shipped_on"), 1),  # today passes
    (CheckSpec("created-not-future", "not_future", "created_at"), 1),  # exactly now passes
    (CheckSpec("updated-not-future", "not_future", "updated_at"), 2),
    (CheckSpec("rows-too-few", "row_count_between", None, {"min": 1, "max": 5}), 1),
    (CheckSpec("rows-fine", "row_count_between", None, {"min": 6}), 0),
]
CHECKS = [check for check, _ in EXPECTED_FAILURES]


def _spec(key: str) -> CheckSpec:
    return next(check for check in CHECKS if check.key == key)


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres_source),
        pytest.param("mariadb", marks=pytest.mark.mariadb_source),
        "duckdb",
    ],
)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    with _database_url(request.param, tmp_path_factory) as url:
        engine = sa.create_engine(url)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(orders.insert(), [_order_record(row) for row in ORDER_ROWS])
            # Literal text, so SQLite keeps the "T" layout instead of SQLAlchemy's own.
            conn.execute(
                sa.text(
                    "INSERT INTO events (id, happened_at) VALUES "
                    "(1, '2024-06-15T11:59:59'), (2, '2024-06-15T12:00:01'), (3, NULL)"
                )
            )
        yield engine
        engine.dispose()


@contextmanager
def _database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('quality') / 'source.db'}"
    elif backend == "duckdb":
        yield f"duckdb:///{tmp_path_factory.mktemp('quality') / 'source.duckdb'}"
    elif backend == "mariadb":
        with throwaway_mariadb_database() as url:
            yield url
    else:
        with throwaway_postgres_database() as url:
            yield url


@pytest.fixture
def conn(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as connection:
        yield connection


@contextmanager
def recorded_statements(engine: sa.Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _failed_counts(evaluation) -> dict[str, int | None]:
    return {key: result.failed_count for key, result in evaluation.results.items()}


# ---------------------------------------------------------------------------------------------
# Definitions


@pytest.mark.parametrize(
    ("type_", "field", "params", "message"),
    [
        ("nope", "x", {}, "unknown check type 'nope'; expected one of: not_null, unique"),
        ("not_null", None, {}, "not_null needs a field"),
        ("not_null", "x", {"strict": True}, "unknown parameter(s) for not_null: strict"),
        ("row_count_between", "x", {"min": 1}, "row_count_between applies to the whole table"),
        ("row_count_between", None, {"min": 10, "max": 2}, "min (10) is greater than"),
        ("row_count_between", None, {"min": 1.5}, "must be a whole number >= 0"),
        ("between", "x", {}, "between needs min, max or both"),
        ("between", "x", {"min": None, "max": None}, "between needs min, max or both"),
        ("between", "x", {"min": 5, "max": 1}, "between.min (5) is greater than between.max (1)"),
        ("between", "x", {"min": "1"}, "between.min must be a number, not '1'"),
        ("between", "x", {"min": True}, "between.min must be a number, not True"),
        ("between", "x", {"low": 1}, "unknown parameter(s) for between: low"),
        ("expected_values", "x", {}, "expected_values needs the parameter 'values'"),
        ("expected_values", "x", {"values": []}, "expected_values.values must be a non-empty"),
        ("expected_values", "x", {"values": ["a", None]}, "cannot contain null"),
        (
            "matches_pattern",
            "x",
            {"pattern": "(abc"},
            "matches_pattern.pattern '(abc' is not a valid regular expression: "
            "missing ), unterminated subpattern at position 0",
        ),
        ("matches_pattern", "x", {"pattern": ""}, "must be a non-empty string"),
        ("max_length", "x", {"length": 0}, "max_length.length must be a positive whole number"),
        ("max_length", "x", {"length": 2.5}, "max_length.length must be a positive whole number"),
    ],
)
def test_invalid_definitions_are_rejected_with_a_clear_message(type_, field, params, message):
    with pytest.raises(CheckDefinitionError) as raised:
        validate_check(type_, field, params)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("type_", "field", "params", "normalized"),
    [
        ("not_null", "x", None, {}),
        ("between", "x", {"min": 1}, {"min": 1, "max": None}),
        ("between", "x", {"min": -1.5, "max": 2}, {"min": -1.5, "max": 2}),
        ("row_count_between", "", {"max": 20.0}, {"min": None, "max": 20}),
        ("expected_values", "x", {"values": ["b", "a", "b", 3]}, {"values": ["b", "a", 3]}),
        ("matches_pattern", "x", {"pattern": r"^\d+$"}, {"pattern": r"^\d+$"}),
        ("max_length", "x", {"length": 40.0}, {"length": 40}),
    ],
)
def test_valid_definitions_are_normalized(type_, field, params, normalized):
    assert validate_check(type_, field, params) == normalized


@pytest.mark.parametrize(
    ("check", "text"),
    [
        (_spec("quantity-not-negative"), "quantity is not negative"),
        (_spec("quantity-between"), "quantity is between 0 and 10"),
        (_spec("quantity-at-most"), "quantity is at most 10"),
        (_spec("status-expected"), "status is one of 'new', 'sent'"),
        (_spec("code-pattern"), "code matches ^[0-9]{5}$"),
        (_spec("code-length"), "code is at most 5 characters long"),
        (_spec("shipped-not-future"), "shipped_on is not in the future"),
        (_spec("rows-fine"), "row count is at least 6"),
        (
            CheckSpec("k", "expected_values", "grade", {"values": list("abcdefg")}),
            "grade is one of 'a', 'b', 'c', 'd', 'e' and 2 more",
        ),
    ],
)
def test_describe(check, text):
    assert describe(check) == text


# ---------------------------------------------------------------------------------------------
# SQL evaluation


def _unique_checks(checks) -> int:
    return sum(check.type == "unique" for check in checks)


def test_every_check_type_counts_its_failures_in_one_pass_per_dialect_plan(engine, conn):
    with recorded_statements(engine) as statements:
        evaluation = evaluate_sql(conn, orders, CHECKS, now=NOW)

    if engine.dialect.name in ("sqlite", "mysql"):
        assert len(statements) == 1
    else:
        # PostgreSQL: the aggregate stays parallel-safe, each distinct count runs apart;
        # DuckDB: the other checks' aggregate is cheaper without it.
        assert len(statements) == 1 + _unique_checks(CHECKS)
        assert "DISTINCT" not in statements[0]
        assert all("count(DISTINCT" in statement for statement in statements[1:])
    assert evaluation.records_scanned == len(ORDER_ROWS)
    assert _failed_counts(evaluation) == {check.key: n for check, n in EXPECTED_FAILURES}
    assert all(result.error is None for result in evaluation.results.values())
    assert evaluation.high_water_mark is None


def test_not_future_reads_iso_text_with_either_separator(conn):
    check = CheckSpec("k", "not_future", "happened_at")
    evaluation = evaluate_sql(conn, events, [check], now=NOW)

    assert evaluation.results["k"].failed_count == 1
    assert [row["id"] for row in fetch_examples(conn, events, check, limit=5, now=NOW)] == [2]


def test_now_may_be_naive_utc_or_in_another_time_zone(conn):
    check = _spec("created-not-future")
    for now in (NOW.replace(tzinfo=None), NOW.astimezone(timezone(timedelta(hours=-5)))):
        assert evaluate_sql(conn, orders, [check], now=now).results[check.key].failed_count == 1


def test_a_broken_check_gets_its_own_error_and_the_others_their_results(engine, conn):
    # What Assay believes the table looks like after someone dropped a column.
    stale = sa.table("orders", sa.column("sku", sa.String), sa.column("ghost", sa.Integer))
    checks = [
        CheckSpec("sku", "not_null", "sku"),
        CheckSpec("ghost", "not_null", "ghost"),
        CheckSpec("dup", "unique", "sku"),
    ]
    with recorded_statements(engine) as statements:
        evaluation = evaluate_sql(conn, stale, checks, now=NOW)

    # The combined statement, one one-row probe per check, the statement without the broken
    # check: never one full pass per check.
    apart = engine.dialect.name in ("postgresql", "duckdb")
    combined = 1 + _unique_checks(checks) if apart else 1
    probes = 2 if apart else len(checks)
    assert len(statements) == combined + probes + 1
    assert sum(" LIMIT " in statement for statement in statements) == probes
    assert evaluation.records_scanned == len(ORDER_ROWS)
    assert evaluation.results["sku"].failed_count == 1
    assert evaluation.results["dup"].failed_count == 2
    ghost = evaluation.results["ghost"]
    assert ghost.failed_count is None
    assert "ghost" in ghost.error
    assert "\n" not in ghost.error and "Traceback" not in ghost.error
    # The connection is usable again (PostgreSQL aborts the transaction of a failed statement).
    assert evaluate_sql(conn, orders, checks[:1], now=NOW).results["sku"].failed_count == 1


def test_an_unanchored_pattern_matches_anywhere_in_the_value_on_every_dialect(conn):
    # Search semantics, like re.search: "12345" contains three digits; only "abcdef" has none.
    check = CheckSpec("digits", "matches_pattern", "code", {"pattern": "[0-9]{3}"})
    evaluation = evaluate_sql(conn, orders, [check], now=NOW)

    assert evaluation.results["digits"].failed_count == 1
    examples = fetch_examples(conn, orders, check, limit=5, now=NOW)
    assert [row["code"] for row in examples] == ["abcdef"]


def test_a_pattern_only_python_understands_fails_alone_on_postgresql(engine, conn):
    # Named groups are Python syntax: SQLite runs Python's re, MariaDB PCRE2 and DuckDB RE2
    # know them too; PostgreSQL refuses the pattern.
    checks = [
        CheckSpec("named", "matches_pattern", "code", {"pattern": "^(?P<digits>[0-9]{5})$"}),
        _spec("code-length"),
    ]
    evaluation = evaluate_sql(conn, orders, checks, now=NOW)

    assert evaluation.results["code-length"].failed_count == 1
    named = evaluation.results["named"]
    if engine.dialect.name in ("sqlite", "mysql", "duckdb"):
        assert named.failed_count == 2
    else:
        assert named.failed_count is None
        assert "regular expression" in named.error


def test_a_check_failing_only_on_some_rows_is_found_by_halving(engine, conn):
    # Every check passes on the one-row probe; one of them fails on a later row only.
    # (A division by zero on the last row; the probe reads the first.)
    if engine.dialect.name == "sqlite":
        conn.connection.dbapi_connection.create_function(
            "fail_on_last", 1, lambda value: 1 / (value < len(ORDER_ROWS))
        )
        failing = sa.func.fail_on_last(orders.c.id)
    elif engine.dialect.name == "mysql":
        # MySQL divides by zero into NULL; a scalar subquery of two rows is an error.
        failing = (
            sa.select(sa.literal(1))
            .union_all(sa.select(sa.literal(1)).where(orders.c.id >= len(ORDER_ROWS)))
            .scalar_subquery()
        )
    elif engine.dialect.name == "duckdb":
        # DuckDB divides by zero into NULL; text that is no number fails its cast.
        failing = sa.cast(sa.case((orders.c.id < len(ORDER_ROWS), "1"), else_="x"), sa.Integer)
    else:
        failing = 1 / sa.case((orders.c.id < len(ORDER_ROWS), 1), else_=0)
    table = sa.select(orders, failing.label("fragile")).subquery("fragile_orders")
    checks = [CheckSpec(f"c{i}", "not_null", "sku") for i in range(7)]
    checks.insert(5, CheckSpec("fragile", "not_negative", "fragile"))
    with recorded_statements(engine) as statements:
        evaluation = evaluate_sql(conn, table, checks, now=NOW)

    assert evaluation.records_scanned == len(ORDER_ROWS)
    assert evaluation.results["fragile"].failed_count is None
    assert evaluation.results["fragile"].error
    assert {evaluation.results[f"c{i}"].failed_count for i in range(7)} == {1}
    full_passes = [statement for statement in statements if " LIMIT " not in statement]
    # One combined pass, then halving: fewer full passes than one per check.
    assert len(full_passes) < len(checks)


def test_statements_run_side_by_side_on_extra_connections(engine, conn):
    extra = [engine.connect() for _ in range(2)]
    used: list[int] = []

    def more(index: int) -> sa.Connection:
        used.append(index)
        return extra[index]

    try:
        evaluation = evaluate_sql(
            conn, orders, CHECKS, now=NOW, more_connections=more, max_connections=3
        )
    finally:
        for other in extra:
            other.close()
    assert _failed_counts(evaluation) == {check.key: n for check, n in EXPECTED_FAILURES}
    if engine.dialect.name == "duckdb":
        # DuckDB spreads each statement over the cores itself: one after the other, one
        # connection.
        assert used == []
        return
    statements = 1 + (_unique_checks(CHECKS) if engine.dialect.name == "postgresql" else 0)
    # Never more connections than statements, never more than the limit.
    assert used == list(range(min(3, statements) - 1))


def test_invalid_or_unknown_checks_are_reported_without_a_statement_of_their_own(engine, conn):
    checks = [
        CheckSpec("bad-regex", "matches_pattern", "code", {"pattern": "[0-9"}),
        CheckSpec("unknown-field", "not_null", "nope"),
        _spec("sku-not-null"),
    ]
    with recorded_statements(engine) as statements:
        evaluation = evaluate_sql(conn, orders, checks, now=NOW)

    assert len(statements) == 1
    assert "'[0-9' is not a valid regular expression" in evaluation.results["bad-regex"].error
    assert evaluation.results["unknown-field"].error == "column 'nope' not found"
    assert evaluation.results["sku-not-null"].failed_count == 1


def _cancelling_source(conn: sa.Connection) -> sa.FromClause:
    """A computed table whose query gets cancelled, as the Abort watchdog would do it."""
    if conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        raw.create_function("interrupt_now", 1, lambda value: raw.interrupt())
        cancelling = sa.func.interrupt_now(orders.c.id).is_(None)
    elif conn.dialect.name == "mysql":
        # KILL QUERY from a second session a moment later, as SourceConnection.cancel does.
        thread_id = conn.connection.dbapi_connection.thread_id()

        def kill() -> None:
            with conn.engine.connect() as killer:
                killer.exec_driver_sql(f"KILL QUERY {thread_id}")

        threading.Timer(0.3, kill).start()
        cancelling = sa.func.sleep(1) == 0
    elif conn.dialect.name == "duckdb":
        # interrupt() from another thread a moment later, as SourceConnection.cancel does.
        threading.Timer(0.3, conn.connection.dbapi_connection.interrupt).start()
        numbers = sa.func.range(10**11).table_valued("range")
        cancelling = sa.select(sa.func.sum(numbers.c.range)).scalar_subquery().is_not(None)
    else:
        conn.exec_driver_sql("SET LOCAL statement_timeout = 50")
        cancelling = sa.exists(sa.select(sa.literal(1)).select_from(sa.func.pg_sleep(1)))
    return sa.select(orders).where(cancelling).subquery("computed")


def test_a_cancelled_query_is_raised_not_retried_check_by_check(engine, conn):
    source = _cancelling_source(conn)
    with recorded_statements(engine) as statements, pytest.raises(sa.exc.DBAPIError):
        evaluate_sql(conn, source, CHECKS[:3], now=NOW)
    assert len([s for s in statements if not s.startswith("KILL QUERY")]) == 1


def test_record_limit_reads_the_first_rows_past_the_mark(conn):
    evaluation = evaluate_sql(
        conn,
        orders,
        [_spec("sku-not-null"), _spec("sku-unique"), _spec("rows-too-few")],
        record_limit=3,
        high_water_column="id",
        now=NOW,
    )
    assert evaluation.records_scanned == 3
    assert evaluation.high_water_mark == 3
    assert _failed_counts(evaluation) == {"sku-not-null": 0, "sku-unique": 1, "rows-too-few": 0}

    following = evaluate_sql(
        conn,
        orders,
        [_spec("quantity-not-null"), _spec("sku-not-null")],
        where=high_water_filter(orders, "id", evaluation.high_water_mark),
        record_limit=2,
        high_water_column="id",
        now=NOW,
    )
    assert following.records_scanned == 2
    assert following.high_water_mark == 5
    assert _failed_counts(following) == {"quantity-not-null": 0, "sku-not-null": 0}


@pytest.mark.parametrize(
    ("column", "mark", "expected_mark", "rows_after_mark"),
    [
        ("created_at", "2024-06-15T12:30:00", "2024-06-15T12:30:00", 0),
        ("created_at", "2024-06-14T00:00:00", "2024-06-15T12:30:00", 3),
        ("shipped_on", "2024-06-01", "2024-06-16", 3),
        ("price", 10.5, 500, 2),
        ("id", None, 6, 6),
    ],
)
def test_high_water_marks_round_trip_through_json(
    conn, column, mark, expected_mark, rows_after_mark
):
    evaluation = evaluate_sql(
        conn,
        orders,
        [_spec("sku-not-null")],
        where=high_water_filter(orders, column, mark),
        high_water_column=column,
        now=NOW,
    )
    assert evaluation.records_scanned == rows_after_mark
    assert evaluation.high_water_mark == (expected_mark if rows_after_mark else None)
    json.dumps(evaluation.high_water_mark)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (Decimal("5.00"), 5),
        (Decimal("10.50"), 10.5),
        (Decimal("0.12345678901234567891"), "0.12345678901234567891"),  # a float would round
        (float("nan"), "nan"),
        (date(2024, 6, 1), "2024-06-01"),
        (datetime(2024, 6, 1, 8, 30, tzinfo=UTC), "2024-06-01T08:30:00+00:00"),
        (b"\x01\xff", "01ff"),
    ],
)
def test_json_safe(value, stored):
    assert json_safe(value) == stored


# ---------------------------------------------------------------------------------------------
# Examples


def test_examples_are_the_failing_rows_as_json_safe_dicts(conn):
    [example] = fetch_examples(conn, orders, _spec("quantity-not-negative"), limit=5, now=NOW)

    json.dumps(example)
    assert {key: example[key] for key in COLUMN_NAMES if key != "updated_at"} == {
        "id": 2,
        "sku": "A2",
        "quantity": -1,
        "price": 0,
        "status": "sent",
        "code": "1234x",
        "shipped_on": "2024-06-15",
        "created_at": "2024-06-15T12:30:00",
    }
    assert example["updated_at"].startswith("2024-06-15T11:30:00")


@pytest.mark.parametrize(
    ("key", "limit", "ids"),
    [
        ("sku-unique", 10, {2, 3, 5}),  # every row sharing a duplicated value
        ("code-pattern", 10, {2, 5}),  # NULL code (row 3) passes
        ("code-pattern", 1, None),
        ("updated-not-future", 10, {4, 6}),
        ("rows-too-few", 10, set()),
    ],
)
def test_examples_per_check_type(conn, key, limit, ids):
    examples = fetch_examples(conn, orders, _spec(key), limit=limit, now=NOW)
    if ids is None:
        assert len(examples) == limit
    else:
        assert {example["id"] for example in examples} == ids


def test_examples_come_from_the_scanned_rows_only(conn):
    examples = fetch_examples(
        conn,
        orders,
        _spec("sku-unique"),
        where=orders.c.id > 1,
        record_limit=2,
        high_water_column="id",
        limit=10,
        now=NOW,
    )
    assert sorted(example["id"] for example in examples) == [2, 3]


# ---------------------------------------------------------------------------------------------
# Rows from a file


def _as_csv_rows() -> Iterator[dict[str, str]]:
    """ORDER_ROWS written to CSV text and read back, the way the CLI reads a local file."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerows([COLUMN_NAMES, *ORDER_ROWS])
    text.seek(0)
    return csv.DictReader(text)


FIELD_TYPES = {column.name: classify_type(column.type) for column in orders.c}


def test_evaluate_rows_agrees_with_evaluate_sql(conn):
    from_sql = evaluate_sql(conn, orders, CHECKS, now=NOW)
    from_rows = evaluate_rows(_as_csv_rows(), CHECKS, field_types=FIELD_TYPES, now=NOW)

    assert from_rows.records_scanned == from_sql.records_scanned
    assert _failed_counts(from_rows) == _failed_counts(from_sql)
    assert all(result.error is None for result in from_rows.results.values())


def test_evaluate_rows_keeps_a_bounded_number_of_examples():
    evaluation = evaluate_rows(
        _as_csv_rows(), CHECKS, field_types=FIELD_TYPES, now=NOW, example_limit=1
    )
    # For unique, the repeated occurrences: the stream has forgotten the first one.
    assert [row["id"] for row in evaluation.results["sku-unique"].examples] == ["3"]
    assert evaluation.results["code-pattern"].examples[0]["code"] == "1234x"
    assert evaluation.results["rows-too-few"].examples == []
    json.dumps([result.examples for result in evaluation.results.values()])


def test_evaluate_rows_treats_empty_and_missing_values_as_null():
    rows = [{"qty": ""}, {}, {"qty": "-2"}, {"qty": "3"}]
    checks = [
        CheckSpec("nn", "not_null", "qty"),
        CheckSpec("neg", "not_negative", "qty"),
        CheckSpec("uniq", "unique", "qty"),
    ]
    evaluation = evaluate_rows(rows, checks, field_types={"qty": "integer"}, now=NOW)
    assert _failed_counts(evaluation) == {"nn": 2, "neg": 1, "uniq": 0}


def test_evaluate_rows_reports_checks_it_cannot_run():
    checks = [
        CheckSpec("no-type", "not_null", "mystery"),
        CheckSpec("text-range", "between", "name", {"min": 1}),
        CheckSpec("text-future", "not_future", "name"),
        CheckSpec("bad", "max_length", "name", {"length": -1}),
        CheckSpec("ok", "max_length", "name", {"length": 3}),
    ]
    evaluation = evaluate_rows([{"name": "abcd"}], checks, field_types={"name": "string"}, now=NOW)
    errors = {key: result.error for key, result in evaluation.results.items()}
    assert errors == {
        "no-type": "column 'mystery' has no known type",
        "text-range": "between needs a numeric column, not a string one",
        "text-future": "not_future needs a date or datetime column, not a string one",
        "bad": "max_length.length must be a positive whole number, not -1",
        "ok": None,
    }
    assert evaluation.results["ok"].failed_count == 1


@pytest.mark.parametrize(
    ("field_type", "bad_value"),
    [
        ("integer", "five"),
        ("integer", "1.5"),
        ("float", "1,5"),
        ("decimal", "12.3.4"),
        ("date", "2024-13-01"),
        ("datetime", "yesterday"),
        ("boolean", "maybe"),
    ],
)
def test_a_value_that_does_not_decode_names_row_column_and_value(field_type, bad_value):
    rows = iter([{"value": ""}, {"value": bad_value}])
    with pytest.raises(RowDecodeError) as raised:
        evaluate_rows(
            rows, [CheckSpec("k", "not_null", "value")], field_types={"value": field_type}, now=NOW
        )
    error = raised.value
    assert (error.column, error.row_number, error.value) == ("value", 2, bad_value)
    assert str(error) == f"row 2, column 'value': cannot read {bad_value!r} as {field_type}"


def test_evaluate_rows_streams_in_constant_memory():
    def rows() -> Iterator[dict[str, str]]:
        for number in range(50_000):
            yield {"n": str(number), "price": str(Decimal(number) / 100)}

    checks = [
        CheckSpec("range", "between", "n", {"min": 0, "max": 49_998}),
        CheckSpec("pattern", "matches_pattern", "price", {"pattern": "^[0-9.]+$"}),
    ]
    tracemalloc.start()
    try:
        evaluation = evaluate_rows(
            rows(), checks, field_types={"n": "integer", "price": "decimal"}, now=NOW
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert evaluation.records_scanned == 50_000
    assert _failed_counts(evaluation) == {"range": 1, "pattern": 0}
    assert evaluation.results["range"].examples == [{"n": "49999", "price": "499.99"}]
    assert peak < 1_000_000  # holding the rows would take well over 10 MB
