"""A fuzz pass over every API operation: schemathesis reads the OpenAPI schema the API serves
and sends valid and invalid requests to each operation, on SQLite and on PostgreSQL.

What must hold for every request: never a 5xx, and every error is JSON in the documented shape
``{"detail", "code"}``. Bounded (a few examples per operation, derandomized so CI runs the
same cases) to keep the suite fast; raise FUZZ_EXAMPLES locally for a deeper pass.
"""

import os

import pytest
import schemathesis
from django.utils import timezone
from hypothesis import HealthCheck, settings

from accounts.models import Role
from datastores.demo_source import generate_demo_source
from runs.external_scan import external_scan_open
from runs.models import Run, RunStatus
from runs.schedules import schedule_create
from tests.api_support import orders_container, token_for
from tests.factories import DatastoreFactory, RunFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))

# Ids of the objects seeded for the current test: generated ids are steered to them half of
# the time, so the fuzzing reaches past "404 not found" into the operations themselves.
KNOWN: dict[str, int | str] = {}
ID_FOR = {"run_id": "run", "datastore_id": "datastore", "schedule_id": "schedule",
          "datastore": "datastore", "destination_datastore": "datastore", "check": "check"}


def _steer(values):
    if not isinstance(values, dict):
        return values
    for key, value in values.items():
        kind = ID_FOR.get(key)
        if kind in KNOWN and isinstance(value, int) and not isinstance(value, bool) and (
            value % 2 == 0
        ):
            values[key] = KNOWN[kind]
        elif isinstance(value, list):
            for item in value:
                _steer(item)
        elif isinstance(value, dict):
            _steer(value)
    return values


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    return _steer(path_parameters)


@schemathesis.hook
def map_body(context, body):
    return _steer(body)


@pytest.fixture
def one_connection():
    """The app is called through WSGI in this thread, inside the test's transaction: like
    Django's test client, keep the request signals from closing that connection."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def seeded(db, tmp_path, one_connection):
    admin = UserFactory(username="fuzz-admin", role=Role.ADMIN)
    source = tmp_path / "source.sqlite3"
    generate_demo_source(f"sqlite:///{source}", rows=20)
    (tmp_path / "enrichment.sqlite3").touch()
    store = DatastoreFactory(name="warehouse", source_url=f"sqlite:///{source}",
                             enrichment_url=f"sqlite:///{tmp_path / 'enrichment.sqlite3'}")
    _, checks = orders_container(store)
    finished = RunFactory(datastore=store, status=RunStatus.RUNNING, started_at=timezone.now(),
                          config={"containers": None})
    Run.objects.filter(pk=finished.pk).update(status=RunStatus.FAILURE,
                                              finished_at=timezone.now())
    RunFactory(datastore=store, status=RunStatus.QUEUED, operation="sync")
    external = external_scan_open(user=admin, datastore=store, config={})
    schedule = schedule_create(user=admin, name="nightly", datastore=store, operation="sync",
                               cron="0 2 * * *")
    KNOWN.clear()
    KNOWN.update(token=token_for(admin), datastore=store.pk, schedule=schedule.pk,
                 run=external.pk, check=checks["customer"].pk)


def _served_schema():
    from assay.wsgi import application

    # Read through the app, as a client reads it (the endpoint needs no database).
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


schema = _served_schema()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_and_every_error_is_json(case, seeded):
    response = case.call(headers={**(case.headers or {}),
                                  "Authorization": f"Bearer {KNOWN['token']}"})
    request = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
    assert response.status_code < 500, (request, response.text[:500])
    if response.status_code >= 400:
        content_type = {k.lower(): v for k, v in response.headers.items()}["content-type"]
        assert str(content_type).count("application/json"), (request, content_type)
        body = response.json()
        assert isinstance(body.get("detail"), str) and body["detail"], (request, body)
        assert isinstance(body.get("code"), str) and body["code"], (request, body)
