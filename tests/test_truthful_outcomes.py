"""Every Run ends in the state it earned: an accepted Abort ends it Aborted, a Run whose units
all failed ends Failure, and Resume is offered once, only when there is something left to do.

Runs execute in this process through the worker's own code path (``execute_run``); the user's
click is made at the worst moment by hooking the operation's own steps.
"""

import pytest
from django.db.models.functions import Now
from django.test import override_settings

from accounts.models import Level
from datastores.models import Container
from runs import execution
from runs.errors import ActionNotAllowed
from runs.models import ActorKind, LogLevel, Run, RunLogEntry, RunStatus
from runs.operations import get_operation
from runs.policy import Action, available_actions
from runs.reaper import reap
from runs.services import run_abort, run_launch, run_resume
from tests.databases import run_now
from tests.profile_scan_support import author_defect_checks, execute, synced_demo_source
from tests.test_run_lifecycle import HOUR_AGO, running_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]


@pytest.fixture
def source(tmp_path, datastore, editor):
    with synced_demo_source("sqlite", tmp_path, datastore, editor) as demo:
        yield demo


def log_of(run: Run) -> list[str]:
    return list(RunLogEntry.objects.filter(run_id=run.pk).values_list("message", flat=True))


def launch_with_hook(monkeypatch, editor, datastore, operation: str, step: str, hook) -> Run:
    """Launch and execute a Run, calling ``hook(run_id)`` just before the operation's ``step``."""
    op = type(get_operation(operation))
    original = getattr(op, step)
    run = run_launch(user=editor, datastore=datastore, operation=operation, config={})

    def hooked(self, ctx, *args):
        hook(ctx.run_id)
        return original(self, ctx, *args)

    monkeypatch.setattr(op, step, hooked)
    execution.execute_run(run.pk)
    return Run.objects.get(pk=run.pk)


# -- Abort means abort -------------------------------------------------------------------------
def test_abort_after_the_last_unit_ends_aborted_by_that_user(source, monkeypatch, datastore,
                                                             editor):
    """The click lands after the last checkpoint, while the operation finishes: the Run that
    would have been a Success ends Aborted, by the user who asked, every unit kept."""
    def click(run_id):
        run_abort(run=Run.objects.get(pk=run_id), user=editor)

    run = launch_with_hook(monkeypatch, editor, datastore, "profile", "finish", click)
    assert run.status == RunStatus.ABORTED
    assert (run.aborted_by_kind, run.aborted_by_user_id) == (ActorKind.USER, editor.pk)
    assert run.progress_done == run.progress_total > 0
    log = log_of(run)
    assert f"Abort requested by {editor.display_name}." in log
    assert log[-1] == "Aborted; partial results are kept."
    # Every unit succeeded: there is nothing to resume, and Resume is not offered.
    assert run.units_remaining == 0
    assert Action.RESUME not in available_actions(run, Level.EDITOR)
    with pytest.raises(ActionNotAllowed, match="Nothing to resume"):
        run_resume(run=run, user=editor)
    assert not Run.objects.filter(resumed_from=run).exists()


def test_abort_after_the_run_ended_is_refused_and_changes_nothing(source, datastore, editor):
    run = run_now(editor, datastore, "profile")
    assert run.status == RunStatus.SUCCESS
    refused = rf"Abort is not available: Run #{run.pk} \(Profile\) is Success"
    with pytest.raises(ActionNotAllowed, match=refused):
        run_abort(run=run, user=editor)
    after = Run.objects.get(pk=run.pk)
    assert (after.status, after.abort_requested_at) == (RunStatus.SUCCESS, None)


def test_a_second_abort_changes_nothing_and_logs_nothing(source, monkeypatch, datastore, editor,
                                                         admin):
    def two_clicks(run_id):
        run_abort(run=Run.objects.get(pk=run_id), user=editor)
        run_abort(run=Run.objects.get(pk=run_id), user=admin)

    run = launch_with_hook(monkeypatch, editor, datastore, "profile", "begin", two_clicks)
    assert run.status == RunStatus.ABORTED and run.aborted_by_user_id == editor.pk
    requested = [line for line in log_of(run) if line.startswith("Abort requested")]
    assert requested == [f"Abort requested by {editor.display_name}."]


def test_reaper_honours_a_pending_abort_before_declaring_the_worker_lost(datastore, editor):
    """The worker froze after the user clicked Abort: the Run ends Aborted by that user as soon
    as the heartbeat is stale, without waiting for the abort grace period."""
    run, _ = running_run(datastore)
    run_abort(run=run, user=editor)
    assert reap()["aborted"] == 0  # heartbeat still fresh
    Run.objects.filter(pk=run.pk).update(heartbeat_at=Now() - HOUR_AGO)
    assert reap() == {"aborted": 1, "lost": 0, "requeued": 0, "timed_out": 0}
    run.refresh_from_db()
    assert run.status == RunStatus.ABORTED and run.error == ""
    assert (run.aborted_by_kind, run.aborted_by_user_id) == (ActorKind.USER, editor.pk)
    assert log_of(run)[-1] == "Aborted: the worker did not acknowledge the abort in time."


# -- Honest outcomes ---------------------------------------------------------------------------
def drop_every_table(url: str):
    def hook(run_id):
        run = Run.objects.get(pk=run_id)
        for name, kind in Container.objects.filter(datastore_id=run.datastore_id).values_list(
                "name", "kind"):
            execute(f'DROP {"VIEW" if kind == "view" else "TABLE"} IF EXISTS "{name}"', url)
    return hook


def test_a_scan_whose_every_container_failed_ends_failure(source, monkeypatch, datastore, editor):
    """The source disappears after the Scan planned its containers: no data was checked, so
    the Run is a Failure (a pipeline gate must not pass), and every container is left to do."""
    author_defect_checks(datastore)
    run = launch_with_hook(monkeypatch, editor, datastore, "scan", "begin",
                           drop_every_table(source.url))
    assert run.status == RunStatus.FAILURE
    assert run.progress_failed == run.progress_total == run.units_remaining > 0
    assert run.error == f"all {run.progress_total} tables failed"
    entry = RunLogEntry.objects.filter(run_id=run.pk).last()
    assert (entry.message, entry.level) == (f"Run failed: {run.error}", LogLevel.ERROR)
    assert Action.RESUME in available_actions(run, Level.EDITOR)


@override_settings(RUN_FAILED_UNITS_SHARE=0.25)
def test_the_failed_units_threshold_is_configurable(source, monkeypatch, datastore, editor):
    author_defect_checks(datastore)
    units = Container.objects.filter(datastore=datastore).count()

    def drop_one(run_id):
        execute('DROP TABLE IF EXISTS "orders"', source.url)

    run = launch_with_hook(monkeypatch, editor, datastore, "scan", "begin", drop_one)
    # orders and the view over it fail: 2 of 15 is under a quarter.
    assert run.progress_total == units and run.progress_failed == 2
    assert run.status == RunStatus.SUCCESS and run.has_warnings

    def drop_three(run_id):
        for table in ("orders", "customers", "payments"):
            execute(f'DROP TABLE IF EXISTS "{table}"', source.url)

    run = launch_with_hook(monkeypatch, editor, datastore, "scan", "begin", drop_three)
    assert run.progress_failed * 4 >= units
    assert run.status == RunStatus.FAILURE
    assert run.error == f"{run.progress_failed} of {units} tables failed"


def test_one_failed_unit_of_many_is_still_a_success_with_a_warning(source, monkeypatch,
                                                                    datastore, editor):
    author_defect_checks(datastore)

    def drop_one(run_id):
        execute('DROP TABLE IF EXISTS "orders"', source.url)

    run = launch_with_hook(monkeypatch, editor, datastore, "scan", "begin", drop_one)
    assert run.status == RunStatus.SUCCESS and run.has_warnings
    assert run.progress_failed == 2 and run.units_remaining == 2  # orders and its view


# -- Resume: once, from the latest of the chain --------------------------------------------------
def aborted_half_way(monkeypatch, datastore, editor) -> Run:
    """A Profile aborted after its first table."""
    profile = type(get_operation("profile"))
    original = profile.process
    seen = []

    def process(self, ctx, unit):
        if seen:
            run_abort(run=Run.objects.get(pk=ctx.run_id), user=editor)
        seen.append(unit.name)
        return original(self, ctx, unit)

    monkeypatch.setattr(profile, "process", process)
    run = run_launch(user=editor, datastore=datastore, operation="profile", config={})
    execution.execute_run(run.pk)
    monkeypatch.setattr(profile, "process", original)
    run = Run.objects.get(pk=run.pk)
    assert run.status == RunStatus.ABORTED and 0 < run.units_remaining < run.progress_total
    return run


def test_resume_twice_continues_from_the_latest_run_of_the_chain(source, monkeypatch,
                                                                 datastore, editor):
    original = aborted_half_way(monkeypatch, datastore, editor)
    first = run_resume(run=original, user=editor)
    assert first.resumed_from_id == original.pk
    assert first.progress_total == original.units_remaining
    with pytest.raises(ActionNotAllowed, match=f"already resumed as Run #{first.pk}"):
        run_resume(run=original, user=editor)  # the first Resume has not run yet
    execution.execute_run(first.pk)
    first.refresh_from_db()
    assert first.status == RunStatus.SUCCESS and first.units_remaining == 0
    # The chain is done: resuming the original again finds nothing left.
    with pytest.raises(ActionNotAllowed, match=rf"resumed as Run #{first.pk} \(Success\)"):
        run_resume(run=original, user=editor)
    assert Run.objects.filter(resumed_from__isnull=False).count() == 1
