"""Users (admins), everyone's profile and API tokens: create, expire, revoke, deactivate."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from accounts import tokens, users
from accounts.models import ApiToken, Level, Role, User
from runs.models import Schedule
from runs.schedules import schedule_create
from tests.factories import TeamFactory, UserFactory
from tests.ui_support import client_for, csrf_token

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]
PASSWORD = "pw-for-tests-1"


def signed_in(username: str, password: str) -> Client | None:
    """A client signed in through the login form (as a browser would), or None if refused."""
    client = Client()
    response = client.post("/login/", {"username": username, "password": password})
    return client if response.status_code == 302 else None


def api(key: str):
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/runs")


# -- tokens -----------------------------------------------------------------------------------
def test_profile_creates_a_token_shown_once_then_revokes_it(editor):
    client = client_for(editor, csrf=True)
    token_field = csrf_token(client, "/account/")
    response = client.post("/account/", {"form": "token", "name": "nightly export",
                                         "csrfmiddlewaretoken": token_field})
    page = response.content.decode()
    key = re.search(r'id="new-key" type="text" readonly value="(assay_[^"]+)"', page).group(1)
    assert response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=editor, name="nightly export")
    assert token.key_hash == ApiToken.hash_key(key) and key not in token.key_hash
    assert api(key).status_code == 200

    again = client.get("/account/").content.decode()
    assert key not in again and token.prefix in again and "nightly export" in again
    assert "Active" in again

    client.post(f"/account/tokens/{token.pk}/revoke/", {"csrfmiddlewaretoken": token_field})
    response = api(key)
    assert response.status_code == 401
    assert response.json() == {
        "detail": f"This API token ({token.prefix}…) was revoked; create a new one.",
        "code": "token_refused",
    }
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Revoked" in client.get("/account/").content.decode()


def test_an_expired_token_gets_401_saying_so(editor):
    token, key = tokens.token_create(actor=editor, user=editor, name="short",
                                     expires_at=timezone.now() + timedelta(days=1))
    assert api(key).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api(key)
    assert response.status_code == 401 and "expired on" in response.json()["detail"]
    # An unknown key still gets the generic answer: nothing to say about it.
    unknown = api("assay_nonsense")
    assert unknown.status_code == 401 and "Missing or invalid" in unknown.json()["detail"]


def test_token_form_refuses_bad_input(editor):
    client = client_for(editor)
    response = client.post("/account/", {"form": "token", "name": "  "})
    assert response.status_code == 422 and "This field is required" in response.content.decode()
    response = client.post("/account/", {"form": "token", "name": "old",
                                         "expires_on": "2001-01-01"})
    assert response.status_code == 422 and "must be in the future" in response.content.decode()
    response = client.post("/account/", {"form": "token", "name": "x", "expires_on": "soon"})
    assert response.status_code == 422
    assert client.post("/account/", {"form": "other"}).status_code == 400
    assert not ApiToken.objects.filter(user=editor).exists()


def test_tokens_of_others_are_404_except_for_admins(admin, editor, viewer):
    token, key = tokens.token_create(actor=editor, user=editor, name="mine")
    assert client_for(viewer).post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    assert api(key).status_code == 200
    page = client_for(admin).get(f"/users/{editor.pk}/").content.decode()
    assert "mine" in page and token.prefix in page
    response = client_for(admin).post(f"/account/tokens/{token.pk}/revoke/")
    assert response["Location"] == f"/users/{editor.pk}/"
    assert api(key).status_code == 401
    token.refresh_from_db()
    assert token.revoked_by == admin
    with pytest.raises(tokens.InvalidInput):
        tokens.token_create(actor=admin, user=editor, name="for you")


def test_password_change_on_the_profile(editor):
    client = signed_in("editor", PASSWORD)
    response = client.post("/account/", {"form": "password", "old_password": "wrong",
                                         "new_password1": "x", "new_password2": "x"})
    assert response.status_code == 422
    assert "Your old password was entered incorrectly" in response.content.decode()
    response = client.post("/account/", {
        "form": "password", "old_password": PASSWORD,
        "new_password1": "a-much-longer-pass-42", "new_password2": "a-much-longer-pass-42",
    })
    assert response.status_code == 302
    assert client.get("/account/").status_code == 200  # the session survives its own change
    assert signed_in("editor", "a-much-longer-pass-42")


# -- users ------------------------------------------------------------------------------------
def test_only_admins_manage_users(client, editor, viewer):
    assert client.get("/users/").status_code == 302
    for user in (editor, viewer):
        c = client_for(user)
        assert c.get("/users/").status_code == 403
        assert c.post("/users/", {"username": "x", "role": "admin"}).status_code == 403
        assert c.post(f"/users/{viewer.pk}/role/", {"role": "admin"}).status_code == 403
        assert c.post(f"/users/{viewer.pk}/deactivate/").status_code == 403
    assert not User.objects.filter(username="x").exists()
    viewer.refresh_from_db()
    assert viewer.role == Role.MEMBER and viewer.is_active


def test_admin_creates_a_user_with_a_one_time_link(admin):
    client = client_for(admin)
    response = client.post("/users/", {"username": "dora", "role": "manager"})
    page = response.content.decode()
    link = re.search(r'id="set-password-link" type="text" readonly value="([^"]+)"', page)
    dora = User.objects.get(username="dora")
    assert dora.role == Role.MANAGER and not dora.has_usable_password()
    path = link.group(1).removeprefix("http://testserver")
    anonymous = Client()
    form = anonymous.get(path, follow=True)
    assert "Set your password" in form.content.decode()
    response = anonymous.post(form.redirect_chain[-1][0], {
        "new_password1": "dora-chose-this-9", "new_password2": "dora-chose-this-9"})
    assert response.status_code == 302
    assert signed_in("dora", "dora-chose-this-9")
    # The link worked once.
    assert "no longer valid" in Client().get(path, follow=True).content.decode()

    listing = client.get("/users/").content.decode()
    assert "dora" in listing and "Manager" in listing


def test_user_form_errors(admin):
    client = client_for(admin)
    UserFactory(username="taken")
    for data, message in [
        ({"username": "taken", "role": "member"}, "already exists"),
        ({"username": "bad name!", "role": "member"}, "Enter a valid username"),
        ({"username": "ok", "role": "emperor"}, "Select a valid choice"),
        ({"username": "ok2", "role": "member", "password": "123"}, "too short"),
    ]:
        response = client.post("/users/", data)
        assert response.status_code == 422 and message in response.content.decode(), data
    assert not User.objects.filter(username__in=["ok", "ok2"]).exists()


def test_role_change_and_the_last_admin(admin):
    # Admins of other tests' module-wide data must not count as the remaining one.
    User.objects.filter(role=Role.ADMIN).exclude(pk=admin.pk).update(is_active=False)
    client = client_for(admin)
    bob = UserFactory(username="bob")
    client.post(f"/users/{bob.pk}/role/", {"role": "admin"})
    bob.refresh_from_db()
    assert bob.role == Role.ADMIN
    client.post(f"/users/{bob.pk}/deactivate/")
    response = client.post(f"/users/{admin.pk}/role/", {"role": "member"}, follow=True)
    assert "at least one active admin" in response.content.decode()
    admin.refresh_from_db()
    assert admin.role == Role.ADMIN
    assert client.post(f"/users/{bob.pk}/role/", {"role": "x"}).status_code == 302
    assert client.post(f"/users/{bob.pk}/explode/").status_code == 404
    assert client.post("/users/999999/deactivate/").status_code == 404


def test_deactivation_ends_sessions_tokens_and_schedules_at_once(admin, editor, datastore):
    session = signed_in("editor", PASSWORD)
    assert session.get("/activity/").status_code == 200
    _, key = tokens.token_create(actor=editor, user=editor, name="ci")
    schedule = schedule_create(user=editor, name="nightly", datastore=datastore,
                               operation="sync", cron="0 2 * * *")

    client_for(admin).post(f"/users/{editor.pk}/deactivate/")

    assert session.get("/activity/")["Location"].startswith("/login/")
    response = api(key)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_fire_at is None
    assert schedule.disabled_reason == "Its owner editor is deactivated."
    assert not signed_in("editor", PASSWORD)
    page = client_for(admin).get("/schedules/").content.decode()
    assert "Its owner editor is deactivated." in page

    client_for(admin).post(f"/users/{editor.pk}/reactivate/")
    assert signed_in("editor", PASSWORD)
    assert api(key).status_code == 401  # revoked tokens stay revoked
    assert not Schedule.objects.get(pk=schedule.pk).enabled


def test_effective_access_of_a_user_names_the_granting_team(admin, datastore, public_team):
    alice = UserFactory(username="alice")
    readers = TeamFactory(name="Readers", level=Level.VIEWER)
    writers = TeamFactory(name="Writers", level=Level.EDITOR)
    readers.members.add(alice)
    writers.members.add(alice)
    readers.datastores.add(datastore)
    writers.datastores.add(datastore)
    other = TeamFactory(name="Other", level=Level.REPORTER)
    from tests.factories import DatastoreFactory

    archive = DatastoreFactory(name="archive")
    public_team.datastores.add(archive)
    other.datastores.add(DatastoreFactory(name="secret"))
    page = client_for(admin).get(f"/users/{alice.pk}/").content.decode()
    section = page.split("Effective access")[1]
    assert re.search(r">warehouse</a></th><td>Editor</td><td>Writers</td>", section)
    assert re.search(r">archive</a></th><td>Viewer</td><td>Public</td>", section)
    assert "secret" not in section


# -- commands ---------------------------------------------------------------------------------
def test_create_admin_and_createsuperuser_make_assay_admins(monkeypatch, admin):
    monkeypatch.setenv("ASSAY_ADMIN_PASSWORD", "first-admin-pass-77")
    call_command("create_admin", "root", stderr=StringIO())
    root = User.objects.get(username="root")
    assert root.role == Role.ADMIN and root.check_password("first-admin-pass-77")
    assert client_for(root).get("/users/").status_code == 200

    out = StringIO()
    call_command("create_admin", "second", "--link", "--base-url", "https://assay.example",
                 stdout=out, stderr=StringIO())
    assert out.getvalue().startswith("https://assay.example/set-password/")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_admin", "root", stderr=StringIO())
    monkeypatch.setenv("ASSAY_ADMIN_PASSWORD", "short")
    with pytest.raises(CommandError, match="too short"):
        call_command("create_admin", "third", stderr=StringIO())

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "super-user-pass-88")
    call_command("createsuperuser", "--noinput", "--username", "boss", "--email", "b@x.io",
                 stdout=StringIO())
    assert User.objects.get(username="boss").role == Role.ADMIN


def test_create_api_token_command_with_expiry(editor):
    out = StringIO()
    call_command("create_api_token", "editor", "--expires-days", "7", stdout=out,
                 stderr=StringIO())
    token = ApiToken.objects.get(user=editor)
    assert timedelta(days=6) < token.expires_at - timezone.now() <= timedelta(days=7)
    with pytest.raises(CommandError, match="1 to 3650"):
        call_command("create_api_token", "editor", "--expires-days", "0")
    users.user_deactivate(actor=UserFactory(username="root", role=Role.ADMIN), user=editor)
    with pytest.raises(CommandError, match="deactivated"):
        call_command("create_api_token", "editor")


# -- hostile input and CSRF -------------------------------------------------------------------
def test_state_changes_need_the_csrf_token(admin, editor, datastore):
    token, key = tokens.token_create(actor=editor, user=editor, name="ci")
    schedule = schedule_create(user=admin, name="nightly", datastore=datastore,
                               operation="sync", cron="0 2 * * *")
    strict = client_for(admin, csrf=True)
    for url, data in [
        ("/users/", {"username": "mallory", "role": "admin", "password": "long-enough-pw-1"}),
        (f"/users/{editor.pk}/deactivate/", {}),
        (f"/users/{editor.pk}/role/", {"role": "admin"}),
        (f"/account/tokens/{token.pk}/revoke/", {}),
        (f"/schedules/{schedule.pk}/delete/", {}),
        (f"/datastores/{datastore.pk}/delete/", {}),
        (f"/datastores/{datastore.pk}/teams/", {}),
        ("/account/", {"form": "token", "name": "sneaky"}),
    ]:
        assert strict.post(url, data).status_code == 403, url
    editor.refresh_from_db()
    assert editor.is_active and editor.role == Role.MEMBER
    assert api(key).status_code == 200 and Schedule.objects.filter(pk=schedule.pk).exists()
    assert not User.objects.filter(username="mallory").exists()


def test_hostile_values_are_form_errors_not_500s(admin, editor):
    client = client_for(admin)
    response = client.post("/users/", {"username": "nul\x00", "role": "member"})
    assert response.status_code == 422 and "Null characters" in response.content.decode()
    response = client.post("/users/", {"username": "x" * 5000, "role": "member"})
    assert response.status_code == 422
    response = client_for(editor).post("/account/", {"form": "token", "name": "a\x00b"})
    assert response.status_code == 422
    for params in ({"cursor": "-1"}, {"cursor": "x"}, {"after": "2024-13-40"},
                   {"action": "\x00"}, {"actor": "y" * 500}):
        assert client.get("/audit/", params).status_code == 400, params
    preview = client.get("/schedules/preview/", {"cron": "\x00 * * * *" * 50})
    assert preview.status_code == 200 and "not a valid cron expression" in (
        preview.content.decode())
    assert client.get("/users/99999999999999999999/").status_code == 404
