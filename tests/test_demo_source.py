"""The demo/benchmark source generators: determinism, exact defect manifests, both dialects."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text

from datastores.demo_source import (
    BENCH_CODE_PATTERN,
    BENCH_NOTE_MAX_LENGTH,
    BENCH_SCORE_RANGE,
    BENCH_STATUSES,
    DEMO_METADATA,
    ORDER_STATUSES,
    PHONE_PATTERN,
    RATING_RANGE,
    SKU_MAX_LENGTH,
    VIEW_NAME,
    bench_defect_counts,
    generate_bench_table,
    generate_demo_source,
)
from tests.databases import throwaway_mariadb_database, throwaway_postgres_database

ROWS = 2000

_statuses = ", ".join(f"'{s}'" for s in ORDER_STATUSES)
# Each key's independent count; the regex rules are counted in Python (SQLite has no REGEXP).
DEMO_DEFECT_SQL = {
    "customers.email.null": "SELECT COUNT(*) FROM customers WHERE email IS NULL",
    "customers.email.duplicate": "SELECT COUNT(email) - COUNT(DISTINCT email) FROM customers",
    "customers.phone.pattern": ("customers", "phone", PHONE_PATTERN),
    "addresses.postal_code.null": "SELECT COUNT(*) FROM addresses WHERE postal_code IS NULL",
    "products.unit_price.negative": "SELECT COUNT(*) FROM products WHERE unit_price < 0",
    "products.sku.too_long": f"SELECT COUNT(*) FROM products WHERE LENGTH(sku) > {SKU_MAX_LENGTH}",
    "orders.ordered_at.future": "SELECT COUNT(*) FROM orders WHERE ordered_at > CURRENT_TIMESTAMP",
    "orders.status.unexpected": f"SELECT COUNT(*) FROM orders WHERE status NOT IN ({_statuses})",
    "order_items.quantity.negative": "SELECT COUNT(*) FROM order_items WHERE quantity < 0",
    "reviews.rating.out_of_range": "SELECT COUNT(*) FROM reviews "
    "WHERE rating NOT BETWEEN {} AND {}".format(*RATING_RANGE),
}

BENCH_ROWS = 12_000
_bench_statuses = ", ".join(f"'{s}'" for s in BENCH_STATUSES)
_score_low, _score_high = BENCH_SCORE_RANGE
# Keyed like bench_defect_counts(BENCH_ROWS, table="events").
BENCH_DEFECT_SQL = {
    "events.event_key.duplicate": "SELECT COUNT(event_key) - COUNT(DISTINCT event_key) FROM events",
    "events.user_id.null": "SELECT COUNT(*) FROM events WHERE user_id IS NULL",
    "events.session_id.null": "SELECT COUNT(*) FROM events WHERE session_id IS NULL",
    "events.amount.negative": "SELECT COUNT(*) FROM events WHERE amount < 0",
    "events.score.out_of_range": "SELECT COUNT(*) FROM events "
    f"WHERE score NOT BETWEEN {_score_low} AND {_score_high}",
    "events.status.unexpected": "SELECT COUNT(*) FROM events "
    f"WHERE status NOT IN ({_bench_statuses})",
    "events.code.pattern": ("events", "code", BENCH_CODE_PATTERN),
    "events.note.too_long": "SELECT COUNT(*) FROM events "
    f"WHERE LENGTH(note) > {BENCH_NOTE_MAX_LENGTH}",
    "events.occurred_at.future": "SELECT COUNT(*) FROM events "
    "WHERE occurred_at > CURRENT_TIMESTAMP",
}

# Columns the module doc promises are clean: a defect leaking into them would skew Scan tests.
CLEAN_SQL = (
    "SELECT COUNT(*) FROM customers WHERE phone IS NULL",
    "SELECT COUNT(*) FROM order_items WHERE unit_price < 0 OR quantity = 0",
    "SELECT COUNT(*) FROM payments WHERE amount < 0 OR paid_at > CURRENT_TIMESTAMP",
    "SELECT COUNT(*) FROM shipments WHERE shipped_on > CURRENT_DATE OR delivered_on > CURRENT_DATE",
    "SELECT COUNT(*) FROM reviews WHERE created_at > CURRENT_TIMESTAMP",
    "SELECT COUNT(*) FROM returns WHERE refund_amount < 0 OR returned_on > CURRENT_DATE",
)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'demo.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_postgres_database() as url:
        yield url


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _count(engine: Engine, query: str | tuple[str, str, str]) -> int:
    """Run a COUNT query, or count a (table, column, regex)'s non-null values not matching."""
    with engine.connect() as conn:
        if isinstance(query, str):
            return conn.execute(text(query)).scalar_one()
        table, column, pattern = query
        values = conn.execute(text(f"SELECT {column} FROM {table}")).scalars()
        return sum(value is not None and not re.fullmatch(pattern, value) for value in values)


def _dump(url: str) -> dict[str, list[tuple]]:
    """Every table and the view, ordered, as plain tuples."""
    names = [*DEMO_METADATA.tables, VIEW_NAME]
    with _engine(url) as engine, engine.connect() as conn:
        return {
            name: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {name} ORDER BY 1"))]
            for name in names
        }


def _assert_manifest_matches_database(url: str) -> None:
    manifest = generate_demo_source(url, rows=ROWS)
    assert set(manifest.defects) == set(DEMO_DEFECT_SQL)
    assert len(manifest.tables) == 14
    assert manifest.tables["orders"] == ROWS
    with _engine(url) as engine:
        for table, rows in manifest.tables.items():
            assert _count(engine, f"SELECT COUNT(*) FROM {table}") == rows, table
        for key, query in DEMO_DEFECT_SQL.items():
            # Seed 7 at this size draws every defect, so a zero here is a regression too.
            assert manifest.defects[key] > 0, key
            assert _count(engine, query) == manifest.defects[key], key
        for query in CLEAN_SQL:
            assert _count(engine, query) == 0, query
        assert _count(engine, f"SELECT COUNT(*) FROM {VIEW_NAME}") == ROWS


def test_same_seed_gives_identical_data(tmp_path) -> None:
    urls = [f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db", "c.db")]
    first = generate_demo_source(urls[0], rows=300, seed=11)
    second = generate_demo_source(urls[1], rows=300, seed=11)
    other = generate_demo_source(urls[2], rows=300, seed=12)

    assert first == second
    assert _dump(urls[0]) == _dump(urls[1])
    assert _dump(urls[0]) != _dump(urls[2])
    assert other.tables["orders"] == 300


def test_manifest_matches_sql_counts_on_sqlite(sqlite_url) -> None:
    _assert_manifest_matches_database(sqlite_url)


def test_rerun_replaces_the_data(sqlite_url, tmp_path) -> None:
    generate_demo_source(sqlite_url, rows=500, seed=3)
    rerun = generate_demo_source(sqlite_url, rows=200)
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    fresh = generate_demo_source(fresh_url, rows=200)

    assert rerun == fresh
    assert _dump(sqlite_url) == _dump(fresh_url)


def test_rows_must_be_positive(sqlite_url) -> None:
    with pytest.raises(ValueError):
        generate_demo_source(sqlite_url, rows=0)
    with pytest.raises(ValueError):
        generate_bench_table(sqlite_url, rows=0)


@pytest.mark.postgres_source
def test_manifest_matches_sql_counts_on_postgres(postgres_url) -> None:
    generate_demo_source(postgres_url, rows=200)  # the rerun must drop the view and tables
    _assert_manifest_matches_database(postgres_url)


def _assert_bench_counts(url: str) -> None:
    generate_bench_table(url, rows=100, table="events")  # the rerun must replace this table
    generate_bench_table(url, rows=BENCH_ROWS, table="events")
    expected = bench_defect_counts(BENCH_ROWS, table="events")
    assert set(expected) == set(BENCH_DEFECT_SQL)
    with _engine(url) as engine:
        assert _count(engine, "SELECT COUNT(*) FROM events") == BENCH_ROWS
        for key, query in BENCH_DEFECT_SQL.items():
            assert expected[key] > 0, key
            assert _count(engine, query) == expected[key], key
        with engine.connect() as conn:
            stamps = list(conn.execute(text("SELECT updated_at FROM events ORDER BY id")).scalars())
        # A strictly increasing high-water mark that is never in the future.
        assert stamps == sorted(set(stamps))
        future = "SELECT COUNT(*) FROM events WHERE updated_at > CURRENT_TIMESTAMP"
        assert _count(engine, future) == 0


def test_bench_table_counts_on_sqlite(sqlite_url) -> None:
    _assert_bench_counts(sqlite_url)


@pytest.mark.postgres_source
def test_bench_table_counts_on_postgres(postgres_url) -> None:
    _assert_bench_counts(postgres_url)


def test_bench_table_counts_on_duckdb(tmp_path) -> None:
    _assert_bench_counts(f"duckdb:///{tmp_path / 'bench.duckdb'}")


@pytest.mark.mariadb_source
def test_bench_table_counts_on_mariadb() -> None:
    with throwaway_mariadb_database() as url:
        _assert_bench_counts(url)
