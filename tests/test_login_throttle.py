"""Failed logins are throttled on every login form (django-axes): after N failures from one
address for one user name, even the right password is refused until the window has passed."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessAttemptExpiration
from django.conf import settings
from django.db.models import F
from django.test import Client

from accounts.models import Role
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

PASSWORD = "pw-for-tests-1"  # tests.factories.UserFactory
LOGIN_PAGE = "/login/"
ADMIN_LOGIN = "/admin/login/"


def attempt(client: Client, path: str, username: str, password: str):
    return client.post(path, {"username": username, "password": password, "next": "/"})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_the_login_page_locks_after_n_failures_even_for_the_right_password():
    UserFactory(username="ada")
    limit = settings.AXES_FAILURE_LIMIT
    client = Client()
    for _ in range(limit - 1):
        response = attempt(client, LOGIN_PAGE, "ada", "wrong")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
    assert attempt(client, LOGIN_PAGE, "ada", "wrong").status_code == 429  # the Nth
    response = attempt(client, LOGIN_PAGE, "ada", PASSWORD)  # the N+1th: right, refused
    assert response.status_code == 429
    assert "Too many failed logins for ada" in response.content.decode()
    assert not logged_in(client)
    # Another user from the same address is not locked out by ada's failures.
    UserFactory(username="bob")
    assert attempt(Client(), LOGIN_PAGE, "bob", PASSWORD).status_code == 302


def test_the_lock_ends_with_the_window():
    UserFactory(username="ada")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, LOGIN_PAGE, "ada", "wrong")
    assert attempt(client, LOGIN_PAGE, "ada", PASSWORD).status_code == 429
    # The window passes: the failures are older than LOGIN_LOCKOUT_MINUTES.
    later = settings.AXES_COOLOFF_TIME + timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - later)
    AccessAttemptExpiration.objects.update(expires_at=F("expires_at") - later)
    response = attempt(client, LOGIN_PAGE, "ada", PASSWORD)
    assert response.status_code == 302 and logged_in(client)


def test_the_django_admin_is_not_mounted_unless_configured():
    admin = UserFactory(username="root", role=Role.ADMIN, is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    assert client.get("/admin/").status_code == 404
    assert client.get(ADMIN_LOGIN).status_code == 404


@pytest.mark.urls("tests.urls_with_admin")
def test_the_admin_login_form_is_throttled_too_and_shares_the_count():
    UserFactory(username="root", role=Role.ADMIN, is_staff=True, is_superuser=True)
    limit = settings.AXES_FAILURE_LIMIT
    client = Client()
    assert client.get(ADMIN_LOGIN).status_code == 200  # mounted when configured
    # Failures on either form count together: an attacker gains nothing by switching.
    for index in range(limit - 1):
        path = LOGIN_PAGE if index % 2 else ADMIN_LOGIN
        assert attempt(client, path, "root", "wrong").status_code == 200
    assert attempt(client, ADMIN_LOGIN, "root", "wrong").status_code == 429
    for path in (ADMIN_LOGIN, LOGIN_PAGE):
        response = attempt(client, path, "root", PASSWORD)
        assert response.status_code == 429
        assert not logged_in(client)
