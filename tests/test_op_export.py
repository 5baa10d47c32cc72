"""Export: anomalies, checks and field profiles land in the enrichment datastore, replaced."""

import json

import pytest
import sqlalchemy as sa

from datastores.demo_source import generate_demo_source
from datastores.enrichment import replace_table
from datastores.models import Anomaly, Check, CheckStatus, Container, FieldProfile
from datastores.url_policy import UNIFORM_REFUSAL
from runs.errors import InvalidConfig
from runs.models import Run
from runs.services import run_launch
from tests.conftest import wait_for
from tests.databases import run_now, sync_catalogue
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

TABLES = ("assay_export_anomalies", "assay_export_checks", "assay_export_field_profiles")


def populate(editor, datastore) -> None:
    """Sync, Profile (inferring active checks) and Scan the demo, all through the engine."""
    sync_catalogue(editor, datastore)
    run = run_now(editor, datastore, "profile", {"infer_as_draft": False})
    assert run.status == "success", run.error
    customers = Container.objects.get(datastore=datastore, name="customers")
    # The demo's null emails guarantee at least one anomaly.
    Check.objects.get_or_create(
        container=customers, type="not_null", field_name="email", origin="authored",
        defaults={"status": CheckStatus.ACTIVE},
    )  # fmt: skip
    run = run_now(editor, datastore, "scan")
    assert run.status == "success", run.error


@pytest.mark.parametrize("source_backend, enrichment_backend", BACKEND_PAIRS)
def test_export_writes_every_asset_of_every_container(
    editor, datastore, dbs, source_backend, enrichment_backend
):
    source = dbs.new(source_backend, "source")
    enrichment = dbs.new(enrichment_backend, "enrichment")
    generate_demo_source(source, rows=300)
    link(datastore, source=source, enrichment=enrichment)
    populate(editor, datastore)
    anomalies = Anomaly.objects.filter(container__datastore=datastore)
    checks = Check.objects.filter(container__datastore=datastore)
    profiles = FieldProfile.objects.filter(field__container__datastore=datastore)
    assert anomalies.exists() and checks.exists() and profiles.exists()

    run = run_now(editor, datastore, "export")

    assert run.status == "success", run.error
    assert not run.has_warnings
    assert (run.progress_done, run.progress_total, run.progress_unit) == (3, 3, "Assets")
    assert run.metrics == {
        "anomalies_exported": anomalies.count(),
        "checks_exported": checks.count(),
        "field_profiles_exported": profiles.count(),
    }
    assert set(TABLES) <= table_names(enrichment)
    exported = query(enrichment, "SELECT id, container, failed_count FROM assay_export_anomalies")
    assert sorted((r["id"], r["container"], r["failed_count"]) for r in exported) == sorted(
        (a.pk, a.container.name, a.failed_count) for a in anomalies
    )
    exported = query(enrichment, "SELECT id, type, field_name, status FROM assay_export_checks")
    assert sorted((r["id"], r["type"], r["field_name"] or "", r["status"]) for r in exported) == (
        sorted((c.pk, c.type, c.field_name, c.status) for c in checks)
    )
    exported = query(
        enrichment,
        "SELECT container, field, record_count, null_count FROM assay_export_field_profiles",
    )
    assert sorted(tuple(r.values()) for r in exported) == sorted(
        (p.field.container.name, p.field.name, p.record_count, p.stats["nulls"]) for p in profiles
    )
    # JSON columns come back as JSON on both dialects.
    check = checks.filter(type="expected_values").first()
    assert check is not None, "the demo's order status infers an expected_values check"
    stored = query(enrichment, "SELECT params FROM assay_export_checks WHERE id = :id", id=check.pk)
    stored = stored[0]["params"]
    assert (stored if isinstance(stored, dict) else json.loads(stored)) == check.params


def test_export_replaces_tables_and_honours_containers_and_assets(editor, datastore, dbs):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_demo_source(source, rows=300)
    link(datastore, source=source, enrichment=enrichment)
    populate(editor, datastore)
    assert run_now(editor, datastore, "export").status == "success"
    customers = Check.objects.filter(container__datastore=datastore, container__name="customers")

    run = run_now(editor, datastore, "export", {"containers": ["customers"], "assets": ["checks"]})

    assert run.status == "success", run.error
    assert run.progress_total == 1
    assert run.metrics == {"checks_exported": customers.count()}
    assert count(enrichment, "assay_export_checks") == customers.count()
    rows = query(enrichment, "SELECT DISTINCT container FROM assay_export_checks")
    assert [r["container"] for r in rows] == ["customers"]
    # Assets not asked for keep their previous export.
    assert count(enrichment, "assay_export_anomalies") == Anomaly.objects.count()

    # Deleting a check in Assay shows in the next export: the table is replaced, not appended.
    customers.first().delete()
    run_now(editor, datastore, "export", {"containers": ["customers"], "assets": ["checks"]})
    assert count(enrichment, "assay_export_checks") == customers.count()


def test_export_uses_the_datastore_prefix(editor, datastore, dbs):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_demo_source(source, rows=50)
    link(datastore, source=source, enrichment=enrichment)
    datastore.enrichment_prefix = "acme"
    datastore.save()
    sync_catalogue(editor, datastore)

    run = run_now(editor, datastore, "export", {"assets": ["checks", "anomalies"]})

    assert run.status == "success", run.error
    assert table_names(enrichment) == {"acme_export_checks", "acme_export_anomalies"}
    assert run.metrics == {"checks_exported": 0, "anomalies_exported": 0}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=PG)])
def test_a_replacement_that_stops_half_way_keeps_the_previous_table(dbs, backend):
    """Drop, create and inserts share one transaction: readers never see half a table."""
    url = dbs.new(backend, "enrichment")
    execute(url, "CREATE TABLE assay_export_checks (id INTEGER)")
    execute(url, "INSERT INTO assay_export_checks VALUES (1), (2), (3)")
    table = sa.Table("assay_export_checks", sa.MetaData(), sa.Column("id", sa.BigInteger),
                     sa.Column("type", sa.String(32)))
    calls = []

    def checkpoint():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("abort")

    batches = [[{"id": 10, "type": "a"}], [{"id": 11, "type": "b"}], [{"id": 12, "type": "c"}]]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn, pytest.raises(RuntimeError):
            replace_table(conn, table, batches, checkpoint=checkpoint)
        rows = query(url, "SELECT * FROM assay_export_checks ORDER BY id")
        assert [tuple(r.values()) for r in rows] == [(1,), (2,), (3,)]
        with engine.connect() as conn:
            assert replace_table(conn, table, batches[:2], checkpoint=lambda: None) == (2, 2)
    finally:
        engine.dispose()
    assert [r["id"] for r in query(url, "SELECT id FROM assay_export_checks ORDER BY id")] == [
        10, 11
    ]


def test_export_of_a_datastore_without_enrichment_is_refused(editor, datastore, dbs):
    link(datastore, source=dbs.new("sqlite", "source"))
    with pytest.raises(InvalidConfig, match="has no enrichment datastore"):
        run_launch(user=editor, datastore=datastore, operation="export", config={})
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"containers": ["customers", "nope"]}, "Unknown containers on warehouse: nope"),
        ({"assets": ["anomalies", "secrets"]}, "assets.1"),
        ({"assets": []}, "assets"),
        ({"assets": ["checks", "checks"]}, "assets lists an asset twice"),
        ({"format": "csv"}, "format"),
    ],
)
def test_bad_export_config_is_refused_and_nothing_is_stored(
    editor, datastore, dbs, config, message
):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_demo_source(source, rows=50)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    runs = Run.objects.count()
    with pytest.raises(InvalidConfig, match=message) as caught:
        run_launch(user=editor, datastore=datastore, operation="export", config=config)
    assert caught.value.status_code == 422
    assert Run.objects.count() == runs


def test_an_unreachable_enrichment_datastore_fails_the_run(editor, datastore, dbs, tmp_path):
    link(datastore, source=dbs.new("sqlite", "source"),
         enrichment=f"sqlite:///{tmp_path / 'missing' / 'enrichment.sqlite3'}")

    run = run_now(editor, datastore, "export")

    assert run.status == "failure"
    assert run.error == f"Enrichment datastore: {UNIFORM_REFUSAL}"


@pytest.mark.worker
def test_export_on_a_real_worker(editor, datastore, dbs, worker_process):
    source, enrichment = dbs.new("sqlite", "source"), dbs.new("sqlite", "enrichment")
    generate_demo_source(source, rows=100)
    link(datastore, source=source, enrichment=enrichment)
    sync_catalogue(editor, datastore)
    customers = Container.objects.get(datastore=datastore, name="customers")
    Check.objects.create(container=customers, type="not_null", field_name="email")
    worker_process()

    run = run_launch(user=editor, datastore=datastore, operation="export", config={})
    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status="success").first(), timeout=60,
                   message="the worker did not finish the Export")

    assert run.metrics["checks_exported"] == 1
    assert query(enrichment, "SELECT type, field_name FROM assay_export_checks") == [
        {"type": "not_null", "field_name": "email"}
    ]
