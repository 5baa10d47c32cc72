"""The checks behind ``/healthz``: database, broker, a live worker, fresh housekeeping.

Each check runs in its own thread and the answer waits at most ``HEALTH_TIMEOUT`` seconds for
all of them: a check that has not answered by then counts as failed ("timed out"). So a slow
database (a lock, a saturated server) or an unreachable broker makes the probe say so quickly
instead of hanging the load balancer's request. No answer names a host, a URL or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.db.models.functions import Now

logger = logging.getLogger(__name__)

Check = Callable[[], dict[str, Any]]


class Unhealthy(Exception):
    """A check's failure, in words safe to show anyone."""


def _in_thread_with_db(check: Check) -> Check:
    def run() -> dict[str, Any]:
        try:
            if connection.vendor == "postgresql":
                # Bound every query of the check on the server too, so no thread lingers.
                with connection.cursor() as cursor:
                    timeout_ms = int(settings.HEALTH_TIMEOUT * 1000)
                    cursor.execute(f"SET statement_timeout = {timeout_ms}")
            return check()
        finally:
            connection.close()

    return run


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def run_queues() -> list[str]:
    """The queues Runs are sent to (workers consuming one of them can execute Runs)."""
    from assay.celery import app

    return [app.amqp.router.route({}, "runs.execute_run")["queue"].name]


def check_workers() -> dict[str, Any]:
    from monitoring.models import WorkerHeartbeat

    stale_after = timedelta(seconds=settings.WORKER_HEARTBEAT_INTERVAL * 1.5)
    alive = WorkerHeartbeat.objects.filter(seen_at__gte=Now() - stale_after)
    queues = set(run_queues())
    count = sum(1 for row in alive.values_list("queues", flat=True)
                if queues & set(row.split(",")))
    if not count:
        raise Unhealthy("No live worker consumes the Runs' queue.")
    return {"alive": count}


def housekeeping_jobs() -> dict[str, float]:
    """Task name -> interval (s) of every housekeeping job on a fixed beat interval."""
    jobs = {}
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        schedule = entry["schedule"]
        seconds = schedule.total_seconds() if isinstance(schedule, timedelta) else schedule
        if isinstance(seconds, int | float):
            jobs[entry["task"]] = float(seconds)
    return jobs


def check_housekeeping() -> dict[str, Any]:
    """Every job passed within two of its intervals (counted from beat's start at the latest:
    beat sends a job first one interval after it starts)."""
    from monitoring.housekeeping import BEAT_STARTED
    from monitoring.models import HousekeepingPass

    jobs = housekeeping_jobs()
    ages = dict(
        HousekeepingPass.objects.filter(job__in=[*jobs, BEAT_STARTED])
        .annotate(age=Now() - F("last_pass_at"))
        .values_list("job", "age")
    )
    beat_age = ages.get(BEAT_STARTED)
    late = []
    for job, interval in sorted(jobs.items()):
        age = min((a for a in (ages.get(job), beat_age) if a is not None), default=None)
        if age is None or age.total_seconds() > 2 * interval:
            late.append(job)
    if late:
        raise Unhealthy(f"Housekeeping is late: {', '.join(late)}.")
    return {"jobs": len(jobs)}


def check_broker() -> dict[str, Any]:
    return {"queued_messages": sum(queue_depths().values())}


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue Runs go to, read from the broker (bounded timeouts)."""
    from assay.celery import app

    timeout = settings.HEALTH_TIMEOUT
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        return {queue: _depth(conn, queue) for queue in run_queues()}


def _depth(conn, queue: str) -> int:
    try:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except conn.channel_errors as exc:
        # Redis keeps no empty queue and RabbitMQ has none before a worker declared it:
        # "not found" is an empty queue. (Declaring it here could clash with workers' options.)
        if "NOT_FOUND" in str(exc):
            return 0
        raise


CHECKS: dict[str, Check] = {
    "database": _in_thread_with_db(check_database),
    "broker": check_broker,
    "workers": _in_thread_with_db(check_workers),
    "housekeeping": _in_thread_with_db(check_housekeeping),
}


def _outcome(future) -> dict[str, Any]:
    if not future.done():
        return {"ok": False, "error": "Timed out."}
    try:
        return {"ok": True, **future.result()}
    except Unhealthy as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        # The exception text may name hosts or URLs: the log gets it, the answer does not.
        logger.warning("health check failed: %r", exc)
        return {"ok": False, "error": f"Unavailable ({type(exc).__name__})."}


def health() -> dict[str, Any]:
    pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="healthz")
    try:
        futures = {name: pool.submit(check) for name, check in CHECKS.items()}
        wait(futures.values(), timeout=settings.HEALTH_TIMEOUT)
        checks = {name: _outcome(future) for name, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a stuck check does not hold the answer
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}
