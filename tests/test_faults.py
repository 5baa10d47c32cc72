"""Fault injection against a private PostgreSQL + Redis deployment (``tests/fault_stack.py``):
real web, worker, housekeeping and beat processes started from the Procfile. Each trial applies
one fault and asserts the end state of every Run involved and the time it took to get there.

The short form runs in the PostgreSQL phase of ./scripts/test; ``make faults`` runs it with
``FAULTS_TRIALS`` repetitions and writes the measured times to ``var/faults-<xdist worker>.json``.
"""

import json
import os
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
        wait_until(lambda: stack.api("POST", f"/runs/{run_id}/abort")[0] == 202, timeout=30,
                   interval=0.5, what="abort accepted")
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
