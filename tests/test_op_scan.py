"""Scan end to end: the real engine over the generated demo source, on SQLite and PostgreSQL."""

import pytest

from datastores.demo_source import ORDER_STATUSES
from datastores.models import (
    Anomaly,
    AnomalyStatus,
    Check,
    CheckEvaluation,
    CheckStatus,
    Container,
    Field,
)
from runs import execution
from runs.errors import InvalidConfig
from runs.models import LogLevel, Run, RunStatus
from runs.services import run_launch
from tests.conftest import wait_for
from tests.databases import run_now
from tests.profile_scan_support import (
    BACKENDS,
    DEFECT_CHECKS,
    author_defect_checks,
    execute,
    source_count,
    synced_demo_source,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]


@pytest.fixture(params=BACKENDS)
def source(request, tmp_path, datastore, editor):
    with synced_demo_source(request.param, tmp_path, datastore, editor) as demo:
        yield demo


@pytest.fixture
def sqlite_source(tmp_path, datastore, editor):
    with synced_demo_source("sqlite", tmp_path, datastore, editor) as demo:
        yield demo


def container(datastore, name) -> Container:
    return Container.objects.get(datastore=datastore, name=name)


def test_scan_finds_every_demo_defect_with_exact_counts(source, datastore, editor):
    checks = author_defect_checks(datastore)
    # A clean check on a table without defects and a table-level check that holds.
    Check.objects.create(container=container(datastore, "payments"), type="not_negative",
                         field_name="amount")
    orders = source.manifest.tables["orders"]
    Check.objects.create(container=container(datastore, "orders"), type="row_count_between",
                         params={"min": orders, "max": orders})
    # Drafts and archived checks are not evaluated.
    Check.objects.create(container=container(datastore, "orders"), type="not_null",
                         field_name="status", status=CheckStatus.DRAFT)

    run = run_now(editor, datastore, "scan", {"source_record_limit": 3})

    assert run.status == RunStatus.SUCCESS and not run.has_warnings
    failing = {key for key, count in source.manifest.defects.items() if count}
    assert len(failing) >= 8  # the demo at this size draws nearly every defect
    for key, check in checks.items():
        anomalies = list(Anomaly.objects.filter(check_rule=check))
        expected = source.manifest.defects[key]
        if not expected:
            assert anomalies == [], key
            continue
        [anomaly] = anomalies
        assert anomaly.failed_count == expected, key
        assert anomaly.run_id == run.pk and anomaly.status == AnomalyStatus.ACTIVE
        # unique shows every row of a duplicated value, so it can show more than its count.
        assert min(3, expected) <= len(anomaly.examples) <= 3, key
        if check.type != "unique":
            assert len(anomaly.examples) == min(3, expected), key
    # Examples are the failing source rows themselves.
    quantity = Anomaly.objects.get(check_rule=checks["order_items.quantity.negative"])
    assert all(row["quantity"] < 0 for row in quantity.examples)
    assert {"id", "order_id", "quantity"} <= set(quantity.examples[0])
    if source.manifest.defects["customers.email.duplicate"]:
        duplicate = Anomaly.objects.get(check_rule=checks["customers.email.duplicate"])
        emails = [row["email"] for row in duplicate.examples]
        assert emails == sorted(emails)
        for email in set(emails):
            query = "SELECT count(*) FROM customers WHERE email = :e"
            assert source_count(query, source.url, e=email) > 1
    assert Anomaly.objects.count() == len(failing)

    tables = source.manifest.tables
    assert run.metrics == {
        "tables_requested": 15,
        "tables_scanned": 15,
        "records_scanned": sum(tables.values()) + tables["orders"],  # the view: one per order
        "checks_evaluated": len(checks) + 2,
        "anomalies_identified": len(failing),
        "anomalies_resolved": 0,
    }
    assert (run.progress_done, run.progress_total, run.progress_unit) == (15, 15, "Tables")
    unit = run.units.get(name="order_items")
    assert unit.status == RunStatus.SUCCESS
    assert unit.metrics == {
        "records_scanned": tables["order_items"],
        "checks_evaluated": 1,
        "anomalies_identified": 1,
        "anomalies_resolved": 0,
    }
    assert run.log_entries.filter(container="order_items", message__startswith="Scanned").exists()


def test_incremental_scan_reads_only_rows_past_the_high_water_mark(source, datastore, editor):
    checks = author_defect_checks(datastore)
    orders = container(datastore, "orders")
    Container.objects.filter(pk=orders.pk).update(high_water_column="id")
    config = {"containers": ["orders"], "incremental": True}

    first = run_now(editor, datastore, "scan", config)  # no mark yet: a full read
    total = source.manifest.tables["orders"]
    assert first.metrics["records_scanned"] == total
    orders.refresh_from_db()
    assert orders.high_water_mark == total

    # 30 new orders, 4 of them with a status outside the expected values.
    for offset in range(1, 31):
        status = "lost" if offset % 8 == 0 else "paid"
        execute(
            "INSERT INTO orders (id, customer_id, store_id, employee_id, channel, status, "
            "ordered_at) VALUES (:id, 1, 1, 1, 'web', :status, '2025-06-01 10:00:00')",
            source.url, id=total + offset, status=status,
        )
    second = run_now(editor, datastore, "scan", config)

    assert second.status == RunStatus.SUCCESS
    assert second.metrics["records_scanned"] == 30
    # The first scan's open anomaly of that check is updated with what this one found.
    [new] = Anomaly.objects.filter(last_run_id=second.pk)
    assert new.check_rule == checks["orders.status.unexpected"] and new.failed_count == 3
    assert new.run_id == first.pk and new.times_seen == 2
    assert {row["id"] for row in new.examples} == {total + 8, total + 16, total + 24}
    orders.refresh_from_db()
    assert orders.high_water_mark == total + 30

    third = run_now(editor, datastore, "scan", config)  # nothing new
    assert third.metrics["records_scanned"] == 0
    assert not Anomaly.objects.filter(last_run_id=third.pk).exists()
    # An incremental scan never resolves: the open anomalies of the first scan stay open.
    assert not Anomaly.objects.filter(status=AnomalyStatus.RESOLVED).exists()


def test_incremental_scan_on_a_timestamp_high_water_column(source, datastore, editor):
    checks = author_defect_checks(datastore)
    reviews = container(datastore, "reviews")
    Container.objects.filter(pk=reviews.pk).update(high_water_column="created_at")
    config = {"containers": ["reviews"], "incremental": True}
    first = run_now(editor, datastore, "scan", config)
    assert first.metrics["records_scanned"] == source.manifest.tables["reviews"]
    reviews.refresh_from_db()
    mark = reviews.high_water_mark
    assert isinstance(mark, str) and mark < "2026-01-01"

    total = source.manifest.tables["reviews"]
    for offset, rating in enumerate([5, 0, 4, 7, 3], start=1):
        execute(
            "INSERT INTO reviews (id, product_id, customer_id, order_item_id, rating, title, "
            "created_at) VALUES (:id, 1, 1, 1, :rating, 'New', :at)",
            source.url, id=total + offset, rating=rating,
            at=f"2026-06-0{offset} 12:00:00.000000",
        )
    second = run_now(editor, datastore, "scan", config)
    assert second.metrics["records_scanned"] == 5
    [new] = Anomaly.objects.filter(last_run_id=second.pk)
    assert new.check_rule == checks["reviews.rating.out_of_range"] and new.failed_count == 2
    reviews.refresh_from_db()
    assert reviews.high_water_mark.startswith("2026-06-05")

    third = run_now(editor, datastore, "scan", config)
    assert third.metrics["records_scanned"] == 0


def test_full_scan_auto_resolves_anomalies_whose_checks_now_pass(source, datastore, editor):
    checks = author_defect_checks(datastore)
    first = run_now(editor, datastore, "scan", {"containers": ["order_items", "orders"]})
    quantity, status = (
        Anomaly.objects.get(run_id=first.pk, check_rule=checks[key])
        for key in ("order_items.quantity.negative", "orders.status.unexpected")
    )
    Anomaly.objects.filter(pk=quantity.pk).update(status=AnomalyStatus.ACKNOWLEDGED)

    execute("UPDATE order_items SET quantity = 1 WHERE quantity < 0", source.url)
    incremental = run_now(editor, datastore, "scan", {"containers": ["order_items"],
                                                      "incremental": True})
    assert incremental.status == RunStatus.SUCCESS
    quantity.refresh_from_db()
    assert quantity.status == AnomalyStatus.ACKNOWLEDGED

    kept = run_now(editor, datastore, "scan", {"containers": ["order_items"],
                                               "auto_resolve": False})
    assert kept.metrics["anomalies_identified"] == 0
    quantity.refresh_from_db()
    assert quantity.status == AnomalyStatus.ACKNOWLEDGED

    full = run_now(editor, datastore, "scan", {"containers": ["order_items", "orders"]})
    assert full.metrics["anomalies_resolved"] == 1
    quantity.refresh_from_db()
    status.refresh_from_db()
    assert quantity.status == AnomalyStatus.RESOLVED and quantity.resolved_at is not None
    # Still failing: the same anomaly stays open, updated by the later Scan.
    assert status.status == AnomalyStatus.ACTIVE and status.last_run_id == full.pk
    assert Anomaly.objects.filter(check_rule=status.check_rule).count() == 1
    assert list(quantity.events.values_list("to_status", "actor_name")) == [
        ("active", f"Run #{first.pk}"), ("resolved", f"Run #{full.pk}"),
    ]


def test_record_limit_reads_at_most_that_many_rows_and_skips_row_count(sqlite_source, datastore,
                                                                       editor):
    orders = container(datastore, "orders")
    Check.objects.create(container=orders, type="row_count_between", params={"min": 1, "max": 5})
    Check.objects.create(container=orders, type="not_null", field_name="status")
    run = run_now(editor, datastore, "scan", {"containers": ["orders", "regions"],
                                              "record_limit": 100})
    assert run.units.get(name="orders").metrics["records_scanned"] == 100
    assert run.units.get(name="regions").metrics["records_scanned"] == 6
    # The row count of a truncated read says nothing about the table: not evaluated.
    assert run.units.get(name="orders").metrics["checks_evaluated"] == 1
    assert not Anomaly.objects.exists()


def test_many_failing_checks_roll_up_into_one_anomaly(sqlite_source, datastore, editor):
    checks = author_defect_checks(datastore)
    customers = ["customers.email.null", "customers.email.duplicate", "customers.phone.pattern"]
    defects = sqlite_source.manifest.defects
    assert all(defects[key] for key in customers)

    run = run_now(editor, datastore, "scan", {"containers": ["customers", "orders"],
                                              "rollup_threshold": 2})

    [rolled] = Anomaly.objects.filter(container__name="customers")
    assert rolled.check_rule is None
    assert rolled.failed_count == sum(defects[key] for key in customers)
    assert sorted(entry["check_id"] for entry in rolled.examples) == sorted(
        checks[key].pk for key in customers
    )
    assert {entry["failed_count"] for entry in rolled.examples} == {
        defects[key] for key in customers
    }
    assert "3 checks failed" in rolled.description
    # orders fails 2 checks, not more than the threshold: one anomaly per check.
    assert Anomaly.objects.filter(container__name="orders").exclude(check_rule=None).count() == 2
    assert run.units.get(name="customers").metrics["anomalies_identified"] == 1

    # Once every summarised check passes, a full scan resolves the rolled-up anomaly.
    execute("UPDATE customers SET email = 'fixed' || CAST(id AS VARCHAR(10)) || '@example.com', "
            "phone = '+1-555-0100'", sqlite_source.url)
    again = run_now(editor, datastore, "scan", {"containers": ["customers"]})
    assert again.metrics["anomalies_resolved"] == 1
    rolled.refresh_from_db()
    assert rolled.status == AnomalyStatus.RESOLVED


def test_a_broken_check_is_a_warning_and_the_others_still_count(source, datastore, editor):
    customers = container(datastore, "customers")
    null_email = Check.objects.create(container=customers, type="not_null", field_name="email")
    # Stored behind validation's back, as an older release or a direct DB edit could.
    bad_regex = Check.objects.create(
        container=customers, type="matches_pattern", field_name="phone",
        params={"pattern": "(unclosed"},
    )
    gone_column = Check.objects.create(container=customers, type="not_null", field_name="fax")
    # Valid for Python's re, rejected by PostgreSQL's regex engine: the SQL itself fails there.
    named_group = Check.objects.create(
        container=customers, type="matches_pattern", field_name="phone",
        params={"pattern": "(?P<p>[0-9])"},
    )

    run = run_now(editor, datastore, "scan", {"containers": ["customers"]})

    assert run.status == RunStatus.SUCCESS and run.has_warnings
    unit = run.units.get(name="customers")
    assert unit.status == RunStatus.SUCCESS
    [anomaly] = Anomaly.objects.filter(run_id=run.pk, check_rule=null_email)
    assert anomaly.failed_count == source.manifest.defects["customers.email.null"]
    warnings = list(
        run.log_entries.filter(level=LogLevel.WARNING, container="customers")
        .values_list("message", flat=True)
    )
    assert any(f"#{bad_regex.pk}" in w and "could not run" in w for w in warnings)
    assert any(f"#{gone_column.pk}" in w and "could not run" in w for w in warnings)
    # The error itself (it may quote source values) is kept with the check's evaluation,
    # which reporters cannot read, never in the log, which they can.
    errors = dict(
        CheckEvaluation.objects.filter(run_id=run.pk, failed_count=None)
        .values_list("check_rule_id", "error")
    )
    assert "not a valid regular expression" in errors[bad_regex.pk]
    assert "'fax' not found" in errors[gone_column.pk]
    assert not any("regular expression" in w or "'fax'" in w for w in warnings)
    broken = 3 if source.backend == "postgresql" else 2
    assert any(f"#{named_group.pk}" in w for w in warnings) == (source.backend == "postgresql")
    assert (named_group.pk in errors) == (source.backend == "postgresql")
    assert unit.metrics["check_errors"] == broken
    assert unit.metrics["checks_evaluated"] == 4 - broken
    assert not Anomaly.objects.filter(check_rule__in=[bad_regex, gone_column]).exists()


def test_a_dropped_table_fails_its_container_only(source, datastore, editor):
    author_defect_checks(datastore)
    execute("DROP TABLE returns", source.url)

    run = run_now(editor, datastore, "scan", {"containers": ["returns", "reviews", "orders"]})

    assert run.status == RunStatus.SUCCESS and run.has_warnings
    statuses = dict(run.units.values_list("name", "status"))
    assert statuses == {"returns": "failure", "reviews": "success", "orders": "success"}
    failed = run.units.get(name="returns")
    assert "returns" in failed.error
    assert run.log_entries.filter(level=LogLevel.WARNING, container="returns").exists()
    assert run.metrics["tables_scanned"] == 2 and run.metrics["tables_requested"] == 3
    assert Anomaly.objects.filter(container__name="reviews").count() == 1


def test_a_container_removed_after_launch_fails_visibly(sqlite_source, datastore, editor):
    run = run_launch(user=editor, datastore=datastore, operation="scan",
                     config={"containers": ["regions", "returns"]})
    Container.objects.filter(datastore=datastore, name="returns").delete()
    execution.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS and run.has_warnings
    failed = run.units.get(name="returns")
    assert failed.status == RunStatus.FAILURE
    assert "no longer in the catalogue" in failed.error
    assert run.units.get(name="regions").status == RunStatus.SUCCESS


def test_computed_container_is_scanned_as_a_subquery(source, datastore, editor):
    statuses = ", ".join(f"'{s}'" for s in ORDER_STATUSES)
    computed = Container.objects.create(
        datastore=datastore, name="odd_orders", kind="computed",
        # The literal ':web' is SQL, not a bind parameter; the trailing ';' is dropped.
        query=f"SELECT id, status FROM orders WHERE status NOT IN ({statuses}) "
        "AND channel <> 'x:web' AND channel <> ' :web';",
    )
    Field.objects.create(container=computed, name="id", type="integer", position=0)
    Field.objects.create(container=computed, name="status", type="string", position=1)
    check = Check.objects.create(container=computed, type="expected_values",
                                 field_name="status", params={"values": ["paid"]})

    run = run_now(editor, datastore, "scan", {"containers": ["odd_orders"]})

    expected = source.manifest.defects["orders.status.unexpected"]
    assert run.units.get().metrics["records_scanned"] == expected
    assert Anomaly.objects.get(check_rule=check).failed_count == expected


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"containers": ["orders", "nope", "gone"]}, "containers", "nope, gone"),
        ({"source_record_limit": -1}, "source_record_limit", "greater than or equal to 0"),
        ({"source_record_limit": 101}, "source_record_limit", "less than or equal to 100"),
        ({"rollup_threshold": 0}, "rollup_threshold", "greater than or equal to 1"),
        ({"record_limit": 0}, "record_limit", "greater than 0"),
        ({"incremental": "sometimes"}, "incremental", "valid boolean"),
        ({"containers": []}, "containers", "at least 1"),
        ({"shards": 4}, "shards", "Extra inputs"),
    ],
)
def test_bad_config_is_refused_before_any_run_exists(sqlite_source, datastore, editor, config,
                                                     field, text):
    before = Run.objects.count()
    with pytest.raises(InvalidConfig) as raised:
        run_launch(user=editor, datastore=datastore, operation="scan", config=config)
    assert field in raised.value.errors
    assert text in str(raised.value.detail)
    assert Run.objects.count() == before


@pytest.mark.worker
def test_scan_in_a_real_worker(sqlite_source, datastore, editor, worker_process):
    checks = author_defect_checks(datastore)
    worker_process()
    run = run_launch(user=editor, datastore=datastore, operation="scan",
                     config={"containers": ["order_items", "reviews"]})
    run = wait_for(
        lambda: Run.objects.filter(pk=run.pk, status=RunStatus.SUCCESS).first(),
        timeout=60, message="the worker did not finish the scan",
    )
    for key in ("order_items.quantity.negative", "reviews.rating.out_of_range"):
        anomaly = Anomaly.objects.get(check_rule=checks[key])
        assert anomaly.failed_count == sqlite_source.manifest.defects[key]
    assert run.metrics["tables_scanned"] == 2
    assert set(run.units.values_list("status", flat=True)) == {RunStatus.SUCCESS}


def test_defect_check_table_covers_the_manifest(sqlite_source):
    assert set(DEFECT_CHECKS) == set(sqlite_source.manifest.defects)
