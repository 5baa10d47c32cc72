"""The database itself refuses to change a terminal Run (SQLite and PostgreSQL triggers).

Raw SQL on purpose: the point is that no code path, ORM or not, can mutate the audit record.
"""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from runs.models import ActorKind, Run, RunLogEntry, RunStatus
from tests.factories import RunFactory

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
