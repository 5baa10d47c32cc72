"""REST API: token auth, the Run endpoints, permissions per persona, pagination, logs, bad input."""

import base64
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken, Level, Role
from runs.logs import append_log
from runs.models import ActorKind, Run, RunDeletion, RunLogEntry, RunStatus, Via
from runs.services import transition
from tests.api_support import bearer, token_for
from tests.factories import DatastoreFactory, RunFactory, TeamFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

RUN_KEYS = {
    "id", "operation", "status", "datastore", "triggered_by", "aborted_by", "abort_requested",
    "created_at", "started_at", "finished_at", "duration_s", "progress", "metrics",
    "has_warnings", "config", "resumed_from", "rerun_of", "error", "wait_reason", "actions",
}


def make_run(datastore, status="queued", operation="scan", **fields) -> Run:
    now = timezone.now()
    if status != RunStatus.QUEUED:
        fields.setdefault("started_at", now - timedelta(seconds=5))
    if status in (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.ABORTED):
        fields.setdefault("finished_at", now)
    if status == RunStatus.ABORTED:
        fields.setdefault("aborted_by_kind", ActorKind.SYSTEM)
    return RunFactory(datastore=datastore, status=status, operation=operation, **fields)


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    if code is not None:
        assert body["code"] == code, body
    return body


# -- authentication ----------------------------------------------------------------------------
def test_requests_without_a_valid_token_are_401(editor):
    for client in (Client(), Client(HTTP_AUTHORIZATION="Bearer assay_nope"),
                   Client(HTTP_AUTHORIZATION="Basic Zm9vOmJhcg=="),
                   Client(HTTP_AUTHORIZATION="Bearer " + "x" * 5000)):
        response = client.get("/api/v1/runs")
        assert_error(response, 401, "unauthenticated")
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_session_cookie_never_authenticates_the_api(editor, datastore):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(editor)
    assert_error(browser.get("/api/v1/runs"), 401)
    response = browser.post(
        "/api/v1/runs", {"operation": "sync", "datastore": datastore.pk},
        content_type="application/json",
    )
    assert_error(response, 401)
    assert not Run.objects.exists()


def test_token_of_a_deactivated_user_is_refused(editor):
    client = bearer(editor)
    assert client.get("/api/v1/runs").status_code == 200
    editor.is_active = False
    editor.save()
    assert_error(client.get("/api/v1/runs"), 401)


def test_last_used_at_is_written_at_most_once_a_minute(editor):
    key = token_for(editor)
    token = ApiToken.objects.get(key_hash=ApiToken.hash_key(key))
    assert token.last_used_at is None
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    client.get("/api/v1/runs")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    client.get("/api/v1/runs")
    token.refresh_from_db()
    assert token.last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/runs")
    token.refresh_from_db()
    assert token.last_used_at > first - timedelta(seconds=1)


def test_create_api_token_command_prints_a_working_key_once(editor, capsys):
    call_command("create_api_token", "editor", "--name", "pipeline")
    key = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(user=editor, name="pipeline")
    assert token.key_hash == ApiToken.hash_key(key) and key not in token.key_hash
    response = Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/runs")
    assert response.status_code == 200
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_token", "nobody")


# -- the Run resource --------------------------------------------------------------------------
def test_run_json_has_exactly_the_documented_shape(editor, datastore):
    run = make_run(datastore, "running", progress_total=4, progress_done=1,
                   progress_unit="Tables", metrics={"records_scanned": 10},
                   triggered_by_user=editor)
    body = bearer(editor).get(f"/api/v1/runs/{run.pk}").json()
    assert set(body) == RUN_KEYS
    assert body["datastore"] == {"id": datastore.pk, "name": "warehouse"}
    assert body["triggered_by"] == {"kind": "user", "name": "editor", "via": "web"}
    assert body["aborted_by"] is None and body["abort_requested"] is False
    assert body["progress"] == {"done": 1, "total": 4, "unit": "Tables", "failed": 0,
                                "remaining": 3}
    assert body["metrics"] == {"records_scanned": 10}
    assert body["duration_s"] >= 5 and body["finished_at"] is None
    assert body["actions"] == ["abort"] and body["error"] is None
    assert body["wait_reason"] is None  # running: it waits for nothing


def test_launch_creates_a_queued_run_triggered_via_api(editor, datastore):
    response = bearer(editor).post(
        "/api/v1/runs", {"operation": "sync", "datastore": datastore.pk, "config": {"prune": True}},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["operation"] == "sync"
    assert body["triggered_by"] == {"kind": "user", "name": "editor", "via": "api"}
    assert body["config"]["prune"] is True and body["actions"] == ["abort"]
    assert Run.objects.get(pk=body["id"]).triggered_via == Via.API


@pytest.mark.parametrize(
    "persona,expected", [("admin", 201), ("editor", 201), ("viewer", 403), ("reporter", 403),
                         ("outsider", 404)],
)
def test_launch_permissions(request, datastore, persona, expected):
    user = request.getfixturevalue(persona)
    response = bearer(user).post(
        "/api/v1/runs", {"operation": "sync", "datastore": datastore.pk},
        content_type="application/json",
    )
    assert response.status_code == expected, response.content
    assert Run.objects.count() == (1 if expected == 201 else 0)


# Every run-scoped path: (method, path template, state of the Run, operation, status for an
# editor). Viewers see but may not act (403 on actions); outsiders get 404 everywhere.
PATHS = [
    ("get", "/api/v1/runs/{id}", "success", "scan", 200),
    ("get", "/api/v1/runs/{id}/logs", "success", "scan", 200),
    ("get", "/api/v1/runs/{id}/log.txt", "success", "scan", 200),
    ("post", "/api/v1/runs/{id}/abort", "queued", "scan", 202),
    ("post", "/api/v1/runs/{id}/resume", "aborted", "scan", 201),
    ("post", "/api/v1/runs/{id}/rerun", "success", "sync", 201),
    ("delete", "/api/v1/runs/{id}", "failure", "scan", 204),
    ("post", "/api/v1/external-scans/{id}/finish", "running", "external_scan", 200),
]
PERSONAS = ["admin", "editor", "viewer", "reporter", "outsider"]


@pytest.mark.parametrize("method,path,status,operation,editor_code", PATHS)
@pytest.mark.parametrize("persona", PERSONAS)
def test_permissions_on_every_run_scoped_path(
    request, datastore, persona, method, path, status, operation, editor_code
):
    user = request.getfixturevalue(persona)
    run = make_run(datastore, status, operation)
    reads = method == "get"
    expected = {
        "admin": editor_code,
        "editor": editor_code,
        "viewer": 200 if reads else 403,
        "reporter": 200 if reads else 403,
        "outsider": 404,
    }[persona]
    response = getattr(bearer(user), method)(path.format(id=run.pk))
    assert response.status_code == expected, response.content
    if expected >= 400:
        assert_error(response, expected)
        # A refused action changes nothing.
        assert Run.objects.filter(pk=run.pk, status=status).exists()
        assert Run.objects.count() == 1


def test_unknown_and_invisible_runs_are_the_same_404(editor):
    hidden = make_run(DatastoreFactory(name="hidden"), "success")
    client = bearer(editor)
    for run_id in (hidden.pk, hidden.pk + 1000):
        for method, path in [("get", "/api/v1/runs/{}"), ("get", "/api/v1/runs/{}/logs"),
                             ("post", "/api/v1/runs/{}/rerun"), ("delete", "/api/v1/runs/{}")]:
            body = assert_error(getattr(client, method)(path.format(run_id)), 404, "not_found")
            assert body["detail"] == "Run not found."


def test_actions_listed_follow_the_policy_and_the_callers_level(editor, viewer, admin, datastore):
    run = make_run(datastore, "aborted", "scan")
    assert bearer(editor).get(f"/api/v1/runs/{run.pk}").json()["actions"] == [
        "resume", "rerun", "delete"]
    assert bearer(admin).get(f"/api/v1/runs/{run.pk}").json()["actions"] == [
        "resume", "rerun", "delete"]
    assert bearer(viewer).get(f"/api/v1/runs/{run.pk}").json()["actions"] == []
    external = make_run(datastore, "success", "external_scan")
    assert bearer(editor).get(f"/api/v1/runs/{external.pk}").json()["actions"] == ["delete"]


@pytest.mark.parametrize(
    "method,path,status,operation",
    [
        ("post", "abort", "success", "scan"),
        ("post", "abort", "aborted", "sync"),
        ("post", "resume", "success", "scan"),
        ("post", "resume", "failure", "sync"),  # Sync cannot resume
        ("post", "resume", "running", "profile"),
        ("post", "rerun", "running", "scan"),
        ("post", "rerun", "success", "external_scan"),
        ("delete", "", "running", "scan"),
        ("delete", "", "queued", "profile"),
    ],
)
def test_actions_not_allowed_in_the_state_are_409(editor, datastore, method, path, status,
                                                  operation):
    run = make_run(datastore, status, operation)
    url = f"/api/v1/runs/{run.pk}/{path}".rstrip("/")
    assert_error(getattr(bearer(editor), method)(url), 409, "conflict")
    assert Run.objects.count() == 1 and Run.objects.get().status == status


def test_abort_of_a_running_run_requests_it(editor, datastore):
    run = make_run(datastore, "running", worker_token=uuid.uuid4())
    response = bearer(editor).post(f"/api/v1/runs/{run.pk}/abort")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "running" and body["abort_requested"] is True
    assert body["actions"] == []  # a pending abort is not offered again


def test_abort_of_a_queued_run_lands_at_once(editor, datastore):
    run = make_run(datastore, "queued")
    body = bearer(editor).post(f"/api/v1/runs/{run.pk}/abort").json()
    assert body["status"] == "aborted"
    assert body["aborted_by"] == {"kind": "user", "name": "editor"}
    assert body["actions"] == ["resume", "rerun", "delete"]


def test_resume_and_rerun_create_new_runs_pointing_back(editor, datastore):
    original = make_run(datastore, "aborted", "scan", config={})
    client = bearer(editor)
    resumed = client.post(f"/api/v1/runs/{original.pk}/resume")
    rerun = client.post(f"/api/v1/runs/{original.pk}/rerun")
    assert resumed.status_code == rerun.status_code == 201
    assert resumed.json()["resumed_from"] == original.pk
    assert rerun.json()["rerun_of"] == original.pk
    assert resumed.json()["triggered_by"]["via"] == "api"
    original.refresh_from_db()
    assert original.status == "aborted"


def test_delete_removes_the_run_and_records_who(editor, datastore):
    run = make_run(datastore, "success")
    client = bearer(editor)
    response = client.delete(f"/api/v1/runs/{run.pk}")
    assert response.status_code == 204 and response.content == b""
    assert_error(client.get(f"/api/v1/runs/{run.pk}"), 404)
    assert RunDeletion.objects.get(run_id=run.pk).deleted_by == editor


# -- listing -----------------------------------------------------------------------------------
def test_list_shows_only_visible_runs_with_filters(editor, outsider, admin, datastore):
    other = DatastoreFactory(name="other")
    mine = [make_run(datastore, "success", "scan"), make_run(datastore, "queued", "sync"),
            make_run(datastore, "failure", "profile")]
    theirs = make_run(other, "success", "scan")
    client = bearer(editor)

    def ids(query=""):
        response = client.get(f"/api/v1/runs{query}")
        assert response.status_code == 200, response.content
        return [item["id"] for item in response.json()["items"]]

    assert ids() == [r.pk for r in reversed(mine)]
    assert ids("?status=success") == [mine[0].pk]
    assert ids("?status=success&status=failure") == [mine[2].pk, mine[0].pk]
    assert ids("?operation=sync") == [mine[1].pk]
    assert ids(f"?datastore={other.pk}") == []
    assert ids("?datastore=987654") == []
    assert ids(f"?datastore={datastore.pk}&operation=scan") == [mine[0].pk]
    assert bearer(outsider).get("/api/v1/runs").json()["items"] == []
    all_ids = [i["id"] for i in bearer(admin).get("/api/v1/runs").json()["items"]]
    assert all_ids == [theirs.pk, *[r.pk for r in reversed(mine)]]


def test_list_filters_by_creation_time(editor, datastore):
    old, new = make_run(datastore, "success"), make_run(datastore, "success")
    cutoff = timezone.now()
    later = make_run(datastore, "queued")
    client = bearer(editor)
    after = client.get("/api/v1/runs", {"created_after": cutoff.isoformat()}).json()["items"]
    before = client.get("/api/v1/runs", {"created_before": cutoff.isoformat()}).json()["items"]
    assert [r["id"] for r in after] == [later.pk]
    assert {r["id"] for r in before} == {old.pk, new.pk}
    naive = client.get("/api/v1/runs", {"created_after": cutoff.replace(tzinfo=None).isoformat()})
    assert [r["id"] for r in naive.json()["items"]] == [later.pk]


def test_cursor_pagination_is_stable_under_inserts(editor, datastore):
    originals = [make_run(datastore, "success") for _ in range(7)]
    client = bearer(editor)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/runs", params).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        # Runs launched between pages must neither shift nor repeat what comes next.
        make_run(datastore, "queued")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [r.pk for r in reversed(originals)]


def test_list_does_not_query_per_row(editor, datastore, admin):
    def count_queries(client) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/api/v1/runs?limit=100").status_code == 200
        return len(queries)

    other = DatastoreFactory(name="second")
    team = TeamFactory(name="second-editors", level=Level.EDITOR)
    team.members.add(editor)
    team.datastores.add(other)
    client, admin_client = bearer(editor), bearer(admin)
    count_queries(client), count_queries(admin_client)  # first use writes last_used_at
    make_run(datastore, "aborted", triggered_by_user=editor, aborted_by_kind=ActorKind.USER,
             aborted_by_user=editor)
    few, few_admin = count_queries(client), count_queries(admin_client)
    for index in range(12):
        store = datastore if index % 2 else other
        user = UserFactory(username=f"launcher{index}")
        make_run(store, "aborted", triggered_by_user=user, aborted_by_kind=ActorKind.USER,
                 aborted_by_user=user)
    assert count_queries(client) == few
    assert count_queries(admin_client) == few_admin


# -- logs --------------------------------------------------------------------------------------
def test_log_cursor_and_frozen_flag(editor, datastore):
    run = make_run(datastore, "running")
    for index in range(5):
        append_log(run.pk, f"line {index}", container="orders" if index == 2 else "")
    client = bearer(editor)
    url = f"/api/v1/runs/{run.pk}/logs"

    first = client.get(url, {"limit": 3}).json()
    assert [item["message"] for item in first["items"]] == ["line 0", "line 1", "line 2"]
    assert first["items"][2]["container"] == "orders"
    assert set(first["items"][0]) == {"id", "time", "level", "container", "message"}
    assert first["frozen"] is False
    second = client.get(url, {"after": first["next_cursor"], "limit": 3}).json()
    assert [item["message"] for item in second["items"]] == ["line 3", "line 4"]
    idle = client.get(url, {"after": second["next_cursor"]}).json()
    assert idle == {"items": [], "next_cursor": second["next_cursor"], "frozen": False}

    append_log(run.pk, "a warning", level="warning")
    assert transition(run.pk, where=Q(status="running"), to="success", log="Finished.")
    last = client.get(url, {"after": idle["next_cursor"]}).json()
    assert [(i["level"], i["message"]) for i in last["items"]] == [
        ("warning", "a warning"), ("info", "Finished.")]
    assert last["frozen"] is True and last["next_cursor"] is None
    # A full page of a frozen log still points on; the page after it ends the log.
    full = client.get(url, {"after": idle["next_cursor"], "limit": 2}).json()
    assert full["frozen"] is True and full["next_cursor"] == last["items"][-1]["id"]
    end = client.get(url, {"after": full["next_cursor"]}).json()
    assert end == {"items": [], "next_cursor": None, "frozen": True}


def test_log_txt_streams_the_whole_log(editor, datastore, settings):
    settings.RUN_LOG_MAX_LINES = 10_000
    run = make_run(datastore, "running")
    RunLogEntry.objects.bulk_create(
        RunLogEntry(run=run, message=f"message {index}", container="t" if index % 2 else "")
        for index in range(2_345)  # more than two database pages
    )
    assert transition(run.pk, where=Q(status="running"), to="failure", log="Run failed: boom",
                      level="error")
    response = bearer(editor).get(f"/api/v1/runs/{run.pk}/log.txt")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}.log"'
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 2_346
    assert lines[0].endswith("INFO    message 0") and "[t] message 1" in lines[1]
    assert lines[-1].endswith("ERROR   Run failed: boom")


# -- bad input ---------------------------------------------------------------------------------
def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


BAD_QUERIES = [
    "limit=0", "limit=-1", "limit=101", "limit=" + "9" * 30, "limit=abc",
    "cursor=!!!", "cursor=" + _b64("notacursor"), "cursor=" + _b64("run:-1"),
    "cursor=" + _b64("run:" + "9" * 25), "cursor=" + "A" * 500, "cursor=%00",
    "status=bogus", "operation=nope", "datastore=abc", "datastore=-3", "datastore=" + "9" * 25,
    "created_after=yesterday", "created_before=2024-13-45",
]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_list_queries_are_400_or_422(editor, query):
    response = bearer(editor).get(f"/api/v1/runs?{query}")
    assert response.status_code in (400, 422)
    assert_error(response, response.status_code)


BAD_BODIES = [
    ("{not json", 400),
    ("[]", 422),
    ('"sync"', 422),
    ("null", 422),
    ('{"operation": 1, "datastore": 1}', 422),
    ('{"operation": "sync", "datastore": "x"}', 422),
    ('{"operation": "sync", "datastore": true}', 422),
    ('{"operation": "sync", "datastore": -1}', 422),
    ('{"operation": "sync", "datastore": 1e400}', 422),
    ('{"operation": "sync", "datastore": 99999999999999999999999}', 422),
    ('{"operation": "sync", "datastore": DS, "config": []}', 422),
    ('{"operation": "sync", "datastore": DS, "config": "x"}', 422),
    ('{"operation": "sync", "datastore": DS, "surprise": 1}', 422),
    ('{"operation": "sync", "datastore": DS, "config": {"prune": "maybe"}}', 422),
    ('{"operation": "sync", "datastore": DS, "config": {"unknown_key": 1}}', 422),
    ('{"operation": "teleport", "datastore": DS}', 422),
    ('{"operation": "external_scan", "datastore": DS}', 422),
    ('{"operation": "promote", "datastore": DS}', 422),
    ('{"datastore": DS}', 422),
    ('{"operation": "sync", "datastore": 424242}', 404),
    ('{"operation": "promote", "datastore": DS, "destination_datastore": 424242}', 404),
]


@pytest.mark.parametrize("body,expected", BAD_BODIES)
def test_bad_launch_bodies_are_clear_errors(editor, datastore, body, expected):
    response = bearer(editor).post(
        "/api/v1/runs", body.replace("DS", str(datastore.pk)), content_type="application/json"
    )
    assert_error(response, expected)
    assert not Run.objects.exists()


def test_invalid_config_reports_per_field_errors(editor, datastore):
    response = bearer(editor).post(
        "/api/v1/runs",
        {"operation": "sync", "datastore": datastore.pk, "config": {"include": ["bogus"]}},
        content_type="application/json",
    )
    body = assert_error(response, 422, "invalid_config")
    assert "include" in body["detail"] and body["errors"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/runs/abc", "/api/v1/runs/-1", "/api/v1/runs/0", "/api/v1/runs/" + "9" * 30,
     "/api/v1/runs/1/logs?after=-1", "/api/v1/runs/1/logs?limit=0",
     "/api/v1/runs/1/logs?limit=100000", "/api/v1/runs/1/logs?after=" + "9" * 30],
)
def test_bad_paths_and_log_params_are_422(editor, datastore, path):
    make_run(datastore, "running")
    assert_error(bearer(editor).get(path), 422, "invalid")


def test_unknown_api_paths_and_methods_answer_json(editor):
    client = bearer(editor)
    assert_error(client.get("/api/v1/no-such-thing"), 404, "not_found")
    response = client.put("/api/v1/runs")
    assert_error(response, 405, "method_not_allowed")
    assert set(response["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_openapi_schema_describes_the_endpoints(db):
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in ["/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/runs/{run_id}/logs",
                 "/api/v1/runs/{run_id}/log.txt", "/api/v1/runs/{run_id}/abort",
                 "/api/v1/runs/{run_id}/resume", "/api/v1/runs/{run_id}/rerun",
                 "/api/v1/external-scans", "/api/v1/external-scans/{run_id}/results",
                 "/api/v1/external-scans/{run_id}/finish", "/api/v1/datastores",
                 "/api/v1/datastores/{datastore_id}/containers", "/api/v1/schedules",
                 "/api/v1/schedules/{schedule_id}"]:
        assert path in paths, path
    assert set(schema["components"]["schemas"]["RunOut"]["properties"]) == RUN_KEYS
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


def test_manager_role_alone_grants_no_run_access(datastore):
    manager = UserFactory(username="manager", role=Role.MANAGER)
    run = make_run(datastore, "success")
    assert_error(bearer(manager).get(f"/api/v1/runs/{run.pk}"), 404)
