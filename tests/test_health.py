"""/healthz: real worker and beat processes are stopped and started again; the probe follows.

INTERVAL is every housekeeping job's beat interval and the workers' heartbeat interval here,
so "within 2 intervals" is measured against the settings the processes really run with.
"""

import json
import time

import psycopg
import pytest
from django.db import connection
from django.test import Client

from assay.celery import app
from tests import conftest
from tests.conftest import wait_for
from tests.ops_support import BeatProcess, PrivateRedis, QueueWorkerProcess, elapsed, free_port

INTERVAL = 2.0
START = 60
JOBS = ("runs.reap_runs", "runs.fire_due_schedules")
FAST = {
    "WORKER_HEARTBEAT_INTERVAL": str(INTERVAL),
    "RUN_REAPER_INTERVAL": str(INTERVAL),
    "RUN_SCHEDULE_INTERVAL": str(INTERVAL),
}


@pytest.fixture
def fast_housekeeping(settings):
    settings.WORKER_HEARTBEAT_INTERVAL = INTERVAL
    settings.HEALTH_TIMEOUT = 1.0
    settings.CELERY_BEAT_SCHEDULE = {
        job: {"task": job, "schedule": INTERVAL} for job in JOBS
    }


def probe() -> tuple[int, dict]:
    response = Client().get("/healthz")
    return response.status_code, json.loads(response.content)


def healthy() -> bool:
    return probe()[0] == 200


def failing(check: str):
    def predicate():
        status, body = probe()
        return status == 503 and not body["checks"][check]["ok"] and body

    return predicate


def start_housekeeping(tmp_path, env=None) -> QueueWorkerProcess:
    """The housekeeping worker (its own queue, as in the Procfile)."""
    return QueueWorkerProcess(tmp_path, "housekeeping",
                              extra_env={**FAST, **(env or {})}).start(concurrency=1)


def start_beat(tmp_path, env=None) -> BeatProcess:
    return BeatProcess(tmp_path, extra_env={**FAST, **(env or {})}).start(
        schedule_file=tmp_path / "beat-schedule"
    )


@pytest.mark.worker
@pytest.mark.both_backends
def test_healthz_follows_workers_and_housekeeping(worker_process, fast_housekeeping, tmp_path):
    status, body = probe()
    assert status == 503 and not body["ok"]  # nothing runs yet
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["workers"]["error"] == "No live worker consumes the Runs' queue."

    worker = worker_process(env=FAST)
    housekeeping = start_housekeeping(tmp_path)
    beat = start_beat(tmp_path)
    try:
        wait_for(healthy, timeout=START, interval=0.2, message="never became healthy")
        status, body = probe()
        assert body["checks"]["workers"] == {"ok": True, "alive": 1}  # housekeeping's not counted
        assert body["checks"]["housekeeping"] == {"ok": True, "jobs": 2}

        # A worker killed outright (no clean shutdown to remove its row) ages out.
        worker.kill()
        killed = time.monotonic()
        body = wait_for(failing("workers"), timeout=2 * INTERVAL, interval=0.1,
                        message="a dead worker still counted within 2 intervals")
        print(f"worker death seen after {elapsed(killed):.2f} s")
        assert body["checks"]["database"]["ok"]

        worker_process(env=FAST)
        wait_for(healthy, timeout=START, interval=0.2, message="not healthy after restart")

        beat.stop()
        stopped = time.monotonic()
        # The tick beat sent just before it stopped may still run: half an interval of slack.
        body = wait_for(failing("housekeeping"), timeout=2.5 * INTERVAL, interval=0.1,
                        message="stopped housekeeping not seen")
        print(f"housekeeping stop seen after {elapsed(stopped):.2f} s")
        assert body["checks"]["housekeeping"]["error"].startswith("Housekeeping is late: runs.")
        assert body["checks"]["workers"]["ok"]

        beat = start_beat(tmp_path)
        wait_for(healthy, timeout=START, interval=0.2, message="not healthy after beat restart")
    finally:
        beat.stop()
        housekeeping.stop()


@pytest.mark.worker
@pytest.mark.postgres
def test_healthz_follows_the_broker(worker_process, fast_housekeeping, tmp_path, monkeypatch):
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    broker = PrivateRedis(free_port(range(6440, 6450)), redis_dir).start()
    monkeypatch.setenv("CELERY_BROKER_URL", broker.url)  # what celery's app.conf reads first
    assert app.conf.broker_url == broker.url
    env = {**FAST, "CELERY_BROKER_URL": broker.url}
    beat = housekeeping = None
    try:
        worker_process(env=env)
        housekeeping = start_housekeeping(tmp_path, env)
        beat = start_beat(tmp_path, env)
        wait_for(healthy, timeout=START, interval=0.2, message="never became healthy")

        broker.stop()
        stopped = time.monotonic()
        body = wait_for(failing("broker"), timeout=2 * INTERVAL, interval=0.1,
                        message="a stopped broker not seen within 2 intervals")
        print(f"broker stop seen after {elapsed(stopped):.2f} s")
        error = body["checks"]["broker"]["error"]
        assert error == "Timed out." or error.startswith("Unavailable"), error
        assert broker.url not in json.dumps(body) and "6440" not in json.dumps(body)

        broker.start()  # same port: worker and beat reconnect by themselves
        wait_for(healthy, timeout=START, interval=0.2, message="not healthy after broker restart")
    finally:
        for process in (beat, housekeeping):
            if process:
                process.stop()
        broker.stop()


@pytest.mark.postgres
def test_healthz_answers_fast_while_the_database_is_slow(transactional_db, settings):
    """Another session holds locks on the tables the probe reads: the probe answers anyway."""
    settings.HEALTH_TIMEOUT = 1.0
    dsn = conftest.test_database_url().replace("postgres://", "postgresql://")
    with psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE monitoring_workerheartbeat, monitoring_housekeepingpass "
                       "IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        status, body = probe()
        took = elapsed(started)
        locker.rollback()
    assert status == 503
    assert body["checks"]["database"] == {"ok": True}
    assert not body["checks"]["workers"]["ok"] and not body["checks"]["housekeeping"]["ok"]
    assert took < settings.HEALTH_TIMEOUT + 1.0, f"probe took {took:.2f} s"
    assert connection.vendor == "postgresql"
