"""/metrics read back with Prometheus' own text parser after a burst of real Runs."""

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_parser,
)
from prometheus_client.parser import text_string_to_metric_families

from runs.models import Run
from runs.services import run_abort, run_launch
from tests.conftest import purge_queue
from tests.databases import run_now
from tests.ui_support import make_run

pytestmark = pytest.mark.both_backends


def scrape(openmetrics: bool = False) -> dict:
    """Parsed as Prometheus does: its classic text format, or OpenMetrics when asked for."""
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else "text/plain"
    response = Client().get("/metrics", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    parse = openmetrics_parser if openmetrics else text_string_to_metric_families
    assert response["Content-Type"].startswith(accept.split(";")[0])
    return {family.name: family for family in parse(response.content.decode())}


def samples(family, suffix: str = "") -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples if s.name == family.name + suffix
    }


def test_run_figures_match_the_database_after_a_burst(editor, datastore, demo_source_url,
                                                      transactional_db):
    datastore.source_url = demo_source_url
    datastore.save()
    purge_queue()
    for _ in range(6):
        assert run_now(editor, datastore, "sync").status == "success"
    for _ in range(3):
        assert run_now(editor, datastore, "profile").status == "success"
    for _ in range(2):  # queued, then aborted before any worker took them
        run_abort(run=run_launch(user=editor, datastore=datastore, operation="scan"),
                  user=editor)
    run_launch(user=editor, datastore=datastore, operation="scan")  # still queued
    Client().get("/healthz")

    families = scrape()
    expected = Counter(Run.objects.values_list("operation", "status"))
    assert sum(expected.values()) == 12
    assert samples(families["assay_runs"]) == {
        (("operation", op), ("status", status)): float(n) for (op, status), n in expected.items()
    }

    # Every finished Run that started is in the duration histogram of its operation.
    durations = scrape(openmetrics=True)["assay_run_duration_seconds"]
    assert durations.type == "gaugehistogram"
    counts = {dict(k)["operation"]: v for k, v in samples(durations, "_gcount").items()}
    assert counts == {"sync": 6.0, "profile": 3.0}
    infinite = {dict(k)["operation"]: v for k, v in samples(durations, "_bucket").items()
                if dict(k)["le"] == "+Inf"}
    assert infinite == counts

    assert families["assay_runs_oldest_queued_age_seconds"].samples[0].value > 0
    # Each launch sent its message; no worker consumed any (these ran in this process).
    assert samples(families["assay_queue_messages"]) == {(("queue", "celery"),): 12.0}
    assert families["assay_broker_up"].samples[0].value == 1.0
    http = samples(families["assay_http_request_duration_seconds"], "_count")
    assert http[(("method", "GET"), ("status", "503"), ("view", "healthz"))] >= 1


def test_housekeeping_passes_and_actions_are_counted(db, editor, datastore):
    from runs.tasks import fire_due_schedules, reap_runs

    reap_runs()
    make_run(datastore, status="running", worker_token=uuid.uuid4(),
             heartbeat_at=timezone.now() - timedelta(hours=1))
    reap_runs()
    fire_due_schedules()
    families = scrape()
    passes = samples(families["assay_housekeeping_last_pass_timestamp_seconds"])
    assert set(passes) == {(("job", "runs.reap_runs"),), (("job", "runs.fire_due_schedules"),)}
    # One lost Run reaped; nothing due: only actions that happened are counted.
    assert samples(families["assay_housekeeping_actions"], "_total") == {
        (("action", "lost"), ("job", "runs.reap_runs")): 1.0
    }


def test_a_metrics_token_keeps_other_scrapers_out(db, settings, editor, datastore):
    settings.METRICS_TOKEN = "scrape-me-9f2c"
    make_run(datastore, operation="scan", status="success")
    refused = Client().get("/metrics")
    assert refused.status_code == 401
    assert refused.content.decode() == "A bearer token is required (METRICS_TOKEN).\n"
    assert "assay_runs" not in refused.content.decode()
    wrong = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert wrong.status_code == 401
    allowed = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-9f2c")
    families = {f.name: f for f in text_string_to_metric_families(allowed.content.decode())}
    assert samples(families["assay_runs"])[(("operation", "scan"), ("status", "success"))] == 1
    assert Client().get("/healthz").status_code in (200, 503)  # the probe needs no token
