"""Fault injection against a private PostgreSQL + Redis deployment (``tests/fault_stack.py``):
real web, worker, housekeeping and beat processes started from the Procfile. Each trial applies
one fault and asserts the end state of every Run involved and the time it took to get there.

The short form runs in the PostgreSQL phase of ./scripts/test; ``make faults`` runs it with
``FAULTS_TRIALS`` repetitions and writes the measured times to ``var/faults-<xdist worker>.json``.
"""

import json
import os
import re
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

import pytest

from tests.fault_stack import TIMINGS, Deployment, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

TRIALS = int(os.environ.get("FAULTS_TRIALS", "1"))
# Runs queued at once in the backlog trial: 300 keeps the short form under a minute on a
# shared 2-core machine; ``make faults`` queues 1,000.
BACKLOG = int(os.environ.get("FAULTS_BACKLOG", "300"))
STALE = float(TIMINGS["RUN_HEARTBEAT_STALE_AFTER"])
REAPER = float(TIMINGS["RUN_REAPER_INTERVAL"])
# The promise: a frozen or dead worker's Run ends within 3 x heartbeat interval + the stale
# threshold + one reaper interval (slack for process start-up on a shared 2-core machine).
DEAD_WORKER_BOUND = STALE + 3 * float(TIMINGS["RUN_HEARTBEAT_INTERVAL"]) + REAPER + 2
MEASURED: dict[str, list[float]] = {}


def record(name: str, seconds: float) -> None:
    MEASURED.setdefault(name, []).append(round(seconds, 2))


@pytest.fixture(scope="module")
def deployment():
    # Not under pytest's temporary folder: that one is private to root, and the cluster's
    # processes run as the postgres system user.
    root = Path(tempfile.mkdtemp(prefix="assay-faults-"))
    os.chmod(root, 0o755)
    # One deployment per pytest-xdist worker, each on its own ports.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    offset = int(worker[2:]) if worker.startswith("gw") else 0
    stack = Deployment(
        root, web_port=int(os.environ.get("FAULTS_WEB_PORT", "18490")) + offset,
        pg_port=int(os.environ.get("FAULTS_PG_PORT", "55490")) + offset,
        redis_port=int(os.environ.get("FAULTS_REDIS_PORT", "6390")) + offset,
    )
    try:
        yield stack.up()
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
        out = Path(__file__).resolve().parent.parent / "var" / f"faults-{worker}.json"
        out.parent.mkdir(exist_ok=True)
        summary = {k: {"trials": len(v), "max_s": max(v), "median_s": statistics.median(v)}
                   for k, v in MEASURED.items()}
        out.write_text(json.dumps(summary, indent=2))


def running(stack: Deployment, run_id: int, timeout: float = 30) -> None:
    stack.wait_for_status(run_id, {"running"}, timeout=timeout)
    wait_until(lambda: (stack.run(run_id)["done"] or 0) >= 1, timeout=timeout,
               what="first unit done")


def restore_worker(stack: Deployment) -> None:
    if stack.procs["worker"].poll() is not None:
        stack.start("worker")
        wait_until(lambda: stack.log("worker").count("ready.") >= 1, timeout=60, what="worker")


@pytest.mark.parametrize("trial", range(TRIALS))
def test_kill_9_of_the_only_worker_fails_its_run_within_the_bound(deployment, trial):
    """The only worker is killed with its pool: housekeeping (its own process) still reaps."""
    stack = deployment
    run_id = stack.launch("profile")
    running(stack, run_id)
    stack.kill("worker")
    took = stack.wait_for_status(run_id, {"failure"}, timeout=60)
    run = stack.run(run_id)
    assert run["error"] == "Worker lost: no heartbeat"
    assert took <= DEAD_WORKER_BOUND, took
    record("kill -9 of the only worker: Run ends Failure (s)", took)
    ready_before = stack.log("worker").count("ready.")
    stack.start("worker")
    wait_until(lambda: stack.log("worker").count("ready.") > ready_before, timeout=60,
               what="worker back")


@pytest.mark.parametrize("pause", [5, 20])
def test_a_restart_of_assays_database_loses_no_run(deployment, pause):
    """PostgreSQL stops for ``pause`` s while Runs execute: the workers wait for it and every
    Run ends as it would have (Success, executed once)."""
    stack = deployment
    runs = [stack.launch("profile") for _ in range(2)]
    running(stack, runs[0])
    stack.cluster.stop()
    time.sleep(pause)
    stack.cluster.start()
    restarted = time.monotonic()
    for run_id in runs:
        stack.wait_for_status(run_id, {"success", "failure", "aborted"}, timeout=120)
    record(f"{pause} s database restart: last in-flight Run ends (s after restart)",
           time.monotonic() - restarted)
    for run_id in runs:
        assert stack.run(run_id)["status"] == "success", (run_id, stack.run(run_id))
        assert stack.executions(run_id) == 1


def test_broker_outage_launch_is_201_and_delivered_once_it_returns(deployment):
    """Redis goes away with Runs queued; a launch during the outage answers 201 (the Run row is
    the outbox). When Redis is back every Run executes exactly once."""
    stack = deployment
    stack.redis.stop()
    started = time.monotonic()
    status, body = stack.api("POST", "/runs", {"operation": "sync",
                                               "datastore": stack.datastore_id, "config": {}})
    answered = time.monotonic() - started
    assert status == 201, body
    outage_run = body["id"]
    assert answered < 10, answered
    record("launch while the broker is down: answer (s)", answered)
    assert stack.run(outage_run)["send_count"] == 0  # in the outbox
    time.sleep(2)
    stack.redis.start()
    back = time.monotonic()
    stack.wait_for_status(outage_run, {"success"}, timeout=90)
    record("broker back: outbox Run ends Success (s)", time.monotonic() - back)
    assert stack.executions(outage_run) == 1


def test_a_frozen_worker_inside_a_transaction_delays_nothing_else(deployment):
    """A worker's pool process is SIGSTOPped while it holds its Run's row lock in an open
    transaction. Pages, an Abort of that very Run and another Run go on; the Abort is honoured
    (Aborted by the user, not "worker lost") once the frozen transaction is ended."""
    stack = deployment
    restore_worker(stack)
    run_id = stack.launch("profile")
    running(stack, run_id, timeout=60)
    frozen = freeze_inside_transaction(stack, run_id)
    try:
        login = stack.timed_get("/login/")
        assert login < 1, login
        started = time.monotonic()
        status, body = stack.api("POST", f"/runs/{run_id}/abort", timeout=10)
        answered = time.monotonic() - started
        assert answered < 1, answered
        assert status in (202, 503), (status, body)
        record("frozen worker: Abort answers (s)", answered)
        record("frozen worker: /login/ answers (s)", login)
        # The abort is accepted once PostgreSQL ends the frozen transaction.
        # Asked again at once and often: the reaper may land the Run "worker lost" once its
        # heartbeat is stale, and an Abort still refused (503) by then was never accepted.
        wait_until(lambda: stack.api("POST", f"/runs/{run_id}/abort")[0] == 202, timeout=30,
                   interval=0.1, what="abort accepted")
        other = stack.launch("sync")
        took = stack.wait_for_status(other, {"success"}, timeout=60)
        record("frozen worker: another Run ends Success (s)", took)
        ended = stack.wait_for_status(run_id, {"aborted", "failure", "success"}, timeout=60)
        run = stack.run(run_id)
        assert run["status"] == "aborted" and run["aborted_by_kind"] == "user", run
        record("frozen worker: its Run ends Aborted by the user (s after accept)", ended)
    finally:
        os.kill(frozen, signal.SIGCONT)


def freeze_inside_transaction(stack: Deployment, run_id: int) -> int:
    """SIGSTOP the worker's pool process at a moment its session is inside a transaction;
    returns its pid. Tries until it catches one (each try a few milliseconds)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in stack.pool_children("worker"):
            os.kill(pid, signal.SIGSTOP)
            idle = stack.cluster.query(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                "AND backend_type = 'client backend' AND datname = 'assay'")[0][0]
            if idle and stack.run(run_id)["status"] == "running":
                return pid
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("never caught the worker inside a transaction")


def add_datastore(stack: Deployment, name: str) -> int:
    """Another datastore on the demo source (Runs of one datastore that write its catalogue
    never run side by side, so saturating the slots takes one datastore per slot)."""
    out = stack.manage("shell", "-c", (
        "from datastores.models import Datastore\n"
        "demo = Datastore.objects.get(name='demo')\n"
        f"print(Datastore.objects.create(name={name!r}, source_url=demo.source_url).pk)\n"))
    return int(out.split()[-1])


def schedule_due_in(stack: Deployment, seconds: float) -> int:
    """A schedule whose next firing is ``seconds`` from the database's now; returns its id."""
    out = stack.manage("shell", "-c", (
        "from datetime import timedelta\n"
        "from accounts.models import User\n"
        "from runs.dbtime import db_now\n"
        "from runs.models import Schedule\n"
        f"s = Schedule.objects.create(name='due', datastore_id={stack.datastore_id}, "
        "operation='sync', cron='0 0 1 1 *', created_by=User.objects.get(username='ops'), "
        f"next_fire_at=db_now() + timedelta(seconds={seconds}))\n"
        "print(s.pk)\n"))
    return int(out.split()[-1])


def make_due_in(stack: Deployment, schedule: int, seconds: float) -> None:
    """Move a schedule's next firing to ``seconds`` from the database's now (one statement,
    where ``schedule_due_in`` takes a Django start-up)."""
    stack.cluster.query(
        "UPDATE runs_schedule SET next_fire_at = statement_timestamp() "
        "+ make_interval(secs => %s) WHERE id = %s RETURNING id", (seconds, schedule))


def test_kill_9_of_a_worker_with_every_slot_busy(deployment):
    """Both Run slots execute Profiles and more Runs wait behind them; one slot's process is
    killed. Its Run still ends within the bound (housekeeping has its own worker), the other
    slot's Run ends Success, and a schedule due meanwhile fires on time."""
    stack = deployment
    restore_worker(stack)
    other_datastore = add_datastore(stack, "demo-2")
    status, body = stack.api("POST", "/runs", {"operation": "sync", "datastore": other_datastore,
                                               "config": {}})
    assert status == 201, body
    stack.wait_for_status(body["id"], {"success"}, timeout=60)
    # Made now, made due just before the kill: making it is a Django start-up (seconds, more on
    # a loaded machine), time enough for a busy Run to end and its slot to take a Run of the
    # backlog, which the kill would then hit instead.
    schedule = schedule_due_in(stack, 24 * 3600)
    busy = [stack.launch("profile")]
    for _ in range(2):  # the backlog: waits behind the busy slots
        status, body = stack.api("POST", "/runs", {"operation": "profile",
                                                   "datastore": other_datastore, "config": {}})
        assert status == 201, body
        busy.append(body["id"])
    backlog = [stack.launch("profile"), busy.pop()]
    for run_id in busy:
        running(stack, run_id, timeout=60)
    assert len(stack.pool_children("worker")) == 2
    make_due_in(stack, schedule, 2)
    victim = stack.pool_children("worker")[0]
    # Each slot still executes one of the busy Runs (a Profile lasts seconds; this is
    # milliseconds before the kill), so the victim's Run is one of them.
    assert all(stack.run(r)["status"] == "running" for r in busy), [stack.run(r) for r in busy]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()

    def lost():
        return [r for r in busy if stack.run(r)["error"] == "Worker lost: no heartbeat"]

    wait_until(lost, timeout=60, what="the killed slot's Run failed")
    took = time.monotonic() - killed
    assert took <= DEAD_WORKER_BOUND, took
    record("every slot busy, kill -9 of one slot: its Run ends Failure (s)", took)
    (dead,) = lost()
    assert stack.run(dead)["status"] == "failure"
    (alive,) = set(busy) - {dead}
    stack.wait_for_status(alive, {"success", "failure", "aborted"}, timeout=120)
    assert stack.run(alive)["status"] == "success", stack.run(alive)
    assert stack.executions(alive) == 1
    ((outcome, late, fired_run),) = stack.cluster.query(
        "SELECT outcome, extract(epoch FROM fired_at - due_at), run_id "
        "FROM runs_schedulefiring WHERE schedule_id = %s", (schedule,))
    assert outcome == "launched", outcome
    assert float(late) <= float(TIMINGS["RUN_SCHEDULE_INTERVAL"]) + 2, late
    record("every slot busy: a due schedule fires (s late)", float(late))
    for run_id in [*backlog, fired_run]:
        stack.wait_for_status(run_id, {"success"}, timeout=120)
        assert stack.executions(run_id) == 1


def test_a_backlog_is_resent_sparingly(deployment):
    """``BACKLOG`` small Scans are queued at once, far more than the two slots take in
    ``RUN_REQUEUE_AFTER``, so the reaper's re-send of lost messages runs all along. Deliveries
    (messages the workers received) stay within 10 % above the number of Runs; every Run ends
    Success, executed once."""
    stack = deployment
    restore_worker(stack)
    received = re.compile(r"Task runs\.execute_run\[[^]]+\] received")
    before = len(received.findall(stack.log("worker")))
    launched = time.monotonic()
    # Scans of different tables run side by side; one datastore may run them all at once.
    out = stack.manage("shell", "-c", (
        "from accounts.models import User\n"
        "from datastores.models import Datastore\n"
        "from runs.services import run_launch\n"
        f"d = Datastore.objects.get(pk={stack.datastore_id})\n"
        "Datastore.objects.filter(pk=d.pk).update(run_limit=1000)\n"
        "d.refresh_from_db()\n"
        "user = User.objects.get(username='ops')\n"
        "names = sorted(d.containers.values_list('name', flat=True))\n"
        "ids = [run_launch(user=user, datastore=d, operation='scan', config={'containers': "
        "[names[i % len(names)]], 'record_limit': 10}).pk "
        f"for i in range({BACKLOG})]\n"
        "print(ids[0], ids[-1])\n"))
    first, last = map(int, out.split()[-2:])
    assert last - first + 1 == BACKLOG
    queued = time.monotonic()

    def unfinished():
        return stack.cluster.query(
            "SELECT count(*) FROM runs_run WHERE id BETWEEN %s AND %s "
            "AND status NOT IN ('success', 'failure', 'aborted')", (first, last))[0][0]

    wait_until(lambda: unfinished() == 0, timeout=600, interval=0.5, what="backlog drained")
    drained = time.monotonic() - queued
    total = time.monotonic() - launched
    ((succeeded, sends),) = stack.cluster.query(
        "SELECT count(*) FILTER (WHERE status = 'success'), sum(send_count) FROM runs_run "
        "WHERE id BETWEEN %s AND %s", (first, last))
    assert succeeded == BACKLOG
    twice = stack.cluster.query(
        "SELECT run_id FROM runs_runlogentry WHERE run_id BETWEEN %s AND %s "
        "AND message LIKE %s GROUP BY run_id HAVING count(*) <> 1", (first, last,
                                                                      "% started on datastore %"))
    assert twice == []
    deliveries = len(received.findall(stack.log("worker"))) - before
    extra = deliveries - BACKLOG
    print(f"backlog {BACKLOG}: launched and drained in {total:.1f} s (drained {drained:.1f} s "
          f"after the last launch), {deliveries} deliveries, "
          f"{sends} sends")
    assert extra <= 0.1 * BACKLOG, (deliveries, sends)
    record(f"{BACKLOG}-Run backlog: launched and drained (s)", total)
    record(f"{BACKLOG}-Run backlog: extra deliveries", extra)
    record(f"{BACKLOG}-Run backlog: extra sends (send_count)", sends - BACKLOG)
    stack.cluster.query("UPDATE datastores_datastore SET run_limit = 4 WHERE id = %s "
                        "RETURNING id", (stack.datastore_id,))
