"""Datastores in the browser (teams, access, delete keeping Runs), the Schedules page, and the
paged API lists of datastores, containers and schedules."""

import re

import pytest
from django.utils import timezone

from accounts.models import Level, Role
from audit.models import AuditEvent
from datastores.models import Container, Datastore
from runs.models import Run, Schedule
from runs.schedules import fire_due, schedule_create
from tests.api_support import bearer
from tests.factories import DatastoreFactory, TeamFactory, UserFactory
from tests.ui_support import client_for, make_run

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


@pytest.fixture
def manager(datastore):
    user = UserFactory(username="manager", role=Role.MANAGER)
    team = TeamFactory(name="analytics", level=Level.EDITOR)
    team.members.add(user)
    team.datastores.add(datastore)
    return user


# -- delete -----------------------------------------------------------------------------------
def test_deleting_a_datastore_keeps_its_runs_and_other_stores_promote_runs(admin, datastore):
    other = DatastoreFactory(name="lake")
    own = make_run(datastore, status="success", user=admin)
    promote_into = make_run(other, status="success", operation="promote",
                            destination_datastore=datastore, user=admin)
    Container.objects.create(datastore=datastore, name="orders", kind="table")
    schedule_create(user=admin, name="nightly", datastore=datastore, operation="sync",
                    cron="0 2 * * *")
    client = client_for(admin)

    confirm = client.get(f"/datastores/{datastore.pk}/delete/").content.decode()
    assert "1 Run</strong> stay as audit records" in confirm
    assert "1 container" in confirm and "1 schedule on it is deleted" in confirm

    response = client.post(f"/datastores/{datastore.pk}/delete/")
    assert response["Location"] == "/datastores/"
    assert set(Run.objects.values_list("pk", flat=True)) == {own.pk, promote_into.pk}
    assert not Container.objects.filter(datastore_id=datastore.pk).exists()
    assert not Schedule.objects.exists()
    assert not Datastore.objects.filter(pk=datastore.pk).exists()  # gone from the catalogue
    kept = Datastore.all_objects.get(pk=datastore.pk)
    assert kept.deleted_at and kept.source_url == "" and not kept.teams.exists()

    # The Runs still render, naming the deleted datastore.
    assert "warehouse" in client.get(f"/activity/runs/{own.pk}/").content.decode()
    assert "warehouse" in client.get(f"/activity/runs/{promote_into.pk}/").content.decode()
    assert "warehouse" in client.get("/activity/").content.decode()
    assert client.get(f"/datastores/{datastore.pk}/").status_code == 404
    assert client.get(f"/datastores/{datastore.pk}/edit/").status_code == 404
    assert "warehouse" not in client.get("/datastores/").content.decode()

    # Nothing can be launched on it any more: no Rerun or Resume offered, the API says why.
    detail = client.get(f"/activity/runs/{own.pk}/").content.decode()
    assert "act-rerun" not in detail and "act-delete" in detail
    assert "act-rerun" not in client.get("/activity/").content.decode()  # nor into it
    response = bearer(admin).post(f"/api/v1/runs/{own.pk}/rerun")
    assert response.status_code == 409
    assert response.json()["detail"] == "Rerun is not available: datastore warehouse was deleted."
    assert bearer(admin).get(f"/api/v1/runs/{own.pk}").json()["actions"] == ["delete"]
    response = bearer(admin).post(f"/api/v1/runs/{promote_into.pk}/rerun")
    assert response.json()["detail"] == "Rerun is not available: datastore warehouse was deleted."
    assert Run.objects.count() == 2
    # Its name may be used again.
    assert DatastoreFactory(name="warehouse").pk != datastore.pk
    event = AuditEvent.objects.get(action="datastore.deleted")
    assert event.before["runs"] == 1 and event.before["containers"] == 1


def test_a_datastore_with_active_runs_is_not_deleted(admin, datastore):
    make_run(datastore, status="running")
    response = client_for(admin).post(f"/datastores/{datastore.pk}/delete/", follow=True)
    assert "has active Runs" in response.content.decode()
    assert Datastore.objects.filter(pk=datastore.pk).exists()


def test_only_who_may_edit_deletes(datastore, editor, viewer, manager, outsider):
    assert client_for(viewer).post(f"/datastores/{datastore.pk}/delete/").status_code == 403
    assert client_for(editor).post(f"/datastores/{datastore.pk}/delete/").status_code == 403
    assert client_for(outsider).get(f"/datastores/{datastore.pk}/delete/").status_code == 404
    assert Datastore.objects.filter(pk=datastore.pk).exists()
    assert client_for(manager).post(f"/datastores/{datastore.pk}/delete/").status_code == 302
    assert not Datastore.objects.filter(pk=datastore.pk).exists()


def test_a_hard_delete_cannot_cascade_into_runs(datastore):
    from django.db.models import ProtectedError

    other = DatastoreFactory(name="lake")
    make_run(other, status="success", operation="promote", destination_datastore=datastore)
    with pytest.raises(ProtectedError):
        datastore.delete()
    assert Run.objects.count() == 1


# -- teams and access ------------------------------------------------------------------------
def test_manager_grants_only_own_teams_and_keeps_the_others(datastore, manager, public_team):
    foreign = TeamFactory(name="foreign", level=Level.VIEWER)
    foreign.datastores.add(datastore)
    mine = manager.teams.get()
    client = client_for(manager)
    page = client.get(f"/datastores/{datastore.pk}/edit/").content.decode()
    assert "analytics (Editor)" in page and "foreign" not in page
    client.post(f"/datastores/{datastore.pk}/teams/", {"teams": [mine.pk, public_team.pk]})
    assert set(datastore.teams.values_list("name", flat=True)) == {
        "analytics", "Public", "foreign"}
    response = client.post(f"/datastores/{datastore.pk}/teams/", {"teams": [foreign.pk]})
    assert response.status_code == 302
    assert datastore.teams.filter(name="foreign").exists()  # not theirs to revoke


def test_access_page_lists_who_can_do_what(admin, datastore, editor, viewer, public_team):
    public_team.datastores.add(datastore)
    page = client_for(admin).get(f"/datastores/{datastore.pk}/access/").content.decode()
    assert "Everyone gets at least <strong>Viewer</strong>" in page
    assert re.search(r">editor</a></th><td>Member</td><td>Editor</td><td>editor-team</td>", page)
    assert re.search(r">viewer</a></th><td>Member</td><td>Viewer</td><td>viewer-team", page)
    assert re.search(r">admin</a></th><td>Admin</td><td>Admin \(every permission\)", page)
    assert client_for(viewer).get(f"/datastores/{datastore.pk}/access/").status_code == 403


# -- schedules page --------------------------------------------------------------------------
def test_editor_creates_edits_disables_and_deletes_a_schedule(editor, datastore):
    client = client_for(editor)
    preview = client.get("/schedules/preview/", {"cron": "30 2 * * 1-5"}).content.decode()
    assert "At 02:30, Monday through Friday (UTC)" in preview
    assert preview.count("<li><time") == 5
    bad = client.get("/schedules/preview/", {"cron": "61 * * * *"}).content.decode()
    assert "is not a valid cron expression" in bad
    by_preset = client.get("/schedules/preview/", {"cron": "", "preset": "0 2 * * *"})
    assert "At 02:00 (UTC)" in by_preset.content.decode()

    response = client.post("/schedules/new/", {
        "name": "nightly", "datastore": datastore.pk, "operation": "sync",
        "preset": "0 2 * * *", "cron": "", "config": '{"prune": true}',
    })
    assert response["Location"] == "/schedules/"
    schedule = Schedule.objects.get()
    assert (schedule.cron, schedule.config["prune"], schedule.created_by) == (
        "0 2 * * *", True, editor)
    listing = client.get("/schedules/").content.decode()
    assert "At 02:00 (UTC)" in listing and "warehouse" in listing and "never" in listing
    assert f"/activity/?schedule={schedule.pk}" in listing

    client.post(f"/schedules/{schedule.pk}/edit/", {
        "name": "nightly", "operation": "sync", "cron": "15 4 * * *", "config": ""})
    schedule.refresh_from_db()
    assert schedule.cron == "15 4 * * *" and schedule.next_fire_at.hour == 4

    client.post(f"/schedules/{schedule.pk}/disable/")
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_fire_at is None
    client.post(f"/schedules/{schedule.pk}/enable/")
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_fire_at > timezone.now()

    client.post(f"/schedules/{schedule.pk}/delete/")
    assert not Schedule.objects.exists()


def test_schedule_form_errors_are_shown(editor, datastore):
    client = client_for(editor)
    for data, message in [
        ({"cron": "not cron"}, "is not a valid cron expression"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"cron": "", "preset": ""}, "Choose a preset or write a cron expression"),
        ({"config": "[1]"}, "A JSON object"),
        ({"config": "{nope"}, "Not valid JSON"),
        ({"config": '{"bogus": 1}'}, "bogus"),
        ({"operation": "external_scan"}, "Select a valid choice"),
        ({"operation": "promote"}, "This field is required"),  # the destination
    ]:
        body = {"name": "n", "datastore": datastore.pk, "operation": "sync",
                "cron": "0 2 * * *", **data}
        response = client.post("/schedules/new/", body)
        assert response.status_code == 422, data
        assert message in response.content.decode(), (data, response.content.decode()[:3000])
    assert not Schedule.objects.exists()


def test_schedules_need_editor_and_stay_invisible_to_outsiders(editor, viewer, outsider,
                                                                datastore):
    schedule = schedule_create(user=editor, name="nightly", datastore=datastore,
                               operation="sync", cron="0 2 * * *")
    viewer_page = client_for(viewer).get("/schedules/").content.decode()
    assert "nightly" in viewer_page and f"/schedules/{schedule.pk}/edit/" not in viewer_page
    assert "New schedule" not in viewer_page
    assert client_for(viewer).post(f"/schedules/{schedule.pk}/disable/").status_code == 403
    assert client_for(viewer).post(f"/schedules/{schedule.pk}/delete/").status_code == 403
    assert client_for(viewer).get(f"/schedules/{schedule.pk}/edit/").status_code == 403
    response = client_for(viewer).post("/schedules/new/", {
        "name": "x", "datastore": datastore.pk, "operation": "sync", "cron": "0 2 * * *"})
    assert response.status_code == 422
    assert "nightly" not in client_for(outsider).get("/schedules/").content.decode()
    assert client_for(outsider).post(f"/schedules/{schedule.pk}/delete/").status_code == 404
    assert Schedule.objects.get().enabled


def test_reenabling_rechecks_the_owner(admin, editor, datastore):
    schedule = schedule_create(user=editor, name="nightly", datastore=datastore,
                               operation="sync", cron="0 2 * * *")
    client_for(admin).post(f"/schedules/{schedule.pk}/disable/")
    editor.teams.clear()
    response = client_for(admin).post(f"/schedules/{schedule.pk}/enable/", follow=True)
    assert "no longer an Editor of warehouse" in response.content.decode()
    assert not Schedule.objects.get().enabled


def test_a_schedules_runs_are_one_click_away_and_survive_its_deletion(editor, datastore):
    schedule = schedule_create(user=editor, name="nightly", datastore=datastore,
                               operation="sync", cron="0 2 * * *")
    assert fire_due(now=schedule.next_fire_at) == 1
    run = Run.objects.get()
    mine = make_run(datastore, status="success", user=editor)
    client = client_for(editor)
    listing = client.get("/schedules/").content.decode()
    assert f'href="/activity/runs/{run.pk}/">Run #{run.pk}' in listing
    filtered = client.get("/activity/", {"schedule": schedule.pk}).content.decode()
    assert f'id="run-{run.pk}"' in filtered and f'id="run-{mine.pk}"' not in filtered

    client.post(f"/schedules/{schedule.pk}/delete/")
    for url in ("/activity/", f"/activity/runs/{run.pk}/", f"/activity/runs/{run.pk}/line/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert f"Schedule #{schedule.pk} (deleted)" in response.content.decode(), url
    assert bearer(editor).get(f"/api/v1/runs/{run.pk}").json()["triggered_by"]["name"] == (
        f"Schedule #{schedule.pk} (deleted)")


# -- API paging ------------------------------------------------------------------------------
@pytest.mark.parametrize("path, make", [
    ("/api/v1/datastores", lambda store, i: DatastoreFactory(name=f"d{i:02d}")),
    ("/api/v1/datastores/{store}/containers",
     lambda store, i: Container.objects.create(datastore=store, name=f"c{i:02d}", kind="table")),
    ("/api/v1/schedules", lambda store, i: Schedule.objects.create(
        name=f"s{i:02d}", datastore=store, operation="sync", cron="0 2 * * *")),
])
def test_api_lists_page_like_the_run_list(admin, datastore, path, make):
    for i in range(7):
        make(datastore, i)
    client = bearer(admin)
    url = path.format(store=datastore.pk)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get(url, params).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 7
    assert pages == -(-len(seen) // 3)
    bad = client.get(url, {"cursor": "garbage"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    assert client.get(url, {"limit": 101}).status_code == 422
    run_cursor = "cnVuOjE"  # "run:1": another list's cursor
    assert client.get(url, {"cursor": run_cursor}).status_code == 400
