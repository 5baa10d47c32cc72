"""Resume and Rerun create a new Run; the original stays byte-for-byte as it was."""

import pytest
from django.db import connection
from django.utils import timezone

from runs.errors import ActionNotAllowed, NotFound, PermissionDenied
from runs.models import ActorKind, Operation, Run, RunContainer, RunLogEntry, RunStatus
from runs.services import run_rerun, run_resume
from tests.factories import ContainerFactory, DatastoreFactory, RunFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

# name -> unit status in the original Run; only "success" counts as finished.
UNITS = {
    "customers": RunStatus.SUCCESS,
    "orders": RunStatus.FAILURE,
    "products": RunStatus.ABORTED,
    "reviews": RunStatus.QUEUED,
    "stores": RunStatus.SUCCESS,
    "shipments": RunStatus.RUNNING,
}
UNFINISHED = ["orders", "products", "reviews", "shipments"]


def rows(table: str, where: str, value) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE {where} = %s ORDER BY id", [value])
        return cursor.fetchall()


def snapshot(run: Run) -> tuple:
    return (rows("runs_run", "id", run.pk), rows("runs_runcontainer", "run_id", run.pk),
            rows("runs_runlogentry", "run_id", run.pk))


# Configs as launch stores them: validated, every default filled in.
CONFIGS = {
    "profile": {"containers": None, "record_limit": 1000, "inference_level": 2,
                "infer_as_draft": True},
    "scan": {"containers": None, "incremental": False, "record_limit": 1000,
             "rollup_threshold": 10, "source_record_limit": 10, "auto_resolve": True},
    "promote": {"source_container": "orders", "destination_container": "orders",
                "checks": None, "as_draft": True},
}


def ended_run(datastore, *, operation="profile", status=RunStatus.ABORTED, units=UNITS,
              **fields) -> Run:
    """A finished Run built directly in the database, with its per-unit rows."""
    run = RunFactory(
        datastore=datastore, operation=operation, status=RunStatus.RUNNING,
        config=CONFIGS.get(operation, {}), started_at=timezone.now(),
        progress_total=len(units) if units is not None else None,
        progress_done=sum(s == RunStatus.SUCCESS for s in (units or {}).values()),
        progress_unit="Tables", metrics={"tables_profiled": 2}, **fields,
    )
    for position, (name, unit_status) in enumerate((units or {}).items()):
        container = ContainerFactory(datastore=datastore, name=name)
        RunContainer.objects.create(run=run, name=name, container=container, status=unit_status,
                                    position=position, metrics={"records": position})
    RunLogEntry.objects.create(run=run, message="Profile started.")
    Run.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(),
        aborted_by_kind=ActorKind.SYSTEM if status == RunStatus.ABORTED else "",
    )
    return Run.objects.get(pk=run.pk)


@pytest.mark.parametrize("status", [RunStatus.ABORTED, RunStatus.FAILURE])
@pytest.mark.parametrize("operation", ["profile", "scan"])
def test_resume_plans_exactly_the_unfinished_units(
    datastore, editor, status, operation, django_capture_on_commit_callbacks
):
    original = ended_run(datastore, operation=operation, status=status)
    before = snapshot(original)
    with django_capture_on_commit_callbacks() as callbacks:
        new = run_resume(run=original, user=editor)

    assert new.pk != original.pk
    assert new.resumed_from_id == original.pk and new.rerun_of_id is None
    assert new.status == RunStatus.QUEUED
    assert new.operation == operation
    assert new.config == original.config
    assert new.triggered_by_user == editor
    assert (new.progress_total, new.progress_done) == (len(UNFINISHED), 0)
    units = list(new.units.order_by("position"))
    assert [u.name for u in units] == UNFINISHED
    assert [u.position for u in units] == list(range(len(UNFINISHED)))
    assert {u.status for u in units} == {RunStatus.QUEUED}
    assert all(u.started_at is None and u.metrics == {} for u in units)
    old_units = {u.name: u.container_id for u in original.units.all()}
    assert all(u.container_id == old_units[u.name] for u in units)
    assert len(callbacks) == 1  # enqueued once the transaction commits
    assert snapshot(original) == before


def test_resume_of_promote_keeps_destination(datastore, editor):
    destination = DatastoreFactory(name="target")
    destination.teams.add(*datastore.teams.all())
    ContainerFactory(datastore=destination, name="orders")
    original = ended_run(datastore, operation="promote", destination_datastore=destination)
    before = snapshot(original)
    new = run_resume(run=original, user=editor)
    assert new.destination_datastore == destination
    assert [u.name for u in new.units.order_by("position")] == UNFINISHED
    assert snapshot(original) == before


def test_resume_of_promote_needs_editor_on_destination(datastore, editor):
    destination = DatastoreFactory(name="elsewhere")  # editor cannot see it
    original = ended_run(datastore, operation="promote", destination_datastore=destination)
    with pytest.raises(NotFound):
        run_resume(run=original, user=editor)
    assert Run.objects.count() == 1


def test_resume_of_run_that_never_planned_plans_afresh(datastore, editor):
    original = ended_run(datastore, units=None)
    new = run_resume(run=original, user=editor)
    assert new.resumed_from_id == original.pk
    assert new.progress_total is None
    assert not new.units.exists()


def test_resume_of_a_resumed_run_chains(datastore, editor):
    first = ended_run(datastore)
    second = run_resume(run=first, user=editor)
    RunContainer.objects.filter(run=second, name="orders").update(status=RunStatus.SUCCESS)
    Run.objects.filter(pk=second.pk).update(
        status=RunStatus.ABORTED, finished_at=timezone.now(), aborted_by_kind=ActorKind.SYSTEM
    )
    third = run_resume(run=Run.objects.get(pk=second.pk), user=editor)
    assert third.resumed_from_id == second.pk
    assert [u.name for u in third.units.order_by("position")] == UNFINISHED[1:]


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.ABORTED])
def test_rerun_creates_fresh_run_with_same_config(datastore, editor, status):
    original = ended_run(datastore, status=status)
    before = snapshot(original)
    new = run_rerun(run=original, user=editor)
    assert new.rerun_of_id == original.pk and new.resumed_from_id is None
    assert new.status == RunStatus.QUEUED
    assert new.config == original.config
    assert new.operation == original.operation
    assert new.progress_total is None and new.progress_done == 0
    assert not new.units.exists()  # every unit from scratch, planned by the worker
    assert new.metrics == {}
    assert snapshot(original) == before


@pytest.mark.parametrize("operation", ["sync", "export", "materialize", "external_scan"])
@pytest.mark.parametrize("status", [RunStatus.ABORTED, RunStatus.FAILURE])
def test_resume_refused_for_operations_without_units(datastore, editor, operation, status):
    original = ended_run(datastore, operation=operation, status=status, units=None)
    with pytest.raises(ActionNotAllowed) as exc:
        run_resume(run=original, user=editor)
    assert exc.value.status_code == 409
    assert Run.objects.count() == 1


@pytest.mark.parametrize("status", [RunStatus.SUCCESS, RunStatus.QUEUED, RunStatus.RUNNING])
def test_resume_refused_unless_failure_or_aborted(datastore, editor, status):
    if status == RunStatus.SUCCESS:
        original = ended_run(datastore, status=status)
    else:
        original = RunFactory(datastore=datastore, operation="profile", status=status)
    with pytest.raises(ActionNotAllowed):
        run_resume(run=original, user=editor)
    assert Run.objects.count() == 1


def test_rerun_refused_for_external_scan_and_active_runs(datastore, editor):
    external = ended_run(datastore, operation="external_scan", units=None)
    with pytest.raises(ActionNotAllowed) as exc:
        run_rerun(run=external, user=editor)
    assert exc.value.status_code == 409
    active = RunFactory(datastore=datastore, operation="scan", status=RunStatus.RUNNING)
    with pytest.raises(ActionNotAllowed):
        run_rerun(run=active, user=editor)
    assert Run.objects.count() == 2


@pytest.mark.parametrize("action", [run_resume, run_rerun])
def test_viewer_is_denied_and_outsider_sees_nothing(datastore, viewer, outsider, action):
    original = ended_run(datastore)
    with pytest.raises(PermissionDenied) as denied:
        action(run=original, user=viewer)
    assert denied.value.status_code == 403
    with pytest.raises(NotFound) as hidden:
        action(run=original, user=outsider)
    assert hidden.value.status_code == 404
    assert Run.objects.count() == 1


@pytest.mark.parametrize("action", [run_resume, run_rerun])
def test_admin_may_resume_and_rerun_anywhere(datastore, admin, action):
    original = ended_run(datastore)
    new = action(run=original, user=admin)
    assert new.triggered_by_user == admin
    assert Operation(new.operation) == Operation.PROFILE
