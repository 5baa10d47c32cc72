"""Resume of an aborted Profile/Scan: only the unfinished containers, and the source is not
read again for the finished ones (statements counted per table on the source engines)."""

import threading
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from datastores.models import Anomaly, FieldProfile
from runs import execution
from runs.models import ActorKind, Run, RunContainer, RunStatus
from runs.services import run_abort, run_launch, run_resume
from tests.conftest import wait_for
from tests.profile_scan_support import (
    BACKENDS,
    DEMO_TABLES,
    StatementCounter,
    author_defect_checks,
    demo_source_at,
    sync_catalogue,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]

FINISHED_BEFORE_ABORT = 5


@contextmanager
def abort_after_units(run: Run, count: int, user):
    """Abort ``run`` (through the real service) right after its ``count``-th unit commits.

    Runs on the engine's own thread, after the unit's transaction: it requests the abort,
    then waits until the Run's watchdog has seen it, so the engine stops at its next
    checkpoint, before the next container, deterministically.
    """
    fired = threading.Event()

    def after_commit() -> None:
        if fired.is_set():
            return
        if RunContainer.objects.filter(run=run, status=RunStatus.SUCCESS).count() < count:
            return
        fired.set()
        run_abort(run=Run.objects.get(pk=run.pk), user=user)
        [watchdog] = [t for t in threading.enumerate() if t.name == f"run-{run.pk}-watchdog"]
        wait_for(watchdog.ctx.abort_event.is_set, timeout=10, message="watchdog missed the abort")

    def watch(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith('UPDATE "RUNS_RUNCONTAINER"'):
            transaction.on_commit(after_commit)
        return result

    with connection.execute_wrapper(watch):
        yield
    assert fired.is_set(), "the run ended before the abort point"


@pytest.mark.parametrize("operation", ["profile", "scan"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_reads_only_the_containers_the_aborted_run_did_not_finish(
    backend, operation, tmp_path, datastore, editor, settings
):
    settings.RUN_ABORT_POLL_INTERVAL = 0.05
    with demo_source_at(backend, tmp_path) as source:
        datastore.source_url = source.url
        datastore.save()
        sync_catalogue(editor, datastore, include=["table"])  # the 14 tables
        checks = author_defect_checks(datastore) if operation == "scan" else {}

        original = run_launch(user=editor, datastore=datastore, operation=operation, config={})
        with abort_after_units(original, FINISHED_BEFORE_ABORT, editor):
            execution.execute_run(original.pk)
        original.refresh_from_db()
        assert original.status == RunStatus.ABORTED
        assert original.aborted_by_kind == ActorKind.USER and original.aborted_by_user == editor
        units = dict(original.units.values_list("name", "status"))
        finished = {name for name, status in units.items() if status == RunStatus.SUCCESS}
        assert len(units) == 14 and len(finished) == FINISHED_BEFORE_ABORT
        assert set(units.values()) == {RunStatus.SUCCESS, RunStatus.QUEUED}
        frozen = (original.finished_at, original.metrics, original.progress_done)
        assert original.progress_done == FINISHED_BEFORE_ABORT
        key = "tables_profiled" if operation == "profile" else "tables_scanned"
        assert original.metrics[key] == FINISHED_BEFORE_ABORT
        assert original.metrics["tables_requested"] == 14

        resumed = run_resume(run=original, user=editor)
        with StatementCounter(source.url) as counter:
            execution.execute_run(resumed.pk)
        resumed.refresh_from_db()

        assert resumed.status == RunStatus.SUCCESS and resumed.resumed_from_id == original.pk
        unfinished = set(DEMO_TABLES) - finished
        assert set(resumed.units.values_list("name", flat=True)) == unfinished
        assert set(resumed.units.values_list("status", flat=True)) == {RunStatus.SUCCESS}
        assert (resumed.progress_done, resumed.progress_total) == (len(unfinished),) * 2
        assert resumed.metrics["tables_requested"] == len(unfinished)
        assert resumed.metrics[key] == len(unfinished)
        # The source never saw a statement naming a finished table, and saw every other one.
        assert {table: counter.per_table[table] for table in finished} == dict.fromkeys(finished, 0)
        assert all(counter.per_table[table] > 0 for table in unfinished)
        original.refresh_from_db()
        assert (original.finished_at, original.metrics, original.progress_done) == frozen

        if operation == "profile":
            by_run = dict(
                FieldProfile.objects.values_list("field__container__name", "run_id").distinct()
            )
            assert by_run == {
                name: original.pk if name in finished else resumed.pk for name in DEMO_TABLES
            }
        else:
            # Each failing check has exactly one anomaly, from whichever Run read its table.
            failing = [c for key, c in checks.items() if source.manifest.defects[key]]
            assert Anomaly.objects.count() == len(failing)
            for check in failing:
                anomaly = Anomaly.objects.get(check_rule=check)
                expected = original.pk if check.container.name in finished else resumed.pk
                assert anomaly.run_id == expected
