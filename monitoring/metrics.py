"""Prometheus metrics: Run figures read from the database at scrape time, HTTP latency live.

Run counts, queue wait and durations come from Assay's own database when Prometheus scrapes,
so every web process (and every machine) answers the same figures, whichever worker did the
work. HTTP latency is measured in each web process; under gunicorn with several processes set
``PROMETHEUS_MULTIPROC_DIR`` (the shipped gunicorn config does) and every process's figures are
summed at scrape time.
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, float("inf"))
WAIT_BUCKETS = (0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf"))

HTTP_LATENCY = Histogram(
    "assay_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL name and status code.",
    ["view", "method", "status"],
    registry=None,  # added to each scrape's registry (or summed from every process's files)
)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(accept: str) -> tuple[bytes, str]:
    """The metrics in the format the scraper asked for (OpenMetrics or Prometheus text)."""
    registry = CollectorRegistry()
    if multiprocess():
        MultiProcessCollector(registry)
    else:
        registry.register(HTTP_LATENCY)
    registry.register(DatabaseCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _gauge_histogram(name: str, doc: str, buckets, values_by_op: dict[str, list[float]]):
    family = GaugeHistogramMetricFamily(name, doc, labels=["operation"])
    for operation, values in sorted(values_by_op.items()):
        cumulative = [(_le(b), sum(1 for v in values if v <= b)) for b in buckets]
        family.add_metric([operation], cumulative, gsum_value=sum(values))
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


class DatabaseCollector:
    """Figures read from the database at each scrape."""

    def collect(self) -> Iterator[Metric]:
        from monitoring.health import queue_depths
        from monitoring.models import HousekeepingActionCount, HousekeepingPass, WorkerHeartbeat
        from runs.models import Run, RunStatus

        runs = GaugeMetricFamily(
            "assay_runs", "Runs kept in the database, by operation and status.",
            labels=["operation", "status"],
        )
        for row in Run.objects.order_by().values("operation", "status").annotate(n=Count("id")):
            runs.add_metric([row["operation"], row["status"]], row["n"])
        yield runs

        now = timezone.now()
        oldest = Run.objects.filter(status=RunStatus.QUEUED).aggregate(t=Min("created_at"))["t"]
        yield GaugeMetricFamily(
            "assay_runs_oldest_queued_age_seconds",
            "How long the oldest queued Run has waited (0 when none waits).",
            value=(now - oldest).total_seconds() if oldest else 0.0,
        )

        window = now - timedelta(seconds=settings.METRICS_WINDOW)
        recent = Run.objects.filter(created_at__gte=window, started_at__isnull=False).order_by()
        waits, durations = defaultdict(list), defaultdict(list)
        for operation, created, started, finished in recent.values_list(
            "operation", "created_at", "started_at", "finished_at"
        ):
            waits[operation].append(max((started - created).total_seconds(), 0.0))
            if finished is not None:
                durations[operation].append(max((finished - started).total_seconds(), 0.0))
        yield _gauge_histogram(
            "assay_run_queue_wait_seconds",
            "Time from launch to start of the Runs launched within METRICS_WINDOW.",
            WAIT_BUCKETS, waits,
        )
        yield _gauge_histogram(
            "assay_run_duration_seconds",
            "Duration of the finished Runs launched within METRICS_WINDOW, by operation.",
            DURATION_BUCKETS, durations,
        )

        actions = CounterMetricFamily(
            "assay_housekeeping_actions", "What housekeeping did since installation.",
            labels=["job", "action"],
        )
        for job, action, total in HousekeepingActionCount.objects.values_list(
            "job", "action", "total"
        ):
            actions.add_metric([job, action], total)
        yield actions
        passes = GaugeMetricFamily(
            "assay_housekeeping_last_pass_timestamp_seconds",
            "When each housekeeping job last completed a pass (Unix time).",
            labels=["job"],
        )
        for job, at in HousekeepingPass.objects.values_list("job", "last_pass_at"):
            passes.add_metric([job], at.timestamp())
        yield passes

        stale = now - timedelta(seconds=settings.WORKER_HEARTBEAT_INTERVAL * 1.5)
        yield GaugeMetricFamily(
            "assay_workers_alive", "Celery workers whose heartbeat is fresh.",
            value=WorkerHeartbeat.objects.filter(seen_at__gte=stale).count(),
        )

        depth = GaugeMetricFamily(
            "assay_queue_messages", "Messages waiting in the broker, by queue.", labels=["queue"]
        )
        up = 1.0
        try:
            for queue, count in queue_depths().items():
                depth.add_metric([queue], count)
        except Exception as exc:
            logger.warning("metrics: broker unavailable: %r", exc)
            up = 0.0
        yield depth
        yield GaugeMetricFamily("assay_broker_up", "1 when the broker answered.", value=up)


def http_latency_middleware(get_response):
    """Time every request, labelled by URL name (bounded: never the raw path)."""

    def middleware(request):
        started = time.perf_counter()
        response = get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match and match.view_name else "unmatched"
        HTTP_LATENCY.labels(view, request.method if request.method in _METHODS else "other",
                            str(response.status_code)).observe(time.perf_counter() - started)
        return response

    return middleware


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
