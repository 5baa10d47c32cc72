"""Runs executed by a real ``celery worker`` process, on both backends.

Phase 1: SQLite + the filesystem broker (the embedded defaults); phase 2: PostgreSQL + Redis.
The same flows run in both phases (``both_backends``).
"""

import sqlite3
import time

import pytest
from django.db import connection

from datastores.models import Container, ContainerKind, Datastore, Field
from datastores.url_policy import UNIFORM_REFUSAL
from runs.models import ActorKind, LogLevel, Run, RunLogEntry, RunStatus
from runs.reaper import reap
from runs.services import run_abort, run_launch
from runs.tasks import execute_run
from tests.conftest import broker_messages, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.both_backends]

START = 60  # worker start-up and first claim: generous, the machine is shared
WIDE_TABLES = 2500


def use_source(datastore: Datastore, url: str) -> Datastore:
    datastore.source_url = url
    datastore.save()
    return datastore


def launch_sync(user, datastore, **config) -> Run:
    return run_launch(user=user, datastore=datastore, operation="sync", config=config)


def status(run: Run) -> str:
    return Run.objects.values_list("status", flat=True).get(pk=run.pk)


def log_of(run: Run) -> list[RunLogEntry]:
    return list(RunLogEntry.objects.filter(run=run).order_by("id"))


def raw_row(run_id: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM runs_run WHERE id = %s", [run_id])
        return cursor.fetchone()


def wide_source(path) -> str:
    """A SQLite source with many small tables, so a Sync runs for several seconds."""
    con = sqlite3.connect(path)
    # One transaction, no fsync: thousands of autocommitted DDL statements take many seconds.
    con.executescript("PRAGMA synchronous = OFF; BEGIN;" + "".join(
        f"CREATE TABLE t{i:05d} (id INTEGER PRIMARY KEY, name TEXT, amount REAL);"
        for i in range(WIDE_TABLES)
    ) + "COMMIT;")
    con.close()
    return f"sqlite:///{path}"


def source_columns(path) -> dict[str, tuple[str, list[str]]]:
    """name -> (kind, column names) read with sqlite3 itself, not through Assay."""
    with sqlite3.connect(path) as con:
        objects = con.execute(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        return {
            name: (kind, [row[1] for row in con.execute(f'PRAGMA table_info("{name}")')])
            for name, kind in objects
        }


def task_results(worker) -> list[str]:
    """Return values of finished execute_run tasks, from the worker's own log."""
    text = worker.log_path.read_text(errors="replace")
    return [line.rsplit(": ", 1)[1].strip("'") for line in text.splitlines()
            if "runs.execute_run[" in line and " succeeded in " in line]


# -- (a) a Sync end to end -------------------------------------------------------------------
def test_sync_of_demo_source_succeeds_with_catalogue_and_metrics(
    worker_process, editor, datastore, demo_source_url
):
    use_source(datastore, demo_source_url)
    run = launch_sync(editor, datastore)
    assert status(run) == RunStatus.QUEUED  # nobody consumes the queue yet
    worker_process()
    wait_for(lambda: status(run) in (RunStatus.SUCCESS, RunStatus.FAILURE), timeout=START,
             message="sync did not finish")
    run.refresh_from_db()
    lines = log_of(run)
    assert run.status == RunStatus.SUCCESS, [line.message for line in lines]

    expected = source_columns(demo_source_url.removeprefix("sqlite:///"))
    kinds = [kind for kind, _ in expected.values()]
    assert (kinds.count("table"), kinds.count("view")) == (14, 1)
    containers = {c.name: c for c in Container.objects.filter(datastore=datastore)}
    assert set(containers) == set(expected)
    for name, (kind, columns) in expected.items():
        assert containers[name].kind == (ContainerKind.VIEW if kind == "view" else "table")
        stored = list(Field.objects.filter(container=containers[name])
                      .order_by("position").values_list("name", flat=True))
        assert stored == columns, name
        assert containers[name].synced_at is not None
    total_fields = sum(len(columns) for _, columns in expected.values())

    assert run.metrics["containers_added"] == 15
    assert run.metrics["containers_updated"] == 0
    assert run.metrics["fields"] == total_fields
    assert run.metrics["fields_added"] == total_fields
    assert (run.progress_done, run.progress_total, run.progress_unit) == (15, 15, "Containers")
    assert run.created_at <= run.started_at <= run.finished_at
    assert run.worker_token is not None
    assert not run.has_warnings
    assert [line.message for line in lines] == [
        f"Launched by {editor.display_name} via Web.",
        f"Sync started on datastore {datastore.name}.",
        "Planned 15 containers.",
        "Finished.",
    ]
    assert {line.level for line in lines} == {LogLevel.INFO}


# -- (b) abort of a running Run ----------------------------------------------------------------
def test_abort_of_running_sync_lands_fast_and_keeps_partial_results(
    worker_process, editor, datastore, tmp_path
):
    use_source(datastore, wide_source(tmp_path / "wide.sqlite3"))
    worker = worker_process()
    run = launch_sync(editor, datastore)
    wait_for(lambda: Run.objects.get(pk=run.pk).progress_done >= 20, timeout=START,
             message="sync did not get going")

    requested = time.monotonic()
    flagged = run_abort(run=run, user=editor)
    assert flagged.status == RunStatus.RUNNING and flagged.is_aborting
    wait_for(lambda: status(run) != RunStatus.RUNNING, timeout=10, interval=0.02)
    latency = time.monotonic() - requested
    run.refresh_from_db()
    assert run.status == RunStatus.ABORTED
    assert latency < 2.0, f"abort took {latency:.2f} s"
    assert run.aborted_by_kind == ActorKind.USER and run.aborted_by_user == editor

    # Partial results stay, consistent with the frozen counters (each unit commits its
    # container together with the Run's progress).
    done = run.progress_done
    assert 20 <= done < WIDE_TABLES
    assert run.progress_total == WIDE_TABLES
    assert Container.objects.filter(datastore=datastore).count() == done
    assert run.metrics["containers_added"] == done
    messages = [line.message for line in log_of(run)]
    assert messages[-2:] == [f"Abort requested by {editor.display_name}.",
                             "Aborted; partial results are kept."]

    # Once the worker has returned from the task, nothing about the Run moves any more.
    before = raw_row(run.pk)
    wait_for(lambda: "aborted" in task_results(worker), timeout=10)
    assert raw_row(run.pk) == before
    assert Container.objects.filter(datastore=datastore).count() == done
    assert [line.message for line in log_of(run)] == messages
    print(f"abort latency: {latency:.3f} s after {done} containers")


# -- (c) the worker dies -----------------------------------------------------------------------
def test_killed_worker_is_reaped_as_failure(worker_process, editor, datastore, tmp_path,
                                            settings):
    settings.RUN_HEARTBEAT_STALE_AFTER = 3
    use_source(datastore, wide_source(tmp_path / "wide.sqlite3"))
    worker = worker_process()
    run = launch_sync(editor, datastore)
    wait_for(lambda: Run.objects.get(pk=run.pk).progress_done >= 10, timeout=START,
             message="sync did not get going")
    worker.kill()
    assert reap()["lost"] == 0  # the heartbeat is still fresh
    done = Run.objects.get(pk=run.pk).progress_done

    wait_for(lambda: reap()["lost"], timeout=15, interval=0.2, message="run was never reaped")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILURE
    assert run.worker_token is None
    assert "worker lost" in run.error.lower()
    last = log_of(run)[-1]
    assert "worker lost" in last.message and last.level == LogLevel.ERROR
    assert run.progress_done == done  # progress frozen where the worker died
    assert Container.objects.filter(datastore=datastore).count() == done


# -- (d) duplicate delivery --------------------------------------------------------------------
def test_message_delivered_twice_executes_once(worker_process, editor, datastore,
                                               demo_source_url):
    use_source(datastore, demo_source_url)
    run = launch_sync(editor, datastore)
    execute_run.delay(run.pk)
    assert broker_messages() == [("runs.execute_run", [run.pk])] * 2
    worker = worker_process()
    wait_for(lambda: len(task_results(worker)) == 2, timeout=START,
             message="both deliveries were not processed")
    assert sorted(task_results(worker)) == ["not-claimed", "success"]
    messages = [line.message for line in log_of(run)]
    assert sum("started on datastore" in m for m in messages) == 1
    assert messages.count("Finished.") == 1
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCESS
    assert run.metrics["containers_added"] == 15
    assert Container.objects.filter(datastore=datastore).count() == 15


# -- (e) datastores that cannot be used --------------------------------------------------------
# The Run says the same whatever the cause (no oracle); the worker's log says which.
BAD_URLS = {
    "postgresql://nobody:s3cret-pw@127.0.0.1:1/x": "Connection refused",
    "notaurl": "URL refused: Not a usable SQLAlchemy URL",
}


def test_unusable_datastore_urls_fail_with_one_clear_line(worker_process, editor, datastore):
    runs = {}
    for i, url in enumerate(BAD_URLS):
        store = Datastore.objects.create(name=f"bad-{i}", source_url=url)
        store.teams.add(*datastore.teams.all())
        runs[url] = launch_sync(editor, store)
    worker = worker_process()
    for url, detail in BAD_URLS.items():
        run = runs[url]
        wait_for(lambda run=run: status(run) != RunStatus.QUEUED and
                 status(run) != RunStatus.RUNNING, timeout=START)
        run.refresh_from_db()
        assert run.status == RunStatus.FAILURE
        last = log_of(run)[-1]
        assert last.level == LogLevel.ERROR
        assert last.message == f"Run failed: {UNIFORM_REFUSAL}"
        assert run.error == UNIFORM_REFUSAL
        worker_log = worker.log_path.read_text()
        assert detail in worker_log and "s3cret-pw" not in worker_log
        for text in (last.message, run.error):
            assert "\n" not in text
            assert "Traceback" not in text and "File \"" not in text
            assert "s3cret-pw" not in text
        assert run.has_warnings
        assert not Container.objects.filter(datastore=run.datastore).exists()
