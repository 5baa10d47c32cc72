"""REST API: datastores (write-only URLs), containers with fields and checks, schedules."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Level, Role
from datastores.models import Datastore
from runs.models import Run, Schedule
from runs.schedules import fire_due
from tests.api_support import bearer, orders_container
from tests.factories import DatastoreFactory, TeamFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

SECRET_URL = "postgresql+psycopg://reader:s3cr3t-pw@127.0.0.1:5432/sales"


def error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["detail"] and body["code"]
    if code:
        assert body["code"] == code, body
    return body


@pytest.fixture
def manager(db):
    user = UserFactory(username="manager", role=Role.MANAGER)
    team = TeamFactory(name="analytics", level=Level.EDITOR)
    team.members.add(user)
    return user


# -- datastores --------------------------------------------------------------------------------
def test_datastore_list_is_visible_ones_and_never_shows_passwords(editor, viewer, outsider,
                                                                  datastore):
    datastore.source_url = datastore.enrichment_url = SECRET_URL
    datastore.save()
    DatastoreFactory(name="elsewhere", source_url=SECRET_URL)
    response = bearer(editor).get("/api/v1/datastores")
    assert response.status_code == 200
    assert b"s3cr3t" not in response.content
    shown = "postgresql+psycopg://reader:***@127.0.0.1:5432/sales"
    assert response.json()["items"] == [{
        "id": datastore.pk, "name": "warehouse", "dialect": "postgresql",
        "has_enrichment": True, "enrichment_prefix": "assay",
        "created_at": response.json()["items"][0]["created_at"], "permission": "editor",
        "connection": shown, "enrichment_connection": shown,
        "run_limit": 4, "connection_limit": 2,
    }]
    # Viewers see the name and the kind, never host, path or user.
    as_viewer = bearer(viewer).get("/api/v1/datastores")
    assert [(d["permission"], d["dialect"], d["connection"], d["enrichment_connection"])
            for d in as_viewer.json()["items"]] == [("viewer", "postgresql", None, None)]
    assert b"127.0.0.1" not in as_viewer.content and b"reader" not in as_viewer.content
    assert bearer(outsider).get("/api/v1/datastores").json()["items"] == []


@pytest.mark.parametrize("persona,expected", [("admin", 201), ("manager", 201),
                                              ("editor", 403), ("viewer", 403),
                                              ("outsider", 403)])
def test_only_managers_and_admins_create_datastores(request, persona, expected, datastore):
    user = request.getfixturevalue(persona)
    response = bearer(user).post(
        "/api/v1/datastores", {"name": "sales", "source_url": SECRET_URL},
        content_type="application/json",
    )
    assert response.status_code == expected, response.content
    assert b"s3cr3t" not in response.content
    assert Datastore.objects.filter(name="sales").exists() == (expected == 201)


def test_manager_grants_a_new_datastore_to_own_teams_only(manager, tmp_path):
    own = manager.teams.get()
    foreign = TeamFactory(name="finance")
    client = bearer(manager)
    (tmp_path / "x.db").touch()
    body = {"name": "sales", "source_url": f"sqlite:///{tmp_path / 'x.db'}",
            "teams": [foreign.pk]}
    error(client.post("/api/v1/datastores", body, content_type="application/json"), 422)
    body["teams"] = [own.pk]
    response = client.post("/api/v1/datastores", body, content_type="application/json")
    assert response.status_code == 201
    assert response.json()["permission"] == "editor"  # through the team just granted
    created = Datastore.objects.get(name="sales")
    assert list(created.teams.all()) == [own] and created.created_by == manager


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": "x", "source_url": "not a url"}, "source_url"),
        ({"name": "x", "source_url": "nosuchdialect://h/db"}, "source_url"),
        ({"name": "x", "source_url": "sqlite://", "enrichment_url": "::"}, "enrichment_url"),
        ({"name": "x", "source_url": "sqlite://", "enrichment_prefix": "1-bad"},
         "enrichment_prefix"),
        ({"name": "warehouse", "source_url": "sqlite://"}, "name"),
        ({"name": "   ", "source_url": "sqlite://"}, "name"),
        ({"name": "x", "source_url": "sqlite://", "teams": [987654]}, "teams"),
    ],
)
def test_bad_datastores_are_422_with_a_message(admin, datastore, body, field):
    response = bearer(admin).post("/api/v1/datastores", body, content_type="application/json")
    payload = error(response, 422, "invalid")
    assert field in payload["errors"]
    assert Datastore.objects.count() == 1


@pytest.mark.parametrize(
    "raw",
    ['{"name": "x"}', '{"name": 5, "source_url": "sqlite://"}', "[1]", "{",
     '{"name": "x", "source_url": "sqlite://", "password": "p"}',
     '{"name": "x", "source_url": "sqlite://", "teams": ["a"]}'],
)
def test_malformed_datastore_bodies_never_500_nor_echo_input(admin, raw):
    secret_raw = raw.replace('"sqlite://"', '"sqlite:///s3cr3t"')
    response = bearer(admin).post("/api/v1/datastores", secret_raw,
                                  content_type="application/json")
    assert response.status_code in (400, 422)
    assert b"s3cr3t" not in response.content


# -- containers --------------------------------------------------------------------------------
def test_containers_come_with_fields_and_active_checks(viewer, datastore):
    _, checks = orders_container(datastore)
    orders_container(datastore, name="archive")
    response = bearer(viewer).get(f"/api/v1/datastores/{datastore.pk}/containers")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [c["name"] for c in items] == ["archive", "orders"]
    orders = items[1]
    assert [f["name"] for f in orders["fields"]] == ["id", "customer", "quantity", "status",
                                                      "ordered_on"]
    assert orders["fields"][2] == {"name": "quantity", "type": "integer", "nullable": True,
                                   "position": 2}
    assert [c["id"] for c in orders["checks"]] == [
        checks[k].pk for k in ("unique_id", "customer", "quantity", "status")]
    status_check = orders["checks"][3]
    assert status_check["field"] == "status"
    assert status_check["params"] == {"values": ["open", "shipped"]}
    assert "status" in status_check["description"]
    one = bearer(viewer).get(f"/api/v1/datastores/{datastore.pk}/containers?name=orders")
    assert [c["name"] for c in one.json()["items"]] == ["orders"]


def test_containers_of_invisible_or_unknown_datastores_are_404(outsider, editor):
    hidden = DatastoreFactory(name="hidden")
    orders_container(hidden)
    error(bearer(outsider).get(f"/api/v1/datastores/{hidden.pk}/containers"), 404, "not_found")
    error(bearer(editor).get("/api/v1/datastores/987654/containers"), 404, "not_found")
    error(bearer(editor).get("/api/v1/datastores/abc/containers"), 422, "invalid")


def test_container_listing_does_not_query_per_container(editor, datastore):
    client = bearer(editor)
    url = f"/api/v1/datastores/{datastore.pk}/containers"
    client.get(url)
    orders_container(datastore, "a")
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for name in "bcdef":
        orders_container(datastore, name)
    with CaptureQueriesContext(connection) as many:
        assert len(client.get(url).json()["items"]) == 6
    assert len(many) == len(few)


# -- schedules ---------------------------------------------------------------------------------
def schedule_body(store, **overrides):
    return {"name": "nightly sync", "datastore": store.pk, "operation": "sync",
            "cron": "0 2 * * *", "config": {"prune": True}, **overrides}


def test_editor_creates_a_schedule_with_its_next_firing(editor, datastore):
    response = bearer(editor).post("/api/v1/schedules", schedule_body(datastore),
                                   content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["datastore"] == {"id": datastore.pk, "name": "warehouse"}
    assert body["config"] == {"prune": True, "recreate": False, "include": ["table", "view"]}
    schedule = Schedule.objects.get(pk=body["id"])
    assert schedule.created_by == editor
    assert schedule.next_fire_at > timezone.now()
    assert (schedule.next_fire_at.hour, schedule.next_fire_at.minute) == (2, 0)


@pytest.mark.parametrize("persona,expected", [("admin", 201), ("editor", 201), ("viewer", 403),
                                              ("reporter", 403), ("outsider", 404)])
def test_schedule_creation_needs_editor(request, datastore, persona, expected):
    user = request.getfixturevalue(persona)
    response = bearer(user).post("/api/v1/schedules", schedule_body(datastore),
                                 content_type="application/json")
    assert response.status_code == expected, response.content
    assert Schedule.objects.count() == (1 if expected == 201 else 0)


@pytest.mark.parametrize(
    "overrides,code",
    [
        ({"cron": "every night"}, "invalid_config"),
        ({"cron": "* * * * * *"}, "invalid_config"),  # seconds field: not cron here
        ({"cron": "0 0 31 2 *"}, "invalid_config"),  # never fires
        ({"cron": "61 * * * *"}, "invalid_config"),
        ({"config": {"prune": "sometimes"}}, "invalid_config"),
        ({"config": {"bogus": 1}}, "invalid_config"),
        ({"operation": "external_scan", "config": {}}, "invalid_config"),
        ({"operation": "promote", "config": {}}, "invalid_config"),
        ({"operation": "launch"}, "invalid"),
        ({"enabled": "yes"}, "invalid"),
        ({"name": ""}, "invalid"),
        ({"name": "   "}, "invalid"),
        ({"surprise": True}, "invalid"),
        ({"datastore": "1"}, "invalid"),
    ],
)
def test_bad_schedules_are_422(editor, datastore, overrides, code):
    response = bearer(editor).post("/api/v1/schedules", schedule_body(datastore, **overrides),
                                   content_type="application/json")
    error(response, 422, code)
    assert not Schedule.objects.exists()


def test_schedules_list_only_visible_ones(editor, viewer, outsider, datastore):
    hidden = DatastoreFactory(name="hidden")
    mine = Schedule.objects.create(name="a", datastore=datastore, operation="sync",
                                   cron="0 * * * *")
    Schedule.objects.create(name="b", datastore=hidden, operation="sync", cron="0 * * * *")
    for user, expected in [(editor, [mine.pk]), (viewer, [mine.pk]), (outsider, [])]:
        items = bearer(user).get("/api/v1/schedules").json()["items"]
        assert [s["id"] for s in items] == expected
    filtered = bearer(editor).get(f"/api/v1/schedules?datastore={hidden.pk}").json()["items"]
    assert filtered == []


@pytest.mark.parametrize("persona,expected", [("admin", 204), ("editor", 204), ("viewer", 403),
                                              ("outsider", 404)])
def test_schedule_deletion_needs_editor(request, datastore, persona, expected):
    schedule = Schedule.objects.create(name="a", datastore=datastore, operation="sync",
                                       cron="0 * * * *")
    user = request.getfixturevalue(persona)
    response = bearer(user).delete(f"/api/v1/schedules/{schedule.pk}")
    assert response.status_code == expected
    assert Schedule.objects.filter(pk=schedule.pk).exists() == (expected != 204)


def test_a_due_schedule_fires_a_run_triggered_by_it(editor, datastore):
    client = bearer(editor)
    created = client.post("/api/v1/schedules", schedule_body(datastore),
                          content_type="application/json").json()
    due = Schedule.objects.get(pk=created["id"]).next_fire_at
    assert fire_due(now=due - timedelta(seconds=1)) == 0
    assert fire_due(now=due) == 1
    assert fire_due(now=due) == 0  # the firing was claimed: never twice
    run = Run.objects.get()
    body = client.get(f"/api/v1/runs/{run.pk}").json()
    assert body["triggered_by"] == {"kind": "schedule", "name": "nightly sync", "via": "schedule"}
    assert body["status"] == "queued" and body["operation"] == "sync"
    assert body["config"]["prune"] is True
    assert Schedule.objects.get(pk=created["id"]).next_fire_at == due + timedelta(days=1)
    # Deleting the schedule keeps its Runs readable.
    assert client.delete(f"/api/v1/schedules/{created['id']}").status_code == 204
    listed = client.get("/api/v1/runs").json()["items"]
    assert listed[0]["triggered_by"]["kind"] == "schedule"
