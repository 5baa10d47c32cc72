"""The database itself refuses to change a terminal Run (SQLite and PostgreSQL triggers).

Raw SQL on purpose: the point is that no code path, ORM or not, can mutate the audit record.
"""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from runs.models import ActorKind, Run, RunContainer, RunLogEntry, RunStatus
from tests.factories import ContainerFactory, RunFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

TERMINAL = [RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.ABORTED]
ACTIVE = [RunStatus.QUEUED, RunStatus.RUNNING]


def make_run(status: str) -> Run:
    terminal = status in TERMINAL
    return RunFactory(
        status=status,
        finished_at=timezone.now() if terminal else None,
        aborted_by_kind=ActorKind.SYSTEM if status == RunStatus.ABORTED else "",
        metrics={"records": 3},
    )


def raw_row(run_id: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM runs_run WHERE id = %s", [run_id])
        return cursor.fetchone()


def execute(sql: str, params: list) -> int:
    """Run one statement in its own savepoint, so a rejected one leaves the test usable."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def insert_log(run_id: int) -> int:
    return execute(
        "INSERT INTO runs_runlogentry (run_id, container, level, message, created_at) "
        "VALUES (%s, '', 'info', 'late line', %s)",
        [run_id, timezone.now()],
    )


UPDATES = [
    ("UPDATE runs_run SET error = 'rewritten' WHERE id = %s", []),
    ("UPDATE runs_run SET metrics = '{}' WHERE id = %s", []),
    ("UPDATE runs_run SET progress_done = progress_done + 1 WHERE id = %s", []),
    # Even a no-op UPDATE is refused: the row must not be touched at all.
    ("UPDATE runs_run SET status = status WHERE id = %s", []),
]


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("sql", [sql for sql, _ in UPDATES])
def test_update_of_terminal_run_is_rejected(status, sql):
    run = make_run(status)
    before = raw_row(run.pk)
    with pytest.raises(IntegrityError, match="terminal"):
        execute(sql, [run.pk])
    assert raw_row(run.pk) == before


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("target", ["queued", "running", "success"])
def test_terminal_run_cannot_be_reopened_or_relabelled(status, target):
    run = make_run(status)
    before = raw_row(run.pk)
    with pytest.raises(IntegrityError):
        execute("UPDATE runs_run SET status = %s, finished_at = NULL WHERE id = %s",
                [target, run.pk])
    assert raw_row(run.pk) == before


@pytest.mark.parametrize("status", TERMINAL)
def test_log_insert_for_terminal_run_is_rejected(status):
    run = make_run(status)
    with pytest.raises(IntegrityError, match="terminal"):
        insert_log(run.pk)
    assert not RunLogEntry.objects.filter(run=run).exists()


@pytest.mark.parametrize("status", TERMINAL)
def test_orm_update_of_terminal_run_is_rejected_too(status):
    run = make_run(status)
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=run.pk).update(error="rewritten")
    assert Run.objects.get(pk=run.pk).error == ""


@pytest.mark.parametrize("status", ACTIVE)
def test_same_statements_succeed_on_active_run(status):
    run = make_run(status)
    for sql, _ in UPDATES:
        assert execute(sql, [run.pk]) == 1
    assert insert_log(run.pk) == 1
    run.refresh_from_db()
    assert run.error == "rewritten"
    assert run.progress_done == 1
    assert RunLogEntry.objects.get(run=run).message == "late line"


@pytest.mark.parametrize("status", ACTIVE)
def test_active_run_can_be_finalised_once_then_not_again(status):
    run = make_run(status)
    assert execute(
        "UPDATE runs_run SET status = 'failure', finished_at = %s WHERE id = %s",
        [timezone.now(), run.pk],
    ) == 1
    with pytest.raises(IntegrityError):
        execute("UPDATE runs_run SET status = 'success' WHERE id = %s", [run.pk])
    assert Run.objects.get(pk=run.pk).status == RunStatus.FAILURE


@pytest.mark.parametrize("status", TERMINAL)
def test_delete_of_terminal_run_works(status):
    run = make_run(status)
    assert execute("DELETE FROM runs_run WHERE id = %s", [run.pk]) == 1
    assert not Run.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize("status", TERMINAL)
def test_delete_through_orm_cascades_logs_of_terminal_run(status):
    run = make_run(RunStatus.RUNNING)
    execute("INSERT INTO runs_runlogentry (run_id, container, level, message, created_at) "
            "VALUES (%s, '', 'info', 'line', %s)", [run.pk, timezone.now()])
    Run.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(),
        aborted_by_kind=ActorKind.SYSTEM if status == RunStatus.ABORTED else "",
    )
    Run.objects.filter(pk=run.pk).delete()
    assert not RunLogEntry.objects.filter(run_id=run.pk).exists()


# -- what a finished Run recorded: its log lines and per-container rows --------------------------
def finished_with_rows(status: str) -> Run:
    """A Run that logged a line and recorded a unit while running, then ended."""
    run = make_run(RunStatus.RUNNING)
    insert_log(run.pk)
    RunContainer.objects.create(run=run, name="orders", status=RunStatus.SUCCESS,
                                metrics={"records": 3}, container=ContainerFactory())
    Run.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(),
        aborted_by_kind=ActorKind.SYSTEM if status == RunStatus.ABORTED else "",
    )
    return run


def rows_of(run: Run) -> tuple[list, list]:
    logs = list(RunLogEntry.objects.filter(run_id=run.pk).values_list("id", "level", "message"))
    units = list(RunContainer.objects.filter(run_id=run.pk).values_list(
        "id", "name", "status", "metrics", "error", "position"))
    return logs, units


CHILD_WRITES = [
    "UPDATE runs_runlogentry SET message = 'rewritten' WHERE run_id = %s",
    "UPDATE runs_runlogentry SET level = 'info' WHERE run_id = %s",
    "DELETE FROM runs_runlogentry WHERE run_id = %s",
    "UPDATE runs_runcontainer SET status = 'failure' WHERE run_id = %s",
    "UPDATE runs_runcontainer SET metrics = '{}' WHERE run_id = %s",
    "UPDATE runs_runcontainer SET error = 'x', container_id = NULL WHERE run_id = %s",
    "DELETE FROM runs_runcontainer WHERE run_id = %s",
]


@pytest.mark.parametrize("status", TERMINAL)
@pytest.mark.parametrize("sql", CHILD_WRITES)
def test_log_lines_and_units_of_terminal_run_are_frozen(status, sql):
    run = finished_with_rows(status)
    before = rows_of(run)
    assert before[0] and before[1]
    with pytest.raises(IntegrityError, match="terminal"):
        execute(sql, [run.pk])
    assert rows_of(run) == before


@pytest.mark.parametrize("sql", CHILD_WRITES)
def test_same_child_writes_succeed_while_the_run_is_active(sql):
    run = make_run(RunStatus.RUNNING)
    insert_log(run.pk)
    RunContainer.objects.create(run=run, name="orders", status=RunStatus.SUCCESS)
    assert execute(sql, [run.pk]) == 1


@pytest.mark.parametrize("status", TERMINAL)
def test_unit_cannot_be_added_to_terminal_run(status):
    run = finished_with_rows(status)
    with pytest.raises(IntegrityError, match="terminal"):
        execute("INSERT INTO runs_runcontainer (run_id, name, status, metrics, error, position) "
                "VALUES (%s, 'late', 'success', '{}', '', 9)", [run.pk])
    assert RunContainer.objects.filter(run_id=run.pk).count() == 1


@pytest.mark.parametrize("status", TERMINAL)
def test_deleting_a_container_unlinks_the_unit_of_a_terminal_run(status):
    """The only change allowed: the link to a deleted container turns NULL, the name stays."""
    run = finished_with_rows(status)
    unit = RunContainer.objects.get(run_id=run.pk)
    unit.container.delete()
    unit.refresh_from_db()
    assert (unit.container_id, unit.name, unit.status) == (None, "orders", RunStatus.SUCCESS)


@pytest.mark.parametrize("status", TERMINAL)
def test_terminal_run_row_cannot_be_inserted(status):
    """Deleting a failed Run and inserting it again as a success is refused."""
    run = make_run(RunStatus.FAILURE)
    row = Run.objects.filter(pk=run.pk).values(
        "id", "operation", "datastore_id", "triggered_by_kind", "triggered_via",
        "created_at", "finished_at").get()
    execute("DELETE FROM runs_run WHERE id = %s", [run.pk])
    with pytest.raises(IntegrityError, match="terminal"):
        execute(
            "INSERT INTO runs_run (id, operation, status, datastore_id, triggered_by_kind, "
            "triggered_via, created_at, finished_at, config, metrics, progress_done, "
            "progress_unit, has_warnings, log_lines, error, aborted_by_kind) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, '{}', '{}', 0, '', %s, 0, '', %s)",
            [row["id"], row["operation"], status, row["datastore_id"],
             row["triggered_by_kind"], row["triggered_via"], row["created_at"],
             row["finished_at"], False, "system" if status == RunStatus.ABORTED else ""],
        )
    assert not Run.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize("status", TERMINAL)
def test_deleting_a_terminal_run_takes_its_rows_with_it(status):
    run = finished_with_rows(status)
    execute("DELETE FROM runs_run WHERE id = %s", [run.pk])
    assert rows_of(run) == ([], [])


def test_deleting_a_datastore_keeps_its_finished_runs_and_their_rows():
    from accounts.models import Role
    from datastores.services import datastore_delete
    from tests.factories import UserFactory

    run = finished_with_rows(RunStatus.SUCCESS)
    before = rows_of(run)
    datastore_delete(user=UserFactory(role=Role.ADMIN), datastore=run.datastore)
    assert Run.objects.filter(pk=run.pk, status=RunStatus.SUCCESS).exists()
    assert rows_of(run) == before and before != ([], [])
