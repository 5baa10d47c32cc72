"""The audit log: every permission-relevant or destructive event, append-only in the database,
and the admins' page with its filters and CSV export."""

import csv
import io
import sqlite3
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts import services as teams
from accounts import tokens, users
from accounts.models import Level, Role, Team
from audit.models import AuditAction, AuditEvent
from audit.services import record
from datastores import services as datastores
from runs.retention import apply_retention
from runs.schedules import (
    schedule_create,
    schedule_delete,
    schedule_set_enabled,
    schedule_update,
)
from runs.services import run_delete
from tests.factories import UserFactory
from tests.ui_support import client_for, make_run

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def last(action: str) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("id")


# -- append-only ------------------------------------------------------------------------------
@pytest.mark.parametrize("statement", [
    "UPDATE audit_auditevent SET actor_name = 'someone else'",
    "UPDATE audit_auditevent SET after = NULL WHERE id = %s",
    "DELETE FROM audit_auditevent WHERE id = %s",
    "DELETE FROM audit_auditevent",
])
def test_raw_update_or_delete_is_rejected_by_the_database(admin, statement):
    event = record(admin, AuditAction.TEAM_CREATED, None, None, {"name": "x"},
                   object_type="team", object_name="x")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(statement, [event.pk] if "%s" in statement else [])
    event.refresh_from_db()
    assert (event.actor_name, event.after) == ("admin", {"name": "x"})
    assert AuditEvent.objects.count() == 1


def test_the_orm_cannot_rewrite_history_either(admin):
    event = record(admin, AuditAction.TEAM_CREATED, None, None, {"name": "x"},
                   object_type="team", object_name="x")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor_name="ghost")
    with pytest.raises(DatabaseError), transaction.atomic():
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).actor_name == "admin"


# -- every event kind -------------------------------------------------------------------------
def test_every_event_kind_is_recorded_with_actor_and_before_after(admin, datastore, tmp_path,
                                                                  settings):
    # Teams, members, levels, grants.
    team = teams.team_create(actor=admin, name="Analysts", level=Level.VIEWER)
    teams.team_update(actor=admin, team=team, name="Analysts", level=Level.EDITOR)
    alice = UserFactory(username="alice")
    teams.team_add_member(actor=admin, team=team, user=alice)
    teams.team_set_datastores(actor=admin, team=team, datastores=[datastore])
    teams.team_set_datastores(actor=admin, team=team, datastores=[])
    teams.team_remove_member(actor=admin, team=team, user=alice)

    # Users, tokens.
    bob, link = users.user_create(actor=admin, username="bob", role=Role.MEMBER)
    assert link.startswith("/set-password/")
    users.user_set_role(actor=admin, user=bob, role=Role.MANAGER)
    token, _ = tokens.token_create(actor=bob, user=bob, name="pipeline")
    tokens.token_revoke(actor=admin, token=token)
    users.user_deactivate(actor=admin, user=bob)
    users.user_reactivate(actor=admin, user=bob)
    users.password_changed(user=alice)

    # Datastores.
    sqlite3.connect(tmp_path / "sales.db").close()
    store = datastores.datastore_create(
        user=admin, name="sales", source_url=f"sqlite:///{tmp_path / 'sales.db'}",
        team_ids=[team.pk],
    )
    datastores.datastore_update(user=admin, datastore=store, name="sales-eu",
                                enrichment_prefix="eu")
    datastores.datastore_set_teams(user=admin, datastore=store, teams=[])

    # Schedules and Runs.
    schedule = schedule_create(user=admin, name="nightly", datastore=datastore,
                               operation="sync", cron="0 2 * * *")
    schedule_update(schedule=schedule, user=admin, name="nightly", operation="sync",
                    cron="30 3 * * *")
    schedule_set_enabled(schedule=schedule, user=admin, enabled=False)
    schedule_set_enabled(schedule=schedule, user=admin, enabled=True)
    schedule_delete(schedule=schedule, user=admin)
    run = make_run(datastore, status="success", user=admin)
    run_delete(run=run, user=admin)
    settings.RUN_RETENTION_DAYS = 30
    make_run(datastore, status="success", created_at=timezone.now() - timedelta(days=31))
    assert apply_retention() == {"deleted": 1}
    datastores.datastore_delete(user=admin, datastore=store)
    teams.team_delete(actor=admin, team=team)

    recorded = set(AuditEvent.objects.values_list("action", flat=True))
    assert recorded == set(AuditAction.values)
    assert set(AuditEvent.objects.values_list("actor_name", flat=True)) == {
        "admin", "bob", "alice", "System"
    }

    assert (last("team.changed").before, last("team.changed").after) == (
        {"name": "Analysts", "level": "Viewer"}, {"name": "Analysts", "level": "Editor"})
    assert last("team.member_added").after == {"member": "alice"}
    assert last("team.member_removed").before == {"member": "alice"}
    granted = AuditEvent.objects.filter(action="datastore.granted", object_name="warehouse")
    assert granted.get().after == {"team": "Analysts", "level": "Editor"}
    assert last("user.role_changed").before == {"role": "member"}
    assert last("user.role_changed").after == {"role": "manager"}
    assert last("user.deactivated").after["tokens_revoked"] == 0  # revoked just before
    assert last("token.created").actor_name == "bob"
    assert last("token.revoked").before["owner"] == "bob"
    changed = last("datastore.changed")
    assert changed.before["name"] == "sales" and changed.after["name"] == "sales-eu"
    assert (changed.before["enrichment_prefix"], changed.after["enrichment_prefix"]) == (
        "assay", "eu")
    assert last("datastore.revoked").before == {"team": "Analysts", "level": "Editor"}
    assert last("datastore.deleted").before["name"] == "sales-eu"
    assert last("schedule.changed").before["cron"] == "0 2 * * *"
    assert last("schedule.changed").after["cron"] == "30 3 * * *"
    assert last("schedule.deleted").before["name"] == "nightly"
    assert last("run.deleted").object_name == f"#{run.pk} Scan"
    assert last("run.deleted").before["status"] == "success"
    assert last("team.deleted").before["name"] == "Analysts"


def test_a_refused_change_records_nothing(admin, editor, datastore):
    with pytest.raises(teams.TeamPermissionDenied):
        teams.team_create(actor=editor, name="Mine", level=Level.EDITOR)
    with pytest.raises(users.PermissionDenied):
        users.user_create(actor=editor, username="eve")
    with pytest.raises(users.InvalidInput):
        users.user_deactivate(actor=admin, user=admin)
    assert not AuditEvent.objects.exists()


# -- the page ---------------------------------------------------------------------------------
def test_only_admins_see_the_audit_log(client, admin, editor):
    assert client.get("/audit/").status_code == 302
    assert client_for(editor).get("/audit/").status_code == 403
    assert client_for(editor).get("/audit/export.csv").status_code == 403
    assert "/audit/" not in client_for(editor).get("/activity/").content.decode()
    assert "/audit/" in client_for(admin).get("/activity/").content.decode()


def test_filters_paging_and_csv_export(admin, datastore):
    team = teams.team_create(actor=admin, name="Ops", level=Level.VIEWER)
    carol = UserFactory(username="carol", role=Role.ADMIN)
    teams.team_update(actor=carol, team=team, name="Ops", level=Level.AUTHOR)
    for i in range(3):
        teams.team_create(actor=admin, name=f"=cmd|{i}", level=Level.VIEWER)
    client = client_for(admin)

    page = client.get("/audit/", {"action": "team.changed"}).content.decode()
    assert "Team changed" in page and "carol" in page and "level: Author" in page
    assert "Team created" not in page.split("<tbody>")[1]

    page = client.get("/audit/", {"actor": "carol"}).content.decode()
    assert page.count('<tr id="event-') == 1

    first = client.get("/audit/", {"object": "cmd"}).content.decode()
    assert first.count('<tr id="event-') == 3

    response = client.get("/audit/export.csv", {"action": "team.created"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["id", "at", "action", "actor"]
    assert len(rows) == 1 + 4 and {row[2] for row in rows[1:]} == {"team.created"}
    # A name that a spreadsheet would run as a formula is neutralised.
    assert all(row[6].startswith("'=cmd") for row in rows[1:] if "cmd" in row[6])

    bad = client.get("/audit/", {"after": "not-a-date", "action": "nope"})
    assert bad.status_code == 400 and "Enter a valid date" in bad.content.decode()
    assert client.get("/audit/export.csv", {"after": "x"}).status_code == 400


def test_audit_pages_page_by_fifty(admin):
    for i in range(55):
        record(admin, AuditAction.TEAM_CREATED, None, None, {"i": i}, object_type="team",
               object_name=f"t{i}")
    client = client_for(admin)
    first = client.get("/audit/").content.decode()
    assert first.count('<tr id="event-') == 50 and ">t54 " in first
    cursor = AuditEvent.objects.order_by("id")[5].pk
    assert f"cursor={cursor}" in first
    second = client.get("/audit/", {"cursor": cursor}).content.decode()
    assert second.count('<tr id="event-') == 5 and ">t0 " in second and ">t54 " not in second


def test_team_changes_from_the_team_pages_are_audited(admin, datastore):
    client = client_for(admin)
    client.post("/teams/", {"name": "Pages", "level": Level.VIEWER})
    team = Team.objects.get(name="Pages")
    client.post(f"/teams/{team.pk}/datastores/", {"datastores": [datastore.pk]})
    event = last("datastore.granted")
    assert (event.actor_name, event.object_name, event.after["team"]) == (
        "admin", "warehouse", "Pages")
