"""Materialize: containers are copied into the enrichment datastore, streamed in batches."""

import time
import tracemalloc
from datetime import datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from datastores.demo_source import generate_bench_table, generate_demo_source
from datastores.models import Container
from runs import execution
from runs.errors import InvalidConfig
from runs.models import LogLevel, Run
from runs.services import run_abort, run_launch
from tests.conftest import wait_for
from tests.databases import execute_in_thread, run_now, sync_catalogue
from tests.enrichment_support import (
    BACKEND_PAIRS,
    PG,
    count,
    execute,
    link,
    query,
    table_names,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]

COMPUTED_QUERY = "SELECT id, customer_id, ordered_at FROM orders WHERE status = 'delivered'"


def typed_rows(url: str, table: str, columns: list[str]) -> list[tuple]:
    """Rows read through the reflected column types, normalised to compare across dialects."""
    engine = sa.create_engine(url)
    try:
        reflected = sa.Table(table, sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            statement = sa.select(*(reflected.c[c] for c in columns)).order_by(reflected.c.id)
            return [tuple(_plain(v) for v in row) for row in conn.execute(statement)]
    finally:
        engine.dispose()


def _plain(value):
    if isinstance(value, float | Decimal):
        return round(Decimal(str(value)), 2)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat()
    return value


@pytest.mark.parametrize("source_backend, enrichment_backend", BACKEND_PAIRS)
def test_materialize_copies_tables_views_and_computed_containers(
    editor, datastore, dbs, source_backend, enrichment_backend
):
    source = dbs.new(source_backend, "source")
    enrichment = dbs.new(enrichment_backend, "enrichment")
    manifest = generate_demo_source(source, rows=300)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    Container.objects.create(
        datastore=datastore, name="delivered_orders", kind="computed", query=COMPUTED_QUERY
    )

    run = run_now(editor, datastore, "materialize")

    assert run.status == "success", run.error
    assert not run.has_warnings
    assert (run.progress_done, run.progress_total, run.progress_unit) == (16, 16, "Containers")
    delivered = query(source, f"SELECT COUNT(*) AS n FROM ({COMPUTED_QUERY}) AS q")[0]["n"]
    assert delivered > 0
    expected = {
        **{f"assay_mat_{name}": rows for name, rows in manifest.tables.items()},
        "assay_mat_v_order_totals": manifest.tables["orders"],
        "assay_mat_delivered_orders": delivered,
    }
    assert table_names(enrichment) == set(expected)
    assert {name: count(enrichment, name) for name in expected} == expected
    assert run.metrics == {
        "containers_materialized": 16,
        "records_written": sum(expected.values()),
    }
    # Values survive the trip, whatever the two dialects: decimals, text, timestamps.
    assert typed_rows(enrichment, "assay_mat_products", ["id", "sku", "unit_price"]) == (
        typed_rows(source, "products", ["id", "sku", "unit_price"])
    )
    assert typed_rows(enrichment, "assay_mat_orders", ["id", "status", "ordered_at"]) == (
        typed_rows(source, "orders", ["id", "status", "ordered_at"])
    )


def test_record_limit_is_honoured_and_materializing_again_replaces(editor, datastore, dbs):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    manifest = generate_demo_source(source, rows=300)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    Container.objects.create(
        datastore=datastore, name="delivered_orders", kind="computed", query=COMPUTED_QUERY
    )
    containers = ["orders", "regions", "delivered_orders"]

    run = run_now(editor, datastore, "materialize", {"containers": containers, "record_limit": 10})

    assert run.status == "success", run.error
    assert run.metrics == {"containers_materialized": 3, "records_written": 26}
    assert [count(enrichment, f"assay_mat_{c}") for c in containers] == [10, 6, 10]

    run = run_now(editor, datastore, "materialize", {"containers": containers})
    assert count(enrichment, "assay_mat_orders") == manifest.tables["orders"]

    execute(source, "DELETE FROM payments")
    execute(source, "DELETE FROM shipments")
    execute(source, "DELETE FROM returns")
    execute(source, "DELETE FROM reviews")
    execute(source, "DELETE FROM order_items")
    execute(source, "DELETE FROM orders WHERE id > 100")
    run = run_now(editor, datastore, "materialize", {"containers": ["orders"]})
    assert run.status == "success", run.error
    assert count(enrichment, "assay_mat_orders") == 100
    assert table_names(enrichment) == {f"assay_mat_{c}" for c in containers}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_a_container_gone_from_the_source_fails_alone(editor, datastore, dbs, backend):
    source, enrichment = dbs.new(backend, "source"), dbs.new(backend, "enrichment")
    manifest = generate_demo_source(source, rows=100)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    execute(source, "DROP TABLE returns")

    run = run_now(editor, datastore, "materialize",
                  {"containers": ["regions", "returns", "stores"]})

    assert run.status == "success", run.error
    assert run.has_warnings
    assert run.metrics == {
        "containers_materialized": 2,
        "containers_failed": 1,
        "records_written": manifest.tables["regions"] + manifest.tables["stores"],
    }
    warning = run.log_entries.get(level=LogLevel.WARNING)
    assert warning.container == "returns"
    assert warning.message.startswith("returns: Reading returns from the source failed")
    # PostgreSQL aborts a transaction at its first error: the next container still works.
    assert table_names(enrichment) == {"assay_mat_regions", "assay_mat_stores"}
    assert count(enrichment, "assay_mat_stores") == manifest.tables["stores"]


def test_memory_does_not_grow_with_the_table(editor, datastore, dbs):
    """10k and 100k rows peak at about the same memory: rows are never all held at once."""
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_bench_table(source, rows=10_000, table="bench_small")
    generate_bench_table(source, rows=100_000, table="bench_large")
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)

    peaks = {}
    for table in ("bench_small", "bench_large"):
        run = run_launch(user=editor, datastore=datastore, operation="materialize",
                         config={"containers": [table]})
        tracemalloc.start()
        try:
            execution.execute_run(run.pk)
            peaks[table] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        run.refresh_from_db()
        assert run.status == "success", run.error
        assert count(enrichment, f"assay_mat_{table}") == run.metrics["records_written"]

    large = Run.objects.filter(config__containers=["bench_large"]).get()
    assert large.metrics["records_written"] == 100_000
    # Streaming shows in the batch count: 100 batches of ENRICHMENT_BATCH_SIZE (1000) rows.
    assert large.log_entries.filter(message__endswith="(100 batches).").exists()
    assert peaks["bench_large"] < peaks["bench_small"] * 1.5 + 1_000_000, peaks


@pytest.mark.parametrize(
    "config, message",
    [
        ({"record_limit": 0}, "record_limit: Input should be greater than 0"),
        ({"record_limit": -5}, "record_limit"),
        ({"containers": ["regions", "nope"]}, "Unknown containers on warehouse: nope"),
        ({"containers": []}, "containers"),
        ({"containers": ["regions", "regions"]}, "lists a container twice"),
        ({"batch": 5}, "batch"),
    ],
)
def test_bad_materialize_config_is_refused_and_nothing_is_stored(
    editor, datastore, dbs, config, message
):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_demo_source(source, rows=50)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    runs = Run.objects.count()
    with pytest.raises(InvalidConfig, match=message) as caught:
        run_launch(user=editor, datastore=datastore, operation="materialize", config=config)
    assert caught.value.status_code == 422
    assert Run.objects.count() == runs
    assert table_names(enrichment) == set()


def test_containers_that_would_share_a_table_are_refused(editor, datastore, dbs):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_demo_source(source, rows=50)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    for name in ("sales-2024", "sales 2024"):
        Container.objects.create(datastore=datastore, name=name, kind="computed",
                                 query="SELECT id FROM regions")
    runs = Run.objects.count()
    for config in ({"containers": ["sales-2024", "sales 2024"]}, {}):
        with pytest.raises(InvalidConfig, match="would both be materialized as") as caught:
            run_launch(user=editor, datastore=datastore, operation="materialize", config=config)
        assert caught.value.status_code == 422
    assert Run.objects.count() == runs
    assert table_names(enrichment) == set()


def test_materialize_without_enrichment_is_refused(editor, datastore, dbs):
    link(datastore, source=dbs.new("sqlite", "source"))
    with pytest.raises(InvalidConfig, match="warehouse has no enrichment datastore"):
        run_launch(user=editor, datastore=datastore, operation="materialize", config={})
    assert not Run.objects.exists()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_abort_lands_quickly_and_keeps_the_tables_already_written(
    editor, datastore, dbs, settings, backend
):
    settings.RUN_ABORT_POLL_INTERVAL = 0.05
    source, enrichment = dbs.new(backend, "source"), dbs.new(backend, "enrichment")
    generate_demo_source(source, rows=50)
    generate_bench_table(source, rows=400_000)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    run = run_launch(user=editor, datastore=datastore, operation="materialize",
                     config={"containers": ["regions", "bench_events"]})

    worker = execute_in_thread(run.pk)
    wait_for(lambda: Run.objects.get(pk=run.pk).progress_done >= 1, timeout=30,
             message="regions was not materialized")
    requested = time.monotonic()
    run_abort(run=run, user=editor)
    worker.join(timeout=30)
    elapsed = time.monotonic() - requested

    run.refresh_from_db()
    assert run.status == "aborted"
    assert run.aborted_by_user == editor
    assert elapsed < 3, f"abort took {elapsed:.1f} s"
    assert run.metrics["containers_materialized"] == 1
    # The finished table stays; the interrupted one was rolled back, not left half-written.
    assert table_names(enrichment) == {"assay_mat_regions"}
    assert count(enrichment, "assay_mat_regions") == 6


@pytest.mark.worker
def test_abort_on_a_real_worker(editor, datastore, dbs, worker_process):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_demo_source(source, rows=50)
    generate_bench_table(source, rows=400_000)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    worker_process()

    run = run_launch(user=editor, datastore=datastore, operation="materialize",
                     config={"containers": ["stores", "bench_events"]})
    wait_for(lambda: Run.objects.get(pk=run.pk).progress_done >= 1, timeout=60,
             message="the worker did not materialize stores")
    run_abort(run=run, user=editor)
    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status="aborted").first(), timeout=10,
                   message="the worker did not land the abort")

    assert (run.finished_at - run.abort_requested_at).total_seconds() < 3
    assert table_names(enrichment) == {"assay_mat_stores"}
    assert count(enrichment, "assay_mat_stores") == 30
