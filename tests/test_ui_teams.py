"""Teams pages (admins only) and the team services behind them."""

import pytest

from accounts import services
from accounts.models import Level, Team
from accounts.permissions import datastore_level
from tests.factories import DatastoreFactory, UserFactory
from tests.ui_support import client_for, csrf_token

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def test_only_admins_reach_teams(client, admin, editor, viewer):
    assert client.get("/teams/").status_code == 302  # anonymous: to the login page
    for user in (editor, viewer):
        assert client_for(user).get("/teams/").status_code == 403
        assert client_for(user).post("/teams/", {"name": "x", "level": 50}).status_code == 403
        assert "/teams/" not in client_for(user).get("/activity/").content.decode()
    assert "/teams/" in client_for(admin).get("/activity/").content.decode()
    assert not Team.objects.filter(name="x").exists()


def test_admin_manages_a_team_end_to_end(admin, datastore):
    alice = UserFactory(username="alice")
    client = client_for(admin, csrf=True)
    assert datastore_level(alice, datastore.pk) is None

    token = csrf_token(client, "/teams/")
    assert client.post("/teams/", {"name": "Analysts", "level": Level.VIEWER}).status_code == 403
    response = client.post("/teams/", {"name": "Analysts", "level": Level.VIEWER,
                                       "csrfmiddlewaretoken": token})
    team = Team.objects.get(name="Analysts")
    assert response.status_code == 302 and response["Location"] == f"/teams/{team.pk}/"

    page = client.get(f"/teams/{team.pk}/").content.decode()
    assert 'value="alice"' not in page and ">alice<" in page  # offered in the member picker
    client.post(f"/teams/{team.pk}/members/", {"user": alice.pk, "csrfmiddlewaretoken": token})
    client.post(f"/teams/{team.pk}/datastores/",
                {"datastores": [datastore.pk], "csrfmiddlewaretoken": token})
    assert datastore_level(alice, datastore.pk) == Level.VIEWER

    client.post(f"/teams/{team.pk}/", {"name": "Editors of warehouse", "level": Level.EDITOR,
                                       "csrfmiddlewaretoken": token})
    team.refresh_from_db()
    assert (team.name, team.level) == ("Editors of warehouse", Level.EDITOR)
    assert datastore_level(alice, datastore.pk) == Level.EDITOR
    listing = client.get("/teams/").content.decode()
    assert "Editors of warehouse" in listing and "Editor" in listing

    client.post(f"/teams/{team.pk}/members/{alice.pk}/remove/", {"csrfmiddlewaretoken": token})
    assert datastore_level(alice, datastore.pk) is None
    client.post(f"/teams/{team.pk}/datastores/", {"csrfmiddlewaretoken": token})
    assert not team.datastores.exists()

    response = client.post(f"/teams/{team.pk}/delete/", {"csrfmiddlewaretoken": token})
    assert response["Location"] == "/teams/"
    assert not Team.objects.filter(pk=team.pk).exists()


def test_duplicate_and_empty_names_are_form_errors(admin):
    Team.objects.create(name="Ops")
    client = client_for(admin)
    response = client.post("/teams/", {"name": "Ops", "level": Level.EDITOR})
    assert response.status_code == 422
    assert "A team named &#x27;Ops&#x27; already exists." in response.content.decode()
    response = client.post("/teams/", {"name": "  ", "level": Level.EDITOR})
    assert response.status_code == 422
    response = client.post("/teams/", {"name": "Ops2", "level": 99})
    assert response.status_code == 422
    assert Team.objects.filter(name__startswith="Ops").count() == 1


def test_public_team_cannot_be_renamed_deleted_or_joined(admin, public_team, datastore):
    client = client_for(admin)
    page = client.get(f"/teams/{public_team.pk}/").content.decode()
    assert "cannot be renamed or deleted" in page and "Delete team" not in page

    response = client.post(f"/teams/{public_team.pk}/", {"name": "Everyone", "level": 10})
    assert response.status_code == 422
    assert "The Public team cannot be renamed." in response.content.decode()
    public_team.refresh_from_db()
    assert public_team.name == "Public"

    client.post(f"/teams/{public_team.pk}/", {"name": "Public", "level": Level.REPORTER})
    public_team.refresh_from_db()
    assert public_team.level == Level.REPORTER  # the level may change

    response = client.post(f"/teams/{public_team.pk}/delete/", follow=True)
    assert "The Public team cannot be deleted." in response.content.decode()
    assert Team.objects.filter(pk=public_team.pk).exists()

    bob = UserFactory(username="bob")
    response = client.post(f"/teams/{public_team.pk}/members/", {"user": bob.pk}, follow=True)
    assert not public_team.members.filter(pk=bob.pk).exists()


def test_services_refuse_non_admins_and_public_changes(editor, admin, public_team):
    with pytest.raises(services.TeamPermissionDenied):
        services.team_create(actor=editor, name="Mine", level=Level.EDITOR)
    with pytest.raises(services.TeamError, match="cannot be deleted"):
        services.team_delete(actor=admin, team=public_team)
    with pytest.raises(services.TeamError, match="cannot be renamed"):
        services.team_update(actor=admin, team=public_team, name="All", level=Level.VIEWER)
    with pytest.raises(services.TeamError, match="Unknown permission level"):
        services.team_create(actor=admin, name="Odd", level=7)
    store = DatastoreFactory(name="lake")
    services.team_set_datastores(actor=admin, team=public_team, datastores=[store])
    assert list(public_team.datastores.all()) == [store]
