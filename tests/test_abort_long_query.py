"""Abort in the middle of a source query that would run for minutes: a real worker lands the Run
on aborted within 2 s, because the watchdog cancels the statement in the database."""

import time

import psycopg
import pytest
from django.utils import timezone

from datastores.models import Check, Container, Field
from runs.models import ActorKind, Run, RunStatus
from runs.services import run_abort, run_launch
from tests.conftest import wait_for
from tests.profile_scan_support import demo_source_at, sync_catalogue

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]

# Counting to 10^10 one recursive step at a time: hours of work for SQLite.
SQLITE_SLOW = (
    "WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM counter "
    "WHERE n < 10000000000) SELECT n FROM counter"
)
POSTGRES_SLOW = "SELECT 1 AS n, pg_sleep(600) AS slept"
# 10^12 rows: hours even for DuckDB's vectorised engine.
DUCKDB_SLOW = "SELECT r AS n FROM range(1000000000000) AS numbers(r)"
SLOW = {"sqlite": SQLITE_SLOW, "postgresql": POSTGRES_SLOW, "duckdb": DUCKDB_SLOW}


def slow_statement_running(url: str) -> bool:
    database = url.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres") as admin:
        return bool(admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND query LIKE %s", (database, "%pg_sleep(600)%"),
        ).fetchone()[0])


@pytest.mark.worker
@pytest.mark.parametrize(
    ("backend", "operation"),
    [
        ("sqlite", "scan"),
        ("sqlite", "profile"),
        pytest.param("postgresql", "scan", marks=pytest.mark.postgres_source),
        pytest.param("postgresql", "profile", marks=pytest.mark.postgres_source),
        ("duckdb", "scan"),
        ("duckdb", "profile"),
    ],
)
def test_abort_cancels_a_query_that_would_run_for_minutes(
    backend, operation, tmp_path, datastore, editor, worker_process
):
    with demo_source_at(backend, tmp_path, rows=50) as source:
        datastore.source_url = source.url
        datastore.save()
        sync_catalogue(editor, datastore, include=["table"])
        slow = Container.objects.create(
            datastore=datastore, name="slow", kind="computed",
            query=SLOW[backend],
        )
        Field.objects.create(container=slow, name="n", type="integer", position=0)
        Check.objects.create(container=slow, type="not_null", field_name="n")
        # One pool process: a worker still stuck in the query could not run the next Run.
        worker_process(concurrency=1)

        run = run_launch(user=editor, datastore=datastore, operation=operation,
                         config={"containers": ["slow"]})
        wait_for(lambda: run.units.filter(name="slow", status=RunStatus.RUNNING).exists(),
                 timeout=60, message="the worker never started the slow container")
        if backend == "postgresql":
            wait_for(lambda: slow_statement_running(source.url), timeout=10,
                     message="the slow statement never reached PostgreSQL")

        requested = time.monotonic()
        run_abort(run=Run.objects.get(pk=run.pk), user=editor)
        wait_for(
            lambda: Run.objects.filter(pk=run.pk, status=RunStatus.ABORTED).exists(),
            timeout=30, interval=0.02, message="the Run never landed on aborted",
        )
        elapsed = time.monotonic() - requested

        run.refresh_from_db()
        assert elapsed < 2.0, f"abort took {elapsed:.2f} s"
        assert (run.finished_at - run.abort_requested_at).total_seconds() < 2.0
        assert run.aborted_by_kind == ActorKind.USER and run.aborted_by_user == editor
        assert run.units.get(name="slow").status == RunStatus.ABORTED
        assert run.finished_at <= timezone.now()
        if backend == "postgresql":
            wait_for(lambda: not slow_statement_running(source.url), timeout=5,
                     message="the slow statement is still running on PostgreSQL")

        # The worker's only process is free again: the statement really stopped.
        quick = run_launch(user=editor, datastore=datastore, operation=operation,
                           config={"containers": ["regions"]})
        wait_for(lambda: Run.objects.filter(pk=quick.pk, status=RunStatus.SUCCESS).exists(),
                 timeout=30, message="the worker did not take the next Run")
