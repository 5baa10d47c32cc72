"""Retention: old finished Runs go in bounded batches with deletion records; what they found
stays; the dry run counts exactly what the real run deletes."""

import datetime as dt
import threading
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from datastores.models import Anomaly
from runs.models import Run, RunContainer, RunDeletion, RunLogEntry, RunStatus
from runs.retention import Policy, delete_batches
from runs.tasks import apply_retention
from tests.factories import ContainerFactory
from tests.ui_support import client_for, make_run, run_ids

NOW = timezone.now()


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def dry_run_count() -> int:
    out = StringIO()
    call_command("apply_retention", "--dry-run", stdout=out)
    return int(out.getvalue().split()[2])


@pytest.fixture
def retention(settings):
    settings.RUN_RETENTION_DAYS = 30
    settings.RUN_RETENTION_DAYS_BY_OPERATION = {"scan": 90}
    settings.RUN_RETENTION_BATCH_SIZE = 3
    return settings


@pytest.mark.both_backends
def test_old_finished_runs_go_what_they_found_stays(db, retention, datastore, editor, admin):
    old_sync = [make_run(datastore, operation="sync", status=s, created_at=days_ago(40),
                         logs=["line"], units=[("t", "success", {})])
                for s in ("success", "failure", "aborted", "success", "failure")]
    old_scan = make_run(datastore, operation="scan", created_at=days_ago(100), user=editor)
    kept = [
        make_run(datastore, operation="scan", created_at=days_ago(40)),  # scan: 90 days
        make_run(datastore, operation="sync", created_at=days_ago(10)),  # recent
        make_run(datastore, operation="sync", status="running", created_at=days_ago(400)),
        make_run(datastore, operation="sync", status="queued", created_at=days_ago(400)),
    ]
    container = ContainerFactory(datastore=datastore)
    anomaly = Anomaly.objects.create(container=container, datastore=datastore,
                                     run_id=old_scan.pk, failed_count=3)
    doomed = {r.pk for r in old_sync} | {old_scan.pk}

    assert dry_run_count() == 6
    assert Run.objects.count() == 10  # the dry run deleted nothing

    sizes = list(delete_batches(Policy.from_settings(), timezone.now()))
    assert sizes == [3, 2, 1]  # bounded by RUN_RETENTION_BATCH_SIZE, per operation
    assert set(Run.objects.values_list("pk", flat=True)) == {r.pk for r in kept}
    assert not RunLogEntry.objects.filter(run_id__in=doomed).exists()
    assert not RunContainer.objects.filter(run_id__in=doomed).exists()
    anomaly.refresh_from_db()  # the anomaly outlives the Run that found it
    assert anomaly.run_id == old_scan.pk

    records = {d.run_id: d for d in RunDeletion.objects.all()}
    assert set(records) == doomed
    scan_record = records[old_scan.pk]
    assert (scan_record.deleted_by_id, scan_record.deleted_by_name) == (None, "retention")
    assert (scan_record.operation, scan_record.status) == ("scan", RunStatus.SUCCESS)
    assert scan_record.snapshot["triggered_by"] == editor.display_name
    assert scan_record.datastore_name == datastore.name
    assert dry_run_count() == 0

    # The audit log lists them too, a batch an event, by Assay itself.
    events = AuditEvent.objects.filter(action="run.expired").order_by("id")
    assert [e.object_name for e in events] == ["3 Sync Runs", "2 Sync Runs", "1 Scan Runs"]
    assert {pk for e in events for pk in e.before["runs"]} == doomed
    assert {e.actor_name for e in events} == {"System"}
    page = client_for(admin).get("/audit/?action=run.expired").content.decode()
    assert "Runs deleted by retention" in page and "3 Sync Runs" in page


@pytest.mark.both_backends
def test_housekeeping_pass_is_capped_and_recorded(db, retention, datastore):
    retention.RUN_RETENTION_MAX_PER_PASS = 4
    for _ in range(6):
        make_run(datastore, operation="sync", created_at=days_ago(31))
    assert apply_retention() == {"deleted": 4}
    assert apply_retention() == {"deleted": 2}
    assert apply_retention() == {"deleted": 0}
    from monitoring.models import HousekeepingActionCount, HousekeepingPass

    assert HousekeepingPass.objects.get(job="runs.apply_retention").passes == 3
    assert HousekeepingActionCount.objects.get(job="runs.apply_retention").total == 6


def test_command_refuses_without_a_retention_setting(db, settings):
    settings.RUN_RETENTION_DAYS = 0
    settings.RUN_RETENTION_DAYS_BY_OPERATION = {}
    with pytest.raises(CommandError, match="No retention is configured"):
        call_command("apply_retention", "--dry-run")


def test_unknown_operation_in_the_setting_fails_the_system_check(db, settings):
    settings.RUN_RETENTION_DAYS_BY_OPERATION = {"scna": 3}
    from django.core.management.base import SystemCheckError

    with pytest.raises(SystemCheckError, match="unknown operations: scna"):
        call_command("check")


# -- 10^5 old Runs ---------------------------------------------------------------------------
OLD_RUNS = 100_000


def seed_old_runs(datastore, n: int) -> None:
    """n Syncs that finished 60 days ago, with a log line each, in two INSERT ... SELECTs.

    Finished Runs and their log lines cannot be inserted (triggers); the triggers are off only
    while these seeding statements run (the ORM's way, running rows finished by one UPDATE,
    takes minutes).
    """
    old = days_ago(60)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE runs_run DISABLE TRIGGER USER")
        cursor.execute(
            "INSERT INTO runs_run (operation, status, datastore_id, config, triggered_by_kind, "
            "triggered_via, created_at, started_at, finished_at, progress_done, progress_unit, "
            "metrics, has_warnings, log_lines, error, aborted_by_kind) "
            "SELECT 'sync', 'success', %s, '{}', 'system', 'web', %s, %s, %s, 0, '', '{}', "
            "false, 1, '', '' FROM generate_series(1, %s)",
            [datastore.pk, old, old, old + dt.timedelta(minutes=1), n],
        )
        cursor.execute("ALTER TABLE runs_runlogentry DISABLE TRIGGER USER")
        cursor.execute(
            "INSERT INTO runs_runlogentry (run_id, container, level, message, created_at) "
            "SELECT id, '', 'info', 'done', created_at FROM runs_run"
        )
        cursor.execute("ALTER TABLE runs_runlogentry ENABLE TRIGGER USER")
        cursor.execute("ALTER TABLE runs_run ENABLE TRIGGER USER")


@pytest.mark.postgres
def test_hundred_thousand_old_runs_deleted_in_batches_while_activity_answers(
    transactional_db, settings, datastore, admin
):
    settings.RUN_RETENTION_DAYS = 30
    settings.RUN_RETENTION_BATCH_SIZE = 1000
    seeding = time.monotonic()
    seed_old_runs(datastore, OLD_RUNS)
    print(f"seeded {OLD_RUNS} Runs in {time.monotonic() - seeding:.1f} s")
    recent = [make_run(datastore, operation="scan", created_at=days_ago(1)) for _ in range(3)]
    container = ContainerFactory(datastore=datastore)
    first_old = Run.objects.order_by("pk").values_list("pk", flat=True).first()
    Anomaly.objects.create(container=container, datastore=datastore, run_id=first_old,
                           failed_count=1)

    assert dry_run_count() == OLD_RUNS

    sizes: list[int] = []

    def delete():
        try:
            sizes.extend(delete_batches(Policy.from_settings(), timezone.now()))
        finally:
            connection.close()

    worker = threading.Thread(target=delete)
    deleting = time.monotonic()
    client = client_for(admin)
    answers: list[float] = []
    worker.start()
    # A user reloading Activity every 0.2 s (in this process: back to back would starve the
    # deleting thread of the GIL and measure Python, not the database).
    while not worker.join(timeout=0.2) and worker.is_alive():
        started = time.monotonic()
        response = client.get("/activity/")
        answers.append(time.monotonic() - started)
        assert response.status_code == 200
        # The newest Runs head the page throughout.
        assert run_ids(response.content.decode())[:3] == [r.pk for r in reversed(recent)]
    took = time.monotonic() - deleting

    assert sum(sizes) == OLD_RUNS
    assert max(sizes) == 1000 and len(sizes) == OLD_RUNS // 1000
    assert len(answers) >= 3, "the deletion ended before Activity was asked more than twice"
    assert Run.objects.count() == 3
    assert RunLogEntry.objects.filter(run__isnull=True).count() == 0
    assert RunLogEntry.objects.count() == 0
    assert RunDeletion.objects.filter(deleted_by_name="retention").count() == OLD_RUNS
    assert Anomaly.objects.filter(run_id=first_old).exists()
    print(f"deleted {OLD_RUNS} Runs in {took:.1f} s; "
          f"Activity answered {len(answers)} times during the deletion, "
          f"slowest {max(answers):.3f} s, median {sorted(answers)[len(answers) // 2]:.3f} s")
