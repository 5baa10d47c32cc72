"""Schedules fire as their owner, checked at every firing; every firing leaves a record."""

from datetime import timedelta

import pytest

from accounts.models import Level
from datastores.models import Datastore
from runs.models import FiringOutcome, Run, Schedule, ScheduleFiring
from runs.schedules import fire_due, schedule_create
from tests.api_support import bearer, orders_container
from tests.factories import DatastoreFactory, TeamFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def nightly(owner, datastore, name="nightly", operation="sync", config=None, **kwargs):
    return schedule_create(user=owner, name=name, datastore=datastore, operation=operation,
                           cron="0 2 * * *", config=config or {}, **kwargs)


def due(*schedules) -> object:
    """The moment all of them are due."""
    return max(Schedule.objects.get(pk=s.pk).next_fire_at for s in schedules)


def firings(schedule) -> list[tuple[str, str, int | None]]:
    return list(ScheduleFiring.objects.filter(schedule=schedule).order_by("pk").values_list(
        "outcome", "reason", "run_id"))


def test_a_firing_launches_as_its_owner_and_is_recorded(editor, datastore):
    schedule = nightly(editor, datastore)
    assert fire_due(now=due(schedule)) == 1
    run = Run.objects.get()
    assert firings(schedule) == [(FiringOutcome.LAUNCHED, "", run.pk)]
    assert run.schedule_id == schedule.pk and run.triggered_by_kind == "schedule"
    assert run.log_entries.first().message == (
        "Launched by schedule nightly (as editor) via Schedule."
    )
    body = bearer(editor).get(f"/api/v1/schedules/{schedule.pk}/firings").json()
    assert [(f["outcome"], f["run"]) for f in body["items"]] == [("launched", run.pk)]


@pytest.mark.parametrize("loss", ["deactivated", "demoted", "removed from team", "deleted"])
def test_an_owner_who_may_no_longer_launch_stops_the_schedule(editor, datastore, loss):
    schedule = nightly(editor, datastore)
    team = editor.teams.get()
    if loss == "deactivated":
        editor.is_active = False
        editor.save()
        reason = "Its owner editor is deactivated."
    elif loss == "demoted":
        team.level = Level.VIEWER
        team.save()
        reason = "Its owner editor is no longer an Editor of warehouse."
    elif loss == "removed from team":
        team.members.remove(editor)
        reason = "Its owner editor is no longer an Editor of warehouse."
    else:
        Run.objects.all().delete()
        editor.delete()
        reason = "Its owner was deleted."

    assert fire_due(now=due(schedule)) == 0

    assert not Run.objects.exists()
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.disabled_reason) == (False, reason)
    assert firings(schedule) == [(FiringOutcome.SKIPPED, reason, None)]
    assert fire_due(now=due(schedule) + timedelta(days=3)) == 0  # off: no further firing
    assert len(firings(schedule)) == 1
    admin = UserFactory(username="root", role="admin")
    shown = bearer(admin).get("/api/v1/schedules").json()["items"][0]
    assert (shown["enabled"], shown["disabled_reason"]) == (False, reason)


def test_losing_the_promote_destination_stops_the_schedule_too(editor, datastore):
    lakehouse = DatastoreFactory(name="lakehouse")
    lakehouse.teams.add(editor.teams.get())
    orders_container(datastore)
    orders_container(lakehouse)
    schedule = nightly(editor, datastore, operation="promote", destination=lakehouse,
                       config={"source_container": "orders", "destination_container": "orders"})
    lakehouse.teams.clear()

    assert fire_due(now=due(schedule)) == 0

    schedule.refresh_from_db()
    assert not schedule.enabled
    assert schedule.disabled_reason == (
        "Its owner may no longer launch it: Destination datastore not found."
    )
    assert firings(schedule)[0][0] == FiringOutcome.SKIPPED
    assert not Run.objects.exists()


def test_a_failing_schedule_costs_the_others_nothing(editor, datastore, tmp_path):
    """Two ways to fail between healthy schedules: each is recorded, the others fire."""
    (tmp_path / "enrichment.sqlite3").touch()
    orders_container(datastore)
    vault = DatastoreFactory(name="vault")
    vault.teams.add(editor.teams.get())
    vault.enrichment_url = f"sqlite:///{tmp_path / 'enrichment.sqlite3'}"
    vault.save()
    healthy_a = nightly(editor, datastore, name="a")
    invalid = nightly(editor, datastore, name="b", operation="scan",
                      config={"containers": ["orders"]})
    broken = nightly(editor, vault, name="c", operation="export")
    healthy_d = nightly(editor, datastore, name="d")
    # The scan's container leaves the catalogue: its config no longer validates.
    datastore.containers.filter(name="orders").delete()
    # The export's datastore now holds credentials no key decrypts (a key dropped too early):
    # an error no service expects.
    Datastore.objects.filter(pk=vault.pk).update(enrichment_url_encrypted="gAAAA-garbage")
    moment = due(healthy_a, invalid, broken, healthy_d)

    assert fire_due(now=moment) == 2

    launched = {run.schedule_id for run in Run.objects.all()}
    assert launched == {healthy_a.pk, healthy_d.pk}
    outcome, reason, run_id = firings(invalid)[0]
    assert (outcome, run_id) == (FiringOutcome.FAILED, None)
    assert "Unknown containers" in reason
    assert firings(broken) == [
        (FiringOutcome.FAILED, "Internal error (CredentialsUnreadable).", None)
    ]
    # A configuration problem may be fixed (a Sync brings the container back): still on.
    assert Schedule.objects.get(pk=invalid.pk).enabled
    for schedule in (healthy_a, healthy_d):
        assert firings(schedule)[0][0] == FiringOutcome.LAUNCHED
    # Every one moved on to its next firing: none is stuck failing again at each beat.
    for schedule in (healthy_a, invalid, broken, healthy_d):
        assert Schedule.objects.get(pk=schedule.pk).next_fire_at > moment
    assert fire_due(now=moment) == 0


def test_a_firing_is_recorded_once_even_when_fired_twice(editor, datastore):
    schedule = nightly(editor, datastore)
    editor.is_active = False
    editor.save()
    moment = due(schedule)
    fire_due(now=moment)
    fire_due(now=moment)
    assert len(firings(schedule)) == 1


def test_firings_of_an_invisible_schedule_are_404(editor, outsider, datastore):
    schedule = nightly(editor, datastore)
    assert bearer(outsider).get(f"/api/v1/schedules/{schedule.pk}/firings").status_code == 404
    assert bearer(outsider).get("/api/v1/schedules/999999/firings").json() == {
        "detail": "Schedule not found.", "code": "not_found"}


def test_a_hidden_destination_is_not_named_in_the_schedule_list(editor, datastore):
    lakehouse = DatastoreFactory(name="secret-lakehouse")
    lakehouse.teams.add(editor.teams.get())
    orders_container(datastore)
    orders_container(lakehouse)
    nightly(editor, datastore, operation="promote", destination=lakehouse,
            config={"source_container": "orders", "destination_container": "orders"})
    reader = UserFactory(username="reader")
    team = TeamFactory(name="readers", level=Level.REPORTER)
    team.members.add(reader)
    team.datastores.add(datastore)
    response = bearer(reader).get("/api/v1/schedules")
    assert response.json()["items"][0]["destination_datastore"] is None
    assert b"secret-lakehouse" not in response.content
    shown = bearer(editor).get("/api/v1/schedules").json()["items"][0]["destination_datastore"]
    assert shown == {"id": lakehouse.pk, "name": "secret-lakehouse"}
