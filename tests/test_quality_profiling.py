"""Field profiles and check inference (datastores.quality.profiling) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from datastores.quality import (
    CheckSpec,
    FieldProfile,
    TableProfile,
    classify_type,
    evaluate_sql,
    infer_checks,
    profile_table,
    validate_check,
)
from tests.databases import throwaway_postgres_database

NOW = datetime(2024, 7, 1, tzinfo=UTC)
ROW_COUNT = 24
WIDE_COLUMNS = 300  # more aggregates than one PostgreSQL SELECT may return

metadata = sa.MetaData()
products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(40)),
    sa.Column("category", sa.String(20)),
    sa.Column("zip", sa.String(10)),
    sa.Column("email", sa.String(60)),
    sa.Column("price", sa.Float),
    sa.Column("weight", sa.Numeric(8, 3)),
    sa.Column("ratio", sa.Numeric(30, 20)),  # more digits than a float holds
    sa.Column("stock", sa.Integer),
    sa.Column("released", sa.Date),
    sa.Column("updated", sa.DateTime),
    sa.Column("active", sa.Boolean),
    sa.Column("note", sa.Text),
)
wide = sa.Table(
    "wide",
    metadata,
    *(sa.Column(f"c{index}", sa.Integer) for index in range(WIDE_COLUMNS)),
)


def _product(number: int) -> dict[str, object]:
    return {
        "id": number,
        "name": f"product-{number:02d}",
        "category": ("tools", "toys", "food")[number % 3],
        "zip": str(10000 + number % 4),
        "email": f"user{number % 5}@example.com",
        "price": number * 1.5,
        "weight": Decimal(number) / 8,
        "ratio": Decimal("0.12345678901234567891") * number,
        "stock": None if number % 6 == 0 else number - 5,
        "released": date(2024, 1, number),
        "updated": datetime(2024, 6, number, 8, 30),
        "active": number % 2 == 0,
        "note": None if number % 3 == 0 else "x" * (number % 7 + 1),
    }


PRODUCTS = [_product(number) for number in range(1, ROW_COUNT + 1)]
COLUMN_NAMES = [column.name for column in products.c]


@contextmanager
def _database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('profiling') / 'source.db'}"
    else:
        with throwaway_postgres_database() as url:
            yield url


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres_source)],
)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    with _database_url(request.param, tmp_path_factory) as url:
        engine = sa.create_engine(url)
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(products.insert(), PRODUCTS)
            conn.execute(
                wide.insert(),
                [{f"c{index}": row * index for index in range(WIDE_COLUMNS)} for row in range(3)],
            )
        yield engine
        engine.dispose()


@pytest.fixture
def conn(engine: sa.Engine) -> Iterator[sa.Connection]:
    with engine.connect() as connection:
        yield connection


@pytest.fixture
def profile(conn: sa.Connection) -> TableProfile:
    return profile_table(conn, products)


def _column_values(name: str) -> list:
    return [row[name] for row in PRODUCTS if row[name] is not None]


# ---------------------------------------------------------------------------------------------
# Types


@pytest.mark.parametrize(
    ("type_", "field_type"),
    [
        (sa.Integer(), "integer"),
        (sa.BigInteger(), "integer"),
        (sa.SmallInteger(), "integer"),
        (sa.Float(), "float"),
        (sa.Double(), "float"),
        (postgresql.DOUBLE_PRECISION(), "float"),
        (sa.Numeric(10, 2), "decimal"),
        (sa.String(20), "string"),
        (sa.Text(), "string"),
        (sa.Enum("a", "b"), "string"),
        (sa.Uuid(), "string"),
        (sa.Date(), "date"),
        (sa.DateTime(), "datetime"),
        (postgresql.TIMESTAMP(timezone=True), "datetime"),
        (sa.Boolean(), "boolean"),
        (sa.Interval(), "other"),
        (sa.JSON(), "other"),
        (sa.LargeBinary(), "other"),
        (sa.Time(), "other"),
        (sa.types.NullType(), "other"),
    ],
)
def test_classify_type(type_, field_type):
    assert classify_type(type_) == field_type


def test_reflected_types_classify_like_the_declared_ones(engine):
    reflected = sa.Table("products", sa.MetaData(), autoload_with=engine)
    assert {column.name: classify_type(column.type) for column in reflected.c} == {
        column.name: classify_type(column.type) for column in products.c
    }


# ---------------------------------------------------------------------------------------------
# Profiles


def test_profile_reads_the_table_in_two_statements(engine, conn):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        profile_table(conn, products)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 2  # the aggregates, then the top values


def test_profile_is_json_safe(profile):
    json.dumps({name: asdict(field) for name, field in profile.fields.items()})


def test_profile_counts_nulls_and_distinct_values(profile):
    assert profile.record_count == ROW_COUNT
    counts = {
        name: (field.count, field.nulls, field.distinct) for name, field in profile.fields.items()
    }
    assert counts == {
        "id": (24, 0, 24),
        "name": (24, 0, 24),
        "category": (24, 0, 3),
        "zip": (24, 0, 4),
        "email": (24, 0, 5),
        "price": (24, 0, 24),
        "weight": (24, 0, 24),
        "ratio": (24, 0, 24),
        "stock": (20, 4, 20),
        "released": (24, 0, 24),
        "updated": (24, 0, 24),
        "active": (24, 0, 2),
        "note": (16, 8, 7),
    }


@pytest.mark.parametrize("name", ["id", "price", "weight", "stock"])
def test_numeric_statistics(profile, name):
    values = [float(value) for value in _column_values(name)]
    field = profile.fields[name]

    assert (field.min, field.max) == (min(values), max(values))
    assert field.mean == pytest.approx(statistics.fmean(values))
    assert field.std_dev == pytest.approx(statistics.pstdev(values))
    assert field.min_length is None and field.max_length is None


def test_strings_have_lengths_and_text_extremes(profile):
    note = profile.fields["note"]
    assert (note.min_length, note.max_length) == (1, 7)
    assert (note.min, note.max) == ("x", "xxxxxxx")
    assert note.mean is None and note.std_dev is None
    name = profile.fields["name"]
    assert (name.min, name.max, name.min_length, name.max_length) == (
        "product-01",
        "product-24",
        10,
        10,
    )


def test_dates_and_booleans(profile):
    released, updated, active = (profile.fields[name] for name in ("released", "updated", "active"))
    assert (released.field_type, released.min, released.max) == ("date", "2024-01-01", "2024-01-24")
    assert (updated.field_type, updated.min) == ("datetime", "2024-06-01T08:30:00")
    assert (active.field_type, active.min, active.max) == ("boolean", None, None)
    assert active.top_values == [[False, 12], [True, 12]]


def test_top_values_of_low_cardinality_columns_most_frequent_first(conn):
    profile = profile_table(conn, products, top_values=3, low_cardinality_max=20)

    assert profile.fields["category"].top_values == [["food", 8], ["tools", 8], ["toys", 8]]
    assert profile.fields["zip"].top_values == [["10000", 6], ["10001", 6], ["10002", 6]]
    assert profile.fields["stock"].top_values == [[-4, 1], [-3, 1], [-2, 1]]
    assert profile.fields["note"].top_values == [["xx", 3], ["xxx", 3], ["x", 2]]
    # 24 distinct values is not low cardinality here.
    assert profile.fields["name"].top_values == []
    assert profile.fields["released"].top_values == []


def test_top_values_keep_their_types(profile):
    assert profile.fields["released"].top_values[0] == ["2024-01-01", 1]
    assert profile.fields["weight"].top_values[0] == [0.125, 1]
    assert profile.fields["updated"].top_values[0] == ["2024-06-01T08:30:00", 1]


def test_record_limit(conn):
    profile = profile_table(conn, products, record_limit=10)
    assert profile.record_count == 10
    assert profile.fields["id"].count == 10


def test_wide_tables_are_profiled_in_a_few_statements(conn):
    profile = profile_table(conn, wide)

    assert profile.record_count == 3
    assert len(profile.fields) == WIDE_COLUMNS
    last = profile.fields[f"c{WIDE_COLUMNS - 1}"]
    assert (last.min, last.max, last.distinct) == (0, 2 * (WIDE_COLUMNS - 1), 3)
    assert last.top_values == [[0, 1], [WIDE_COLUMNS - 1, 1], [2 * (WIDE_COLUMNS - 1), 1]]


# ---------------------------------------------------------------------------------------------
# Inference


def _inferred(profile: TableProfile, level: int, now: datetime = NOW) -> set[tuple[str, str]]:
    return {
        (check.type, check.field or "") for check in infer_checks(profile, level=level, now=now)
    }


LEVEL_ONE = {
    *(("not_null", name) for name in COLUMN_NAMES if name not in {"stock", "note"}),
    *(("not_negative", name) for name in ("id", "price", "weight", "ratio")),
    *(("expected_values", name) for name in ("category", "zip", "email")),
    ("not_future", "released"),
    ("not_future", "updated"),
}
LEVEL_TWO = {
    *(("between", name) for name in ("id", "price", "weight", "ratio", "stock")),
    *(("unique", name) for name in ("id", "name", "price", "weight", "ratio", "stock")),
    *(("unique", name) for name in ("released", "updated")),
    *(("max_length", name) for name in ("name", "category", "zip", "email", "note")),
    ("matches_pattern", "zip"),
    ("matches_pattern", "email"),
}


def test_inference_per_level(profile):
    assert _inferred(profile, 0) == set()
    assert _inferred(profile, 1) == LEVEL_ONE
    assert _inferred(profile, 2) == LEVEL_ONE | LEVEL_TWO
    row_count = {("row_count_between", "")}
    assert _inferred(profile, 3) == _inferred(profile, 5) == LEVEL_ONE | LEVEL_TWO | row_count


def test_inferred_parameters(profile):
    checks = {
        (check.type, check.field): check.params for check in infer_checks(profile, level=3, now=NOW)
    }
    assert checks[("expected_values", "category")] == {"values": ["food", "tools", "toys"]}
    assert checks[("matches_pattern", "zip")] == {"pattern": "^[0-9]{5}$"}
    assert checks[("between", "stock")] == {"min": -4, "max": 18}
    assert checks[("max_length", "name")] == {"length": 10}
    assert checks[("row_count_between", None)] == {"min": 12, "max": 36}
    ratio = checks[("between", "ratio")]
    assert Decimal(ratio["min"]) <= Decimal("0.12345678901234567891")


def test_not_future_is_not_inferred_when_values_lie_ahead(profile):
    assert ("not_future", "updated") not in _inferred(profile, 1, now=datetime(2024, 6, 10))
    assert ("not_future", "released") in _inferred(profile, 1, now=datetime(2024, 6, 10))


@pytest.mark.parametrize("level", [1, 2, 3, 5])
def test_inferred_checks_are_valid_and_pass_on_their_source(conn, profile, level):
    checks = [
        CheckSpec(str(index), check.type, check.field, check.params)
        for index, check in enumerate(infer_checks(profile, level=level, now=NOW))
    ]
    for check in checks:
        assert validate_check(check.type, check.field, check.params) == check.params

    evaluation = evaluate_sql(conn, products, checks, now=NOW)
    failures = {
        (check.type, check.field, result.failed_count, result.error)
        for check in checks
        if (result := evaluation.results[check.key]).failed_count != 0
    }
    assert failures == set()


def _string_profile(values: list[str], distinct: int | None = None) -> TableProfile:
    field = FieldProfile(
        field_type="string",
        count=40,
        nulls=0,
        distinct=len(values) if distinct is None else distinct,
        min_length=min(map(len, values)),
        max_length=max(map(len, values)),
        top_values=[[value, 40 // len(values)] for value in values],
    )
    return TableProfile(record_count=40, fields={"value": field})


@pytest.mark.parametrize(
    ("values", "distinct", "pattern"),
    [
        (["0123", "4567", "8901"], None, "^[0-9]{4}$"),
        (
            ["a@b.io", "c.d@e.example.org"],
            None,
            r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$",
        ),
        (["123", "4567"], None, None),  # digits, but not one length
        (["12a45", "12345"], None, None),
        (["a@b.io", "not an address"], None, None),
        (["0123", "4567"], 30, None),  # top values do not cover every value
        (["0123"], None, None),  # one value says nothing about a shape
    ],
)
def test_patterns_are_inferred_only_in_clear_cases(values, distinct, pattern):
    checks = infer_checks(_string_profile(values, distinct), level=2, now=NOW)
    patterns = [check.params["pattern"] for check in checks if check.type == "matches_pattern"]
    assert patterns == ([pattern] if pattern else [])


def test_an_empty_table_infers_nothing():
    assert infer_checks(TableProfile(record_count=0, fields={}), level=5, now=NOW) == []


def test_inference_level_is_bounded(profile):
    with pytest.raises(ValueError, match="between 0 and 5"):
        infer_checks(profile, level=6, now=NOW)


def test_decimal_bounds_round_outwards():
    exact = "0.12345678901234567891"
    field = FieldProfile(field_type="decimal", count=1, nulls=0, distinct=1, min=exact, max=exact)
    [between] = [
        check
        for check in infer_checks(TableProfile(1, {"ratio": field}), level=2, now=NOW)
        if check.type == "between"
    ]
    assert Decimal(between.params["min"]) <= Decimal(exact) <= Decimal(between.params["max"])
    assert math.isclose(between.params["min"], float(exact))


def test_no_numeric_rules_from_infinite_or_nan_extremes():
    field = FieldProfile(field_type="float", count=3, nulls=0, distinct=3, min=0.5, max="inf")
    inferred = _inferred(TableProfile(3, {"speed": field}), 2)
    assert ("not_negative", "speed") in inferred
    assert ("between", "speed") not in inferred
