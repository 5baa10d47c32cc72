"""Fair sharing and scale-out with real ``celery worker`` processes on PostgreSQL and Redis."""

import re
import threading

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from datastores.models import Datastore
from runs.dispatch import send_execute
from runs.models import ActorKind, Run, RunLogEntry, RunStatus
from runs.services import run_launch
from tests.conftest import WorkerProcess, purge_queue, wait_for
from tests.test_browser import SLICES, slow_scan_source

pytestmark = [pytest.mark.worker, pytest.mark.postgres]

BURST = 300
LIMIT = 2


class RunningPeak(threading.Thread):
    """Samples how many Runs of a datastore hold a worker, and keeps the highest count."""

    def __init__(self, datastore_id: int):
        super().__init__(daemon=True)
        self.datastore_id = datastore_id
        self.peak = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(0.02):
                running = Run.objects.filter(
                    datastore_id=self.datastore_id,
                    status=RunStatus.RUNNING,
                    worker_token__isnull=False,
                ).count()
                self.peak = max(self.peak, running)
                self.samples += 1
        finally:
            connection.close()


def test_a_burst_on_one_datastore_does_not_hold_up_another(
    transactional_db, tmp_path, datastore, admin, demo_source_url
):
    busy = datastore
    slow_scan_source(busy, tmp_path)  # each Scan of one slice reads 300,000 rows
    busy.run_limit = LIMIT
    busy.save()
    quiet = type(busy).objects.create(name="quiet", source_url=demo_source_url)

    purge_queue()
    peak = RunningPeak(busy.pk)
    peak.start()
    workers = []
    try:
        for index in range(3):
            folder = tmp_path / f"worker-{index}"
            folder.mkdir()
            workers.append(WorkerProcess(folder).start(concurrency=1))
        burst = [
            run_launch(user=admin, datastore=busy, operation="scan",
                       config={"containers": [f"slice_{i % SLICES:02d}"]})
            for i in range(BURST)
        ]  # fmt: skip
        late = run_launch(user=admin, datastore=quiet, operation="sync", config={})
        late = wait_for(
            lambda: Run.objects.filter(pk=late.pk, status=RunStatus.SUCCESS).first(),
            timeout=180,
            message="the quiet datastore's Sync did not finish",
        )
        # A unit of the busy datastore's work: one of its Scans, claim to finish.
        first_done = wait_for(
            lambda: Run.objects.filter(datastore=busy, status=RunStatus.SUCCESS)
            .order_by("finished_at")
            .first(),
            timeout=180,
            message="no Scan of the busy datastore finished",
        )
        unit = first_done.finished_at - first_done.started_at
        # Queued behind 300 Runs of the busy datastore, it starts within one unit of its work.
        assert late.started_at - late.created_at <= unit, (late.started_at, late.created_at, unit)

        # Now every waiting Run gets a message at once: three workers race to claim them.
        waiting = list(
            Run.objects.filter(datastore=busy, status=RunStatus.QUEUED).values_list(
                "pk", flat=True
            )
        )
        for run_id in waiting:
            send_execute(run_id)
        finished_before = Run.objects.filter(datastore=busy, status=RunStatus.SUCCESS).count()
        wait_for(
            lambda: Run.objects.filter(datastore=busy, status=RunStatus.SUCCESS).count()
            >= finished_before + 6,
            timeout=240,
            message="the busy datastore's Runs stopped",
        )
    finally:
        peak.done.set()
        peak.join(timeout=5)
        # The rest of the burst is not needed: end it before stopping the workers.
        Run.objects.filter(datastore=busy, status=RunStatus.QUEUED).update(
            status=RunStatus.ABORTED, finished_at=timezone.now(),
            aborted_by_kind=ActorKind.SYSTEM,
        )  # fmt: skip
        for worker in workers:
            worker.stop()

    assert peak.samples > 100
    assert peak.peak == LIMIT  # reached, never exceeded
    started = list(
        Run.objects.filter(datastore=busy, started_at__isnull=False)
        .order_by("started_at", "pk")
        .values_list("pk", flat=True)
    )
    assert len(started) >= 8
    # First come, first served, even with every message delivered at once: the Runs that
    # started are the head of the line (two admitted together may start in either order).
    line = [run.pk for run in burst]
    assert set(line[: len(started) - LIMIT]) <= set(started) <= set(line[: len(started) + LIMIT])
    assert started[0] in line[:LIMIT]
    statuses = set(Run.objects.filter(pk__in=started).values_list("status", flat=True))
    assert statuses <= {RunStatus.SUCCESS, RunStatus.RUNNING}, statuses


def test_two_workers_drain_a_backlog_every_run_once(
    transactional_db, tmp_path, admin, demo_source_url
):
    """The scale-out path: two worker processes (concurrency 1 each, as bench/scaleout.py
    runs them) race for 40 Syncs spread over 8 datastores. Two Syncs of one datastore never
    run at once, so claims are turned away and the next in line dispatched all along. Every
    Run ends Success, started exactly once, and both workers took a share."""
    datastores = [Datastore.objects.create(name=f"store-{i}", source_url=demo_source_url)
                  for i in range(8)]
    purge_queue()
    workers = []
    try:
        for index in range(2):
            folder = tmp_path / f"worker-{index}"
            folder.mkdir()
            workers.append(WorkerProcess(folder).start(concurrency=1, queues="celery"))
        runs = [run_launch(user=admin, datastore=datastores[i % 8], operation="sync", config={})
                for i in range(40)]
        ids = [run.pk for run in runs]
        wait_for(
            lambda: not Run.objects.filter(
                pk__in=ids, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).exists(),
            timeout=180, interval=0.2, message="the backlog did not drain",
        )
    finally:
        for worker in workers:
            worker.stop()

    statuses = dict(Run.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {pk: RunStatus.SUCCESS for pk in ids}
    started = dict(
        RunLogEntry.objects.filter(run_id__in=ids, message__contains=" started on datastore ")
        .values_list("run_id").annotate(n=Count("id"))
    )
    assert started == {pk: 1 for pk in ids}
    # Each worker's log names the Runs it executed to the end: 40 in all, both took some.
    executed = [len(re.findall(r"execute_run\[[^]]+\] succeeded in [^:]+: 'success'",
                               worker.log_path.read_text())) for worker in workers]
    assert sum(executed) == 40, executed
    assert min(executed) > 0, executed
