"""Hostile input gets a clear 4xx (a form error in the UI), never a 500 nor a forged log line.

Both backends: PostgreSQL refuses NUL characters and out-of-range integers that SQLite takes,
so what passes on one must be checked on the other.
"""

import json
import logging

import pytest
from django.utils import timezone

from datastores.models import Datastore
from runs.logs import append_log
from runs.models import Run, RunStatus
from runs.schedules import fire_due, schedule_create
from tests.api_support import bearer, orders_container
from tests.factories import RunFactory
from tests.ui_support import client_for, csrf_token

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

HUGE = 10**40  # a 40-digit number: no database column holds it


def assert_error(response, statuses=(400, 422)) -> dict:
    assert response.status_code in statuses, (response.status_code, response.content)
    body = response.json()
    assert set(body) <= {"detail", "code", "errors"} and body["detail"] and body["code"]
    return body


def post(user, path, body):
    raw = body if isinstance(body, str) else json.dumps(body)
    return bearer(user).post(path, raw, content_type="application/json")


# -- NUL characters ------------------------------------------------------------------------------
def test_nul_characters_are_refused_everywhere_in_the_api(editor, admin, datastore):
    orders_container(datastore)
    nul = "a\x00b"
    for user, path, body in [
        (admin, "/api/v1/datastores", {"name": nul, "source_url": "sqlite://"}),
        (editor, "/api/v1/runs", {"operation": "scan", "datastore": datastore.pk,
                                  "config": {"containers": [nul]}}),
        (editor, "/api/v1/runs", {"operation": "sync", "datastore": datastore.pk,
                                  "config": {nul: True}}),
        (editor, "/api/v1/schedules", {"name": nul, "datastore": datastore.pk,
                                       "operation": "sync", "cron": "0 * * * *"}),
        (editor, "/api/v1/external-scans", {"datastore": datastore.pk,
                                            "config": {"source": nul}}),
    ]:
        body = assert_error(post(user, path, body), (400,))
        assert "NUL" in body["detail"]
    for query in ("/api/v1/runs?cursor=%00", f"/api/v1/datastores/{datastore.pk}/containers"
                  "?name=x%00y", "/api/v1/runs?status=queued%00"):
        assert "NUL" in assert_error(bearer(editor).get(query), (400,))["detail"]
    assert not Run.objects.exists() and Datastore.objects.count() == 1


def test_nul_in_external_scan_examples_is_refused(editor, datastore):
    _, checks = orders_container(datastore)
    opened = post(editor, "/api/v1/external-scans", {"datastore": datastore.pk}).json()
    response = post(editor, f"/api/v1/external-scans/{opened['id']}/results", {
        "container": "orders", "records_scanned": 1,
        "results": [{"check": checks["customer"].pk, "failed_count": 1,
                     "examples": [{"customer": "\x00"}]}],
    })
    assert "NUL" in assert_error(response, (400,))["detail"]


def test_nan_and_infinity_are_not_json_numbers(editor, datastore):
    for raw in ('{"operation": "profile", "datastore": %d, "config": {"record_limit": NaN}}',
                '{"operation": "profile", "datastore": %d, "config": {"x": Infinity}}'):
        body = assert_error(post(editor, "/api/v1/runs", raw % datastore.pk), (400,))
        assert "not a JSON number" in body["detail"]


def test_the_launch_form_refuses_nul_and_huge_numbers(editor, datastore):
    orders_container(datastore)
    client = client_for(editor, csrf=True)
    url = f"/datastores/{datastore.pk}/launch/promote/"
    token = csrf_token(client, url)
    response = client.post(url, {"csrfmiddlewaretoken": token, "source_container": "orders",
                                 "destination_container": "a\x00b",
                                 "destination_datastore": datastore.pk})
    assert response.status_code == 422
    assert "Null characters are not allowed." in response.content.decode()
    url = f"/datastores/{datastore.pk}/launch/profile/"
    response = client.post(url, {"csrfmiddlewaretoken": token, "record_limit": str(HUGE)})
    assert response.status_code == 422
    assert "Ensure this value is less than or equal to" in response.content.decode()
    assert not Run.objects.exists()


# -- integers beyond a column ------------------------------------------------------------------
@pytest.mark.parametrize(("operation", "config", "field"), [
    ("profile", {"record_limit": HUGE}, "record_limit"),
    ("scan", {"rollup_threshold": HUGE}, "rollup_threshold"),
    ("materialize", {"record_limit": HUGE}, "record_limit"),
    ("promote", {"source_container": "orders", "destination_container": "orders",
                 "checks": [HUGE]}, "checks.0"),
])
def test_integers_beyond_a_column_are_422(editor, datastore, operation, config, field):
    orders_container(datastore)
    body = {"operation": operation, "datastore": datastore.pk, "config": config}
    if operation == "promote":
        body["destination_datastore"] = datastore.pk
    response = assert_error(post(editor, "/api/v1/runs", body), (422,))
    assert field in response["errors"]
    assert not Run.objects.exists()


def test_huge_ids_anywhere_are_4xx(editor, datastore):
    for path in (f"/api/v1/runs/{HUGE}", f"/api/v1/runs/{HUGE}/logs",
                 f"/api/v1/datastores/{HUGE}/containers", f"/api/v1/runs?datastore={HUGE}",
                 f"/api/v1/runs/1/logs?after={HUGE}", f"/api/v1/runs?limit={HUGE}"):
        assert_error(bearer(editor).get(path), (404, 422))
    for body in ({"operation": "sync", "datastore": HUGE},
                 {"operation": "promote", "datastore": datastore.pk,
                  "destination_datastore": HUGE}):
        assert_error(post(editor, "/api/v1/runs", body), (422,))


# -- booleans that are not booleans ------------------------------------------------------------
@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "", None, [True]])
def test_a_destructive_flag_must_be_a_real_boolean(editor, datastore, value):
    body = {"operation": "sync", "datastore": datastore.pk, "config": {"prune": value}}
    response = assert_error(post(editor, "/api/v1/runs", body), (422,))
    assert "prune" in response["errors"]
    schedule = {"name": "s", "datastore": datastore.pk, "operation": "sync",
                "cron": "0 * * * *", "config": {"prune": value}}
    assert_error(post(editor, "/api/v1/schedules", schedule), (422,))
    assert not Run.objects.exists()


def test_real_booleans_still_work(editor, datastore):
    body = {"operation": "sync", "datastore": datastore.pk, "config": {"prune": True}}
    response = post(editor, "/api/v1/runs", body)
    assert response.status_code == 201 and response.json()["config"]["prune"] is True


# -- log lines ---------------------------------------------------------------------------------
def test_newlines_cannot_forge_lines_in_the_log_download(editor, datastore):
    forged = "ok\n2026-01-01T00:00:00+00:00 ERROR   [orders] forged\r\u2028\x1b[2Jcleared"
    schedule = schedule_create(user=editor, name=forged, datastore=datastore,
                               operation="sync", cron="0 * * * *")
    fire_due(now=schedule.next_fire_at)
    run = Run.objects.get()
    append_log(run.pk, forged, container="a\nb")
    text = b"".join(
        bearer(editor).get(f"/api/v1/runs/{run.pk}/log.txt").streaming_content
    ).decode()
    lines = text.split("\n")[:-1]
    assert len(lines) == run.log_entries.count() == 2
    assert all(line[:4].isdigit() for line in lines)  # every line starts with its time
    assert "ok\\n2026-01-01" in text and "\\r\\u2028\\x1b[2J" in text and "[a\\nb]" in text
    assert len(text.splitlines()) == 2  # no other line break a reader would split on either
    # The JSON API returns the message as it was written: escaping is the file's business.
    assert bearer(editor).get(f"/api/v1/runs/{run.pk}/logs").json()["items"][1][
        "message"] == forged


# -- unexpected errors -------------------------------------------------------------------------
def test_an_unexpected_error_is_json_in_the_documented_shape(admin, datastore, caplog):
    """A datastore whose credentials no key decrypts (a key removed too early) is a fault of
    the server, not of the request: 500, yet JSON like every other error, and logged."""
    Datastore.objects.filter(pk=datastore.pk).update(source_url_encrypted="gAAAA-garbage")
    with caplog.at_level(logging.ERROR):
        response = bearer(admin).post(f"/api/v1/datastores/{datastore.pk}/test-connection")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal error; it has been logged.",
                               "code": "internal_error"}
    assert "CredentialsUnreadable" in caplog.text
    listed = bearer(admin).get("/api/v1/datastores").json()["items"][0]
    assert listed["connection"] == "(unreadable: see CREDENTIAL_KEYS)"


def test_a_run_logged_while_running_keeps_its_lines(editor, datastore):
    run = RunFactory(datastore=datastore, status=RunStatus.RUNNING, started_at=timezone.now())
    assert append_log(run.pk, "line\nwith break")
    assert run.log_entries.get().message == "line\nwith break"


def test_any_iso_offset_in_date_filters_is_fine_or_a_clear_422(editor, datastore):
    # PostgreSQL refuses offsets beyond 15:59 that ISO 8601 allows: read as UTC first.
    ok = bearer(editor).get("/api/v1/runs?created_after=3172-11-20T15:50:02%2B17:35")
    assert ok.status_code == 200 and ok.json()["items"] == []
    for value in ("0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-05:00"):
        body = assert_error(bearer(editor).get(f"/api/v1/runs?created_before={value}"), (422,))
        assert body["errors"] == {"created_before": ["Out of range."]}
