"""What Scans leave behind: one open anomaly per failing check, updated by later Scans, resolved
by a full Scan once the source is fixed; the evaluations that show flapping; the demo's checks."""

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction

from datastores.models import (
    Anomaly,
    AnomalyStatus,
    Check,
    CheckEvaluation,
    CheckStatus,
    Container,
    Datastore,
)
from runs.models import RunStatus
from tests.databases import run_now
from tests.profile_scan_support import (
    author_defect_checks,
    execute,
    synced_demo_source,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]


@pytest.fixture
def source(tmp_path, datastore, editor):
    with synced_demo_source("sqlite", tmp_path, datastore, editor) as demo:
        yield demo


def open_anomalies(check):
    return list(Anomaly.objects.filter(check_rule=check, status__in=["active", "acknowledged"]))


def test_a_second_scan_updates_the_open_anomaly_and_a_fixed_source_resolves_it(
    source, datastore, editor
):
    checks = author_defect_checks(datastore)
    first = run_now(editor, datastore, "scan", {})
    assert first.status == RunStatus.SUCCESS
    failing = {key: check for key, check in checks.items() if source.manifest.defects[key]}
    assert len(failing) >= 8
    found = {key: open_anomalies(check) for key, check in failing.items()}
    assert all(len(anomalies) == 1 for anomalies in found.values())

    second = run_now(editor, datastore, "scan", {})
    assert second.status == RunStatus.SUCCESS
    for key, check in failing.items():
        [anomaly] = open_anomalies(check)
        assert anomaly.pk == found[key][0].pk  # the same anomaly, not a twin
        assert anomaly.run_id == first.pk and anomaly.last_run_id == second.pk
        assert anomaly.times_seen == 2
        assert anomaly.failed_count == source.manifest.defects[key]
    assert Anomaly.objects.count() == len(failing)
    assert second.metrics["anomalies_identified"] == len(failing)

    # Fix one defect in the source; a full Scan with auto-resolve resolves its anomaly only.
    quantity = checks["order_items.quantity.negative"]
    execute("UPDATE order_items SET quantity = 1 WHERE quantity < 0", source.url)
    third = run_now(editor, datastore, "scan", {"auto_resolve": True})
    [resolved] = Anomaly.objects.filter(check_rule=quantity)
    assert resolved.status == AnomalyStatus.RESOLVED and resolved.resolved_at
    assert [(e.from_status, e.to_status, e.actor_name) for e in resolved.events.all()] == [
        ("", "active", f"Run #{first.pk}"), ("active", "resolved", f"Run #{third.pk}"),
    ]
    assert third.metrics["anomalies_resolved"] == 1
    assert all(len(open_anomalies(c)) == 1 for k, c in failing.items() if c != quantity)

    # Its evaluations show the history: failed, failed, passed.
    history = list(quantity.evaluations.order_by("id").values_list("run_id", "failed_count"))
    defects = source.manifest.defects["order_items.quantity.negative"]
    assert history == [(first.pk, defects), (second.pk, defects), (third.pk, 0)]


def test_auto_resolve_off_or_an_incremental_scan_leaves_anomalies_open(source, datastore, editor):
    checks = author_defect_checks(datastore)
    run_now(editor, datastore, "scan", {"containers": ["order_items"]})
    quantity = checks["order_items.quantity.negative"]
    execute("UPDATE order_items SET quantity = 1 WHERE quantity < 0", source.url)
    run_now(editor, datastore, "scan", {"containers": ["order_items"], "auto_resolve": False})
    assert len(open_anomalies(quantity)) == 1
    Container.objects.filter(name="order_items").update(high_water_column="id")
    run_now(editor, datastore, "scan", {"containers": ["order_items"], "incremental": True})
    assert len(open_anomalies(quantity)) == 1


def test_a_failure_after_resolution_is_a_new_anomaly(source, datastore, editor, author):
    from datastores.anomalies import anomaly_transition
    from runs.policy import AnomalyAction

    checks = author_defect_checks(datastore)
    status = checks["orders.status.unexpected"]
    run_now(editor, datastore, "scan", {"containers": ["orders"]})
    [first] = open_anomalies(status)
    anomaly_transition(user=author, anomaly=first, action=AnomalyAction.RESOLVE,
                       comment="fixed upstream, they say")
    again = run_now(editor, datastore, "scan", {"containers": ["orders"]})
    [second] = open_anomalies(status)
    assert second.pk != first.pk and second.run_id == again.pk
    first.refresh_from_db()
    assert first.status == AnomalyStatus.RESOLVED
    # Reopening the old one would make two open anomalies of one check: refused.
    from runs.errors import ActionNotAllowed

    with pytest.raises(ActionNotAllowed, match="already has an open anomaly"):
        anomaly_transition(user=author, anomaly=first, action=AnomalyAction.REOPEN)


def test_the_database_refuses_a_second_open_anomaly_of_a_check(datastore):
    container = Container.objects.create(datastore=datastore, name="t", kind="table")
    check = Check.objects.create(container=container, type="not_null", field_name="a")
    Anomaly.objects.create(container=container, check_rule=check, failed_count=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Anomaly.objects.create(container=container, check_rule=check, failed_count=2,
                               status=AnomalyStatus.ACKNOWLEDGED)
    Anomaly.objects.create(container=container, check_rule=check, failed_count=3,
                           status=AnomalyStatus.RESOLVED)
    assert Anomaly.objects.filter(check_rule=check).count() == 2


def test_evaluations_record_errors_and_are_kept_when_the_run_is_deleted(
    source, datastore, editor
):
    from runs.services import run_delete

    customers = Container.objects.get(datastore=datastore, name="customers")
    broken = Check.objects.create(container=customers, type="not_null", field_name="fax")
    run = run_now(editor, datastore, "scan", {"containers": ["customers"]})
    [evaluation] = CheckEvaluation.objects.filter(check_rule=broken)
    assert evaluation.failed_count is None and "'fax' not found" in evaluation.error
    run_delete(run=run, user=editor)
    assert CheckEvaluation.objects.filter(check_rule=broken).exists()


def test_the_demo_seeds_active_checks_that_the_first_scan_turns_into_anomalies(
    tmp_path, settings, admin
):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", rows=600, no_sync=True, stdout=open("/dev/null", "w"))  # noqa: SIM115
    datastore = Datastore.objects.get(name="Demo warehouse")
    checks = Check.objects.filter(datastore=datastore)
    assert checks.count() == 10 and not checks.exclude(status=CheckStatus.ACTIVE).exists()
    call_command("seed_demo", rows=600, no_sync=True, stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert checks.count() == 10  # idempotent

    run = run_now(admin, datastore, "scan", {})
    assert run.status == RunStatus.SUCCESS
    assert run.metrics["checks_evaluated"] == 10
    failing = set(Anomaly.objects.filter(datastore=datastore).values_list("check_rule", flat=True))
    assert len(failing) == run.metrics["anomalies_identified"] >= 8
