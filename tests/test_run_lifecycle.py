"""Run lifecycle in one process: claim, fencing, abort, transitions, logs, delete, reaper.

Real database, real services; the multi-actor versions of these races live in
test_run_races.py and the real worker in test_worker_execution.py.
"""

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from datastores.models import Anomaly, Check, Container
from runs.dispatch import send_execute
from runs.errors import ActionNotAllowed, NotFound, PermissionDenied
from runs.execution import RunContext, RunFenced, _finalise, claim
from runs.logs import append_log
from runs.models import (
    ACTIVE_STATUSES,
    ActorKind,
    LogLevel,
    Run,
    RunContainer,
    RunDeletion,
    RunLogEntry,
    RunStatus,
)
from runs.operations.base import OperationConfig
from runs.reaper import reap
from runs.services import run_abort, run_delete, transition
from tests.conftest import broker_messages, purge_queue
from tests.factories import ContainerFactory, RunFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

TERMINAL = [RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.ABORTED]
HOUR_AGO = timedelta(hours=1)


def terminal_run(datastore, status, **fields) -> Run:
    return RunFactory(
        datastore=datastore,
        status=status,
        finished_at=timezone.now(),
        aborted_by_kind=ActorKind.SYSTEM if status == RunStatus.ABORTED else "",
        **fields,
    )


def running_run(datastore, **fields) -> tuple[Run, uuid.UUID]:
    """A Run claimed by a (pretend) worker; returns it with the worker's token.

    Each on a container of its own: Scans of the same container never run at once.
    """
    fields.setdefault("config", {"containers": [f"t{uuid.uuid4().hex}"]})
    run = RunFactory(datastore=datastore, **fields)
    token = claim(run.pk)
    assert token is not None
    return Run.objects.get(pk=run.pk), token


def messages(run: Run) -> list[str]:
    return list(RunLogEntry.objects.filter(run=run).values_list("message", flat=True))


def raw_row(run_id: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM runs_run WHERE id = %s", [run_id])
        return cursor.fetchone()


# -- claim -------------------------------------------------------------------------------------
def test_claim_is_compare_and_set(datastore):
    run = RunFactory(datastore=datastore)
    token = claim(run.pk)
    assert token is not None
    assert claim(run.pk) is None  # a duplicate delivery finds nothing to claim
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert run.worker_token == token
    assert run.started_at is not None and run.heartbeat_at is not None


@pytest.mark.parametrize("status", TERMINAL)
def test_claim_of_terminal_run_returns_none(datastore, status):
    run = terminal_run(datastore, status)
    before = raw_row(run.pk)
    assert claim(run.pk) is None
    assert raw_row(run.pk) == before


def test_claim_of_unknown_run_returns_none(db):
    assert claim(987654) is None


def test_claim_of_unclaimed_promote_keeps_its_start_time(datastore):
    started = timezone.now() - HOUR_AGO
    run = RunFactory(datastore=datastore, operation="promote", destination_datastore=datastore,
                     status=RunStatus.RUNNING, started_at=started)
    assert claim(run.pk) is not None
    assert claim(run.pk) is None
    run.refresh_from_db()
    assert run.started_at == started


# -- fencing -----------------------------------------------------------------------------------
@pytest.fixture
def owned(datastore):
    run, token = running_run(datastore)
    return RunContext(run, token, OperationConfig())


def assert_fenced(ctx: RunContext) -> None:
    with pytest.raises(RunFenced):
        ctx.update_run(progress_done=99)
    with pytest.raises(RunFenced):
        ctx.log("a line from a worker that lost the Run")
    with pytest.raises(RunFenced), ctx.fenced():
        Container.objects.create(datastore=ctx.datastore, name="written-while-fenced",
                                 kind="table")
    # The fenced transaction rolled back what it wrote.
    assert not Container.objects.filter(name="written-while-fenced").exists()
    assert not append_log(ctx.run_id, "another line", token=ctx.token)
    assert "a line from a worker that lost the Run" not in messages(ctx.run)
    assert Run.objects.get(pk=ctx.run_id).progress_done != 99


def test_owner_writes_pass_the_fence(owned):
    owned.update_run(progress_done=1)
    owned.log("hello")
    with owned.fenced():
        Container.objects.create(datastore=owned.datastore, name="written", kind="table")
    assert Container.objects.filter(name="written").exists()
    assert Run.objects.get(pk=owned.run_id).progress_done == 1
    assert "hello" in messages(owned.run)


def test_worker_writes_fail_after_token_changes(owned):
    Run.objects.filter(pk=owned.run_id).update(worker_token=uuid.uuid4())
    assert_fenced(owned)


@pytest.mark.parametrize("status", TERMINAL)
def test_worker_writes_fail_after_run_is_finalised(owned, status):
    assert transition(owned.run_id, where=Q(status=RunStatus.RUNNING), to=status,
                      fields={"aborted_by_kind": ActorKind.SYSTEM})
    before = raw_row(owned.run_id)
    assert_fenced(owned)
    assert raw_row(owned.run_id) == before


# -- abort -------------------------------------------------------------------------------------
def test_abort_of_queued_run_lands_aborted_at_once(datastore, editor):
    run = RunFactory(datastore=datastore)
    result = run_abort(run=run, user=editor)
    assert result.status == RunStatus.ABORTED
    assert result.aborted_by_kind == ActorKind.USER
    assert result.aborted_by_user == editor
    assert result.aborted_by_name == editor.display_name
    assert result.finished_at is not None
    assert result.abort_requested_by == editor
    assert messages(run) == [f"Aborted by {editor.display_name}."]
    # A worker picking up the (lost) message later finds nothing to claim.
    assert claim(run.pk) is None


def test_abort_of_running_run_only_flags_it(datastore, editor):
    run, token = running_run(datastore)
    result = run_abort(run=run, user=editor)
    assert result.status == RunStatus.RUNNING
    assert result.is_aborting
    assert result.abort_requested_by == editor
    assert result.finished_at is None
    assert result.aborted_by_kind == ""
    assert result.worker_token == token  # the worker still owns it and lands it itself
    assert messages(run) == [f"Abort requested by {editor.display_name}."]
    # Asking again changes nothing and logs nothing.
    again = run_abort(run=run, user=editor)
    assert again.status == RunStatus.RUNNING
    assert again.abort_requested_at == result.abort_requested_at
    assert len(messages(run)) == 1


def test_abort_of_running_run_without_worker_lands_at_once(datastore, editor):
    # An External Scan has no worker: nobody else would land the abort.
    run = RunFactory(datastore=datastore, operation="external_scan", status=RunStatus.RUNNING,
                     started_at=timezone.now())
    result = run_abort(run=run, user=editor)
    assert result.status == RunStatus.ABORTED
    assert result.aborted_by_user == editor


@pytest.mark.parametrize("status", TERMINAL)
def test_abort_of_terminal_run_is_not_allowed(datastore, editor, status):
    run = terminal_run(datastore, status)
    before = raw_row(run.pk)
    with pytest.raises(ActionNotAllowed):
        run_abort(run=run, user=editor)
    assert raw_row(run.pk) == before


@pytest.mark.parametrize("status", TERMINAL)
def test_abort_with_stale_view_of_a_finished_run_is_not_allowed(datastore, editor, status):
    """The caller still holds the Run as queued; another actor finished it meanwhile."""
    run = RunFactory(datastore=datastore)
    stale = Run.objects.get(pk=run.pk)
    assert transition(run.pk, where=Q(status=RunStatus.QUEUED), to=status,
                      fields={"aborted_by_kind": ActorKind.SYSTEM})
    before = raw_row(run.pk)
    with pytest.raises(ActionNotAllowed):
        run_abort(run=stale, user=editor)
    assert raw_row(run.pk) == before


def test_viewer_cannot_abort(datastore, viewer, outsider):
    run = RunFactory(datastore=datastore)
    with pytest.raises(PermissionDenied):
        run_abort(run=run, user=viewer)
    with pytest.raises(NotFound):
        run_abort(run=run, user=outsider)
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


# -- transitions -------------------------------------------------------------------------------
@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("where", [Q(), Q(status__in=ACTIVE_STATUSES)], ids=["any", "active"])
def test_transition_never_overwrites_terminal_state(datastore, status, where):
    run = terminal_run(datastore, status)
    before = raw_row(run.pk)
    assert not transition(run.pk, where=where, to=RunStatus.FAILURE, log="Too late.")
    assert raw_row(run.pk) == before
    assert messages(run) == []


def test_transition_is_compare_and_set(datastore):
    run = RunFactory(datastore=datastore)
    queued = Q(status=RunStatus.QUEUED)
    assert transition(run.pk, where=queued, to=RunStatus.FAILURE, log="first")
    assert not transition(run.pk, where=queued, to=RunStatus.SUCCESS, log="second")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILURE
    assert messages(run) == ["first"]


@pytest.mark.parametrize("status", TERMINAL)
def test_finished_at_is_set_iff_terminal(datastore, status):
    run = RunFactory(datastore=datastore)
    assert run.finished_at is None
    transition(run.pk, where=Q(status=RunStatus.QUEUED), to=status,
               fields={"aborted_by_kind": ActorKind.SYSTEM})
    run.refresh_from_db()
    assert run.finished_at is not None
    # ...and the database refuses the inconsistent shapes.
    other = RunFactory(datastore=datastore)
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=other.pk).update(status=status, aborted_by_kind=ActorKind.SYSTEM)
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=other.pk).update(finished_at=timezone.now())


# -- logs --------------------------------------------------------------------------------------
def test_log_cap_writes_one_truncation_marker(owned, settings):
    settings.RUN_LOG_MAX_LINES = 3
    for i in range(6):
        owned.log(f"line {i}")  # lines past the cap are dropped, the worker is not fenced
    lines = list(RunLogEntry.objects.filter(run_id=owned.run_id).order_by("id"))
    assert [line.message for line in lines[:3]] == ["line 0", "line 1", "line 2"]
    assert len(lines) == 4
    assert lines[3].level == LogLevel.WARNING
    assert "truncated" in lines[3].message.lower()
    assert Run.objects.get(pk=owned.run_id).log_lines == 4
    # The Run stays writable for its owner after truncation.
    owned.update_run(progress_done=1)


def test_line_that_ends_the_run_is_written_past_the_cap(owned, settings):
    settings.RUN_LOG_MAX_LINES = 2
    for i in range(4):
        owned.log(f"line {i}")
    assert _finalise(owned, RunStatus.SUCCESS, "Finished.") == RunStatus.SUCCESS
    assert messages(owned.run)[-2:] == [
        "Log truncated: more than 2 lines; later lines were dropped.", "Finished."
    ]


def test_reaper_line_is_written_past_the_cap(owned, settings):
    settings.RUN_LOG_MAX_LINES = 1
    owned.log("line 0")
    owned.log("line 1")
    Run.objects.filter(pk=owned.run_id).update(heartbeat_at=timezone.now() - HOUR_AGO)
    assert reap()["lost"] == 1
    last = RunLogEntry.objects.filter(run_id=owned.run_id).last()
    assert "worker lost" in last.message and last.level == LogLevel.ERROR


def test_warning_past_the_cap_still_raises_the_indicator(owned, settings):
    settings.RUN_LOG_MAX_LINES = 1
    owned.log("info 1")
    owned.log("info 2")  # -> truncation marker
    Run.objects.filter(pk=owned.run_id).update(has_warnings=False)
    owned.log("dropped warning", level=LogLevel.WARNING)
    run = Run.objects.get(pk=owned.run_id)
    assert run.has_warnings
    assert "dropped warning" not in messages(run)


@pytest.mark.parametrize("level,warns", [(LogLevel.INFO, False), (LogLevel.WARNING, True),
                                         (LogLevel.ERROR, True)])
def test_has_warnings_follows_log_levels(owned, level, warns):
    owned.log("a line", level=level, container="orders")
    run = Run.objects.get(pk=owned.run_id)
    assert run.has_warnings is warns
    entry = RunLogEntry.objects.get(run=run)
    assert (entry.level, entry.container) == (level, "orders")


def test_log_ids_increase(owned):
    for i in range(5):
        owned.log(f"line {i}")
    ids = list(RunLogEntry.objects.filter(run_id=owned.run_id).values_list("id", flat=True))
    assert ids == sorted(ids) and len(set(ids)) == 5


# -- delete ------------------------------------------------------------------------------------
def test_delete_removes_run_units_logs_and_keeps_results(datastore, editor):
    container = ContainerFactory(datastore=datastore, name="orders")
    run = RunFactory(datastore=datastore, config={"containers": ["orders"]}, metrics={"n": 3})
    RunContainer.objects.create(run=run, name="orders", container=container,
                                status=RunStatus.SUCCESS)
    append_log(run.pk, "working")
    check = Check.objects.create(container=container, type="not_null", field_name="id")
    anomaly = Anomaly.objects.create(container=container, check_rule=check, run_id=run.pk,
                                     failed_count=2)
    transition(run.pk, where=Q(status=RunStatus.QUEUED), to=RunStatus.SUCCESS)

    run_delete(run=Run.objects.get(pk=run.pk), user=editor)

    assert not Run.objects.filter(pk=run.pk).exists()
    assert not RunContainer.objects.filter(run_id=run.pk).exists()
    assert not RunLogEntry.objects.filter(run_id=run.pk).exists()
    assert Container.objects.filter(pk=container.pk).exists()
    assert Check.objects.filter(pk=check.pk).exists()
    assert Anomaly.objects.get(pk=anomaly.pk).run_id == run.pk
    audit = RunDeletion.objects.get(run_id=run.pk)
    assert audit.deleted_by == editor
    assert audit.deleted_by_name == editor.username
    assert (audit.operation, audit.status) == ("scan", RunStatus.SUCCESS)
    assert audit.datastore_name == datastore.name
    assert audit.snapshot["config"] == {"containers": ["orders"]}
    assert audit.snapshot["metrics"] == {"n": 3}


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_delete_of_active_run_is_not_allowed(datastore, editor, status):
    run = RunFactory(datastore=datastore, status=status)
    with pytest.raises(ActionNotAllowed):
        run_delete(run=run, user=editor)
    assert Run.objects.filter(pk=run.pk).exists()
    assert not RunDeletion.objects.exists()


def test_delete_needs_editor(datastore, viewer, outsider):
    run = terminal_run(datastore, RunStatus.SUCCESS)
    with pytest.raises(PermissionDenied):
        run_delete(run=run, user=viewer)
    with pytest.raises(NotFound):
        run_delete(run=run, user=outsider)
    assert Run.objects.filter(pk=run.pk).exists()
    assert not RunDeletion.objects.exists()


def test_delete_of_run_with_stale_view_records_nothing(datastore, editor):
    """Deleted twice (two tabs): the second finds nothing and leaves no audit row."""
    run = terminal_run(datastore, RunStatus.FAILURE)
    run_delete(run=run, user=editor)
    with pytest.raises(NotFound):
        run_delete(run=run, user=editor)
    assert RunDeletion.objects.filter(run_id=run.pk).count() == 1


@pytest.mark.parametrize("link", ["resumed_from", "rerun_of"])
def test_delete_of_original_leaves_terminal_child_untouched(datastore, editor, link):
    original = terminal_run(datastore, RunStatus.ABORTED, operation="profile")
    child = terminal_run(datastore, RunStatus.SUCCESS, operation="profile",
                         **{link: original})
    before = raw_row(child.pk)
    run_delete(run=original, user=editor)
    assert not Run.objects.filter(pk=original.pk).exists()
    # No FK update of the (immutable) child: it still names the original's id.
    assert raw_row(child.pk) == before
    assert getattr(Run.objects.get(pk=child.pk), f"{link}_id") == original.pk


# -- reaper ------------------------------------------------------------------------------------
def test_reaper_fails_run_with_stale_heartbeat(datastore, settings):
    settings.RUN_HEARTBEAT_STALE_AFTER = 30
    run, token = running_run(datastore)
    now = timezone.now()
    for position, (name, unit_status) in enumerate(
        [("done", RunStatus.SUCCESS), ("busy", RunStatus.RUNNING), ("todo", RunStatus.QUEUED)]
    ):
        RunContainer.objects.create(run=run, name=name, status=unit_status, position=position,
                                    started_at=now if unit_status != RunStatus.QUEUED else None)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=now - HOUR_AGO)
    assert reap()["lost"] == 1
    run.refresh_from_db()
    assert run.status == RunStatus.FAILURE
    assert run.finished_at is not None
    assert "worker lost" in run.error.lower()
    entry = RunLogEntry.objects.filter(run=run).last()
    assert entry.level == LogLevel.ERROR
    assert "worker lost" in entry.message
    # The unit the worker was in ends with the Run; units never started stay queued.
    units = dict(RunContainer.objects.filter(run=run).values_list("name", "status"))
    assert units == {"done": RunStatus.SUCCESS, "busy": RunStatus.FAILURE,
                     "todo": RunStatus.QUEUED}
    assert RunContainer.objects.get(run=run, name="busy").finished_at is not None
    # The lost worker, should it wake up, is fenced out.
    ctx = RunContext(run, token, OperationConfig())
    with pytest.raises(RunFenced):
        ctx.log("I am back")
    assert reap()["lost"] == 0


def test_reaper_finalises_unacknowledged_abort(datastore, editor, settings):
    settings.RUN_ABORT_GRACE = 30
    run, _ = running_run(datastore)
    run_abort(run=run, user=editor)
    assert reap()["aborted"] == 0  # within the grace period the worker may still land it
    Run.objects.filter(pk=run.pk).update(abort_requested_at=timezone.now() - HOUR_AGO)
    assert reap()["aborted"] == 1
    run.refresh_from_db()
    assert run.status == RunStatus.ABORTED
    assert run.aborted_by_kind == ActorKind.USER
    assert run.aborted_by_user == editor
    assert run.finished_at is not None
    assert "did not acknowledge" in messages(run)[-1]


def test_reaper_requeues_unclaimed_queued_run_once(datastore, settings):
    settings.RUN_REQUEUE_AFTER = 60
    purge_queue()
    old = timezone.now() - timedelta(seconds=120)
    lost = RunFactory(datastore=datastore, enqueued_at=old, send_count=1)
    recent = RunFactory(datastore=datastore, enqueued_at=timezone.now(), send_count=1)
    assert reap()["requeued"] == 1
    lost.refresh_from_db()
    assert lost.enqueued_at > old and lost.send_count == 2
    assert lost.status == RunStatus.QUEUED
    assert broker_messages() == [("runs.execute_run", [lost.pk])]
    # Within the delay the reaper does not send it again.
    assert reap()["requeued"] == 0
    assert broker_messages() == [("runs.execute_run", [lost.pk])]
    assert Run.objects.get(pk=recent.pk).enqueued_at == recent.enqueued_at
    purge_queue()


def test_a_run_whose_message_was_never_sent_is_sent_at_once_oldest_first(datastore):
    """The broker was down at launch: the Run row is the outbox, sent by the next pass."""
    purge_queue()
    unsent = [RunFactory(datastore=datastore, enqueued_at=timezone.now(), send_count=0)
              for _ in range(3)]
    assert reap()["requeued"] == 3
    # (Redis lists hold the newest first: compared as a set.)
    assert sorted(broker_messages()) == [("runs.execute_run", [run.pk]) for run in unsent]
    assert set(Run.objects.values_list("send_count", flat=True)) == {1}
    assert reap()["requeued"] == 0
    purge_queue()


def test_re_sends_back_off_and_spare_messages_still_in_the_broker(datastore, settings):
    """Re-sent only as many as the broker is missing, oldest first; each Run's next re-send
    waits twice as long as its last."""
    settings.RUN_REQUEUE_AFTER = 60
    purge_queue()
    old = timezone.now() - timedelta(seconds=150)
    waiting = [RunFactory(datastore=datastore, enqueued_at=old, send_count=1) for _ in range(4)]
    send_execute(waiting[0].pk)  # two messages are still in the broker: two are missing
    send_execute(waiting[1].pk)
    assert reap()["requeued"] == 2
    messages = sorted(args[0] for _, args in broker_messages())
    assert messages == sorted([waiting[0].pk, waiting[1].pk] * 2)  # the oldest, not the newest
    resent = [waiting[0].pk, waiting[1].pk]
    purge_queue()
    # Sent twice now: the next re-send waits 2 x 60 s, not 60 s.
    Run.objects.filter(pk__in=resent).update(enqueued_at=timezone.now() - timedelta(seconds=90))
    Run.objects.exclude(pk__in=resent).update(enqueued_at=timezone.now())
    assert reap()["requeued"] == 0
    Run.objects.filter(pk__in=resent).update(enqueued_at=timezone.now() - timedelta(seconds=121))
    assert reap()["requeued"] == 2
    assert set(Run.objects.filter(pk__in=resent).values_list("send_count", flat=True)) == {3}
    purge_queue()


def test_reaper_leaves_fresh_runs_alone(datastore, editor, settings):
    settings.RUN_HEARTBEAT_STALE_AFTER = 30
    settings.RUN_ABORT_GRACE = 30
    settings.RUN_REQUEUE_AFTER = 60
    fresh, _ = running_run(datastore)
    aborting, _ = running_run(datastore)
    run_abort(run=aborting, user=editor)
    queued = RunFactory(datastore=datastore, enqueued_at=timezone.now(), send_count=1)
    finished = terminal_run(datastore, RunStatus.SUCCESS, heartbeat_at=timezone.now() - HOUR_AGO)
    before = {r.pk: raw_row(r.pk) for r in (fresh, aborting, queued, finished)}
    assert reap() == {"lost": 0, "aborted": 0, "requeued": 0, "timed_out": 0}
    assert {pk: raw_row(pk) for pk in before} == before


def test_reaper_never_touches_a_run_that_heartbeats_in_time(datastore, settings):
    """The lost-worker decision re-checks the heartbeat in its compare-and-set."""
    settings.RUN_HEARTBEAT_STALE_AFTER = 30
    run, _ = running_run(datastore)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=29))
    assert reap()["lost"] == 0
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


@pytest.mark.parametrize("skew_s", [-40, 40])
def test_host_clocks_do_not_matter_to_liveness(datastore, skew_s, monkeypatch):
    """Heartbeats are written, and staleness judged, with the database's clock: a worker or a
    reaper whose host clock is 40 s off neither fails a healthy Run nor spares a lost one."""
    skewed = timezone.now() + timedelta(seconds=skew_s)
    monkeypatch.setattr(timezone, "now", lambda: skewed)
    run, token = running_run(datastore)
    with RunContext(Run.objects.get(pk=run.pk), token, OperationConfig()).fenced():
        pass  # a heartbeat, written by the skewed host
    assert reap()["lost"] == 0
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
    Run.objects.filter(pk=run.pk).update(heartbeat_at=Now() - timedelta(seconds=31))
    assert reap()["lost"] == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.FAILURE

