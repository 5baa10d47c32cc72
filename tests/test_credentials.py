"""Datastore credentials: encrypted at rest, rotatable, write-only, never shown or logged."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import Level, Role
from datastores.credentials import CredentialsUnreadable
from datastores.models import Datastore
from datastores.services import datastore_create, datastore_test_connection, datastore_update
from datastores.url_policy import UNIFORM_REFUSAL
from runs.errors import NotFound, PermissionDenied
from runs.models import RunStatus
from tests.api_support import bearer
from tests.databases import run_now, throwaway_postgres_database
from tests.factories import TeamFactory, UserFactory
from tests.ui_support import client_for

SOURCE_PASSWORD = "Src-s3cret-7Qx"
ENRICHMENT_PASSWORD = "Enr-s3cret-9Kz"


def raw_rows() -> str:
    """The datastore table as the database holds it, every column as text."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM datastores_datastore")
        return repr(cursor.fetchall())


def raw_files() -> bytes:
    """SQLite: the bytes of the database file and its WAL (what a stolen disk would show)."""
    if connection.vendor != "sqlite":
        return b""
    path = Path(connection.settings_dict["NAME"])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def with_password(url: str, password: str) -> str:
    return url.replace("postgres@", f"postgres:{password}@")


@pytest.mark.both_backends
@pytest.mark.postgres_source
@pytest.mark.django_db(transaction=True)
def test_rotation_keeps_datastores_working_and_no_plaintext_is_stored(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    # Keep the suite's own key(s) readable: rows other tests committed may share the table.
    settings.CREDENTIAL_KEYS = [old, *settings.CREDENTIAL_KEYS]
    admin = UserFactory(username="root", role=Role.ADMIN)
    with throwaway_postgres_database() as source, throwaway_postgres_database() as enrichment:
        store = datastore_create(
            user=admin, name="warehouse", source_url=source, password=SOURCE_PASSWORD,
            enrichment_url=with_password(enrichment, ENRICHMENT_PASSWORD),
        )
        assert SOURCE_PASSWORD not in raw_rows() and ENRICHMENT_PASSWORD not in raw_rows()
        assert SOURCE_PASSWORD.encode() not in raw_files()
        assert "127.0.0.1" not in raw_rows()  # the whole URL is sealed, not only the password
        before = Datastore.objects.values_list(
            "source_url_encrypted", "enrichment_url_encrypted"
        ).get(pk=store.pk)

        # A new key in front, the old one still there; then every row re-encrypted.
        settings.CREDENTIAL_KEYS = [new, *settings.CREDENTIAL_KEYS]
        call_command("rotate_credentials", stdout=open("/dev/null", "w"))  # noqa: SIM115
        after = Datastore.objects.values_list(
            "source_url_encrypted", "enrichment_url_encrypted"
        ).get(pk=store.pk)
        assert after != before
        for token in after:
            Fernet(new.encode()).decrypt(token.encode())
            with pytest.raises(InvalidToken):
                Fernet(old.encode()).decrypt(token.encode())
        assert SOURCE_PASSWORD not in raw_rows() and ENRICHMENT_PASSWORD not in raw_rows()

        # The old key removed: the datastore still connects, with its password.
        settings.CREDENTIAL_KEYS = [new]
        store = Datastore.objects.get(pk=store.pk)
        assert f":{SOURCE_PASSWORD}@" in store.source_url
        assert f":{ENRICHMENT_PASSWORD}@" in store.enrichment_url
        assert datastore_test_connection(user=admin, datastore=store).startswith("Connected")
        run = run_now(admin, store, "sync")
        assert run.status == RunStatus.SUCCESS, run.error


@pytest.mark.django_db
def test_a_key_removed_before_rotating_is_a_clear_error(settings, tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIAL_KEYS = [old]
    (tmp_path / "s.sqlite3").touch()
    Datastore.objects.create(name="s", source_url=f"sqlite:///{tmp_path / 's.sqlite3'}")
    settings.CREDENTIAL_KEYS = [new]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_credentials")
    with pytest.raises(CredentialsUnreadable):
        Datastore.objects.get().source_url  # noqa: B018
    assert Datastore.objects.get().display_url == "(unreadable: see CREDENTIAL_KEYS)"


# -- never shown ---------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("given_as", ["url", "query", "field"])
def test_a_password_appears_in_no_page_answer_log_or_error(given_as, caplog, tmp_path):
    """Every surface a password could leak through, for admins, editors and viewers."""
    caplog.set_level(logging.INFO)
    secret = "Hunter2-l3ak"
    admin = UserFactory(username="root", role=Role.ADMIN)
    editor, viewer = UserFactory(username="ed"), UserFactory(username="vi")
    url = "postgresql+psycopg://reader@127.0.0.1:1/sales"  # nothing listens on port 1
    arguments = {"url": {"source_url": url.replace("reader@", f"reader:{secret}@")},
                 "query": {"source_url": f"{url}?password={secret}"},
                 "field": {"source_url": url, "password": secret}}[given_as]
    response = bearer(admin).post("/api/v1/datastores", {"name": "sales", **arguments},
                                  content_type="application/json")
    assert response.status_code == 201, response.content
    store = Datastore.objects.get(name="sales")
    assert f":{secret}@" in store.source_url  # kept, as the password of the URL
    for user, level in ((editor, Level.EDITOR), (viewer, Level.VIEWER)):
        team = TeamFactory(name=f"{user.username}-team", level=level)
        team.members.add(user)
        team.datastores.add(store)
    run = run_now(admin, store, "sync")  # fails: the connection is refused
    assert run.status == RunStatus.FAILURE and run.error == UNIFORM_REFUSAL

    answers = [response.content]
    for user in (admin, editor, viewer):
        api, web = bearer(user), client_for(user)
        answers += [
            api.get("/api/v1/datastores").content,
            api.get(f"/api/v1/datastores/{store.pk}").content,
            api.get(f"/api/v1/runs/{run.pk}").content,
            api.get(f"/api/v1/runs/{run.pk}/logs").content,
            b"".join(api.get(f"/api/v1/runs/{run.pk}/log.txt").streaming_content),
            web.get("/datastores/").content,
            web.get("/activity/").content,
            web.get(f"/activity/runs/{run.pk}/").content,
        ]
    web = client_for(admin)
    answers += [
        web.get(f"/datastores/{store.pk}/edit/").content,
        bearer(admin).post(f"/api/v1/datastores/{store.pk}/test-connection").content,
        bearer(admin).patch(f"/api/v1/datastores/{store.pk}", {"name": "sales2"},
                            content_type="application/json").content,
    ]
    everything = b"\n".join(answers).decode() + caplog.text
    assert secret not in everything
    assert "Connection refused" in caplog.text  # the detail is in the server log, redacted
    assert re.search(r"reader:\*\*\*@127\.0\.0\.1:1/sales", caplog.text)


# -- updates -------------------------------------------------------------------------------------
@pytest.fixture
def manager(db):
    user = UserFactory(username="manager", role=Role.MANAGER)
    TeamFactory(name="managers", level=Level.EDITOR).members.add(user)
    return user


@pytest.mark.django_db
def test_update_keeps_the_password_only_for_the_same_server(manager):
    store = datastore_create(
        user=manager, name="sales", source_url="postgresql+psycopg://reader@127.0.0.1:5432/a",
        password="first-pw", team_ids=[manager.teams.get().pk],
    )
    # Another database of the same server as the same user: the password stays.
    datastore_update(user=manager, datastore=store,
                     source_url="postgresql+psycopg://reader@127.0.0.1:5432/b")
    assert store.source_url == "postgresql+psycopg://reader:first-pw@127.0.0.1:5432/b"
    # A password alone: the URL stays, the password changes (rotation of the credentials).
    datastore_update(user=manager, datastore=store, password="second-pw")
    assert store.source_url == "postgresql+psycopg://reader:second-pw@127.0.0.1:5432/b"
    # Another host: the stored password must not travel to it.
    datastore_update(user=manager, datastore=store,
                     source_url="postgresql+psycopg://reader@localhost:5432/b")
    assert store.source_url == "postgresql+psycopg://reader@localhost:5432/b"
    datastore_update(user=manager, datastore=store, password="third-pw")
    datastore_update(user=manager, datastore=store, password="")
    assert store.source_url == "postgresql+psycopg://reader@localhost:5432/b"
    store.refresh_from_db()
    assert store.source_url == "postgresql+psycopg://reader@localhost:5432/b"


@pytest.mark.django_db
def test_enrichment_link_is_set_changed_and_removed(manager, tmp_path):
    (tmp_path / "source.sqlite3").touch()
    (tmp_path / "enrichment.sqlite3").touch()
    store = datastore_create(user=manager, name="s",
                             source_url=f"sqlite:///{tmp_path / 'source.sqlite3'}",
                             team_ids=[manager.teams.get().pk])
    datastore_update(user=manager, datastore=store,
                     enrichment_url=f"sqlite:///{tmp_path / 'enrichment.sqlite3'}")
    assert Datastore.objects.get().enrichment_url.endswith("enrichment.sqlite3")
    datastore_update(user=manager, datastore=store, enrichment_url="")
    assert Datastore.objects.get().enrichment_url == ""


@pytest.mark.django_db
def test_who_may_update(manager, tmp_path):
    (tmp_path / "s.sqlite3").touch()
    store = Datastore.objects.create(name="s", source_url=f"sqlite:///{tmp_path / 's.sqlite3'}")
    editor = UserFactory(username="ed")  # an Editor, but not a manager
    team = TeamFactory(name="eds", level=Level.EDITOR)
    team.members.add(editor)
    team.datastores.add(store)
    with pytest.raises(NotFound):
        datastore_update(user=manager, datastore=store, name="x")  # cannot even see it
    with pytest.raises(PermissionDenied):
        datastore_update(user=editor, datastore=store, name="x")
    viewing = TeamFactory(name="viewers", level=Level.VIEWER)
    viewing.members.add(manager)
    viewing.datastores.add(store)
    with pytest.raises(PermissionDenied):
        datastore_update(user=manager, datastore=store, name="x")  # a Viewer of it
    team.members.add(manager)
    datastore_update(user=manager, datastore=store, name="renamed")
    assert Datastore.objects.get().name == "renamed"
    assert bearer(editor).patch(f"/api/v1/datastores/{store.pk}", {"name": "y"},
                                content_type="application/json").status_code == 403
    assert client_for(editor).get(f"/datastores/{store.pk}/edit/").status_code == 403
    outsider = UserFactory(username="out", role=Role.MANAGER)
    assert client_for(outsider).get(f"/datastores/{store.pk}/edit/").status_code == 404
    assert bearer(outsider).patch(f"/api/v1/datastores/{store.pk}", {"name": "y"},
                                  content_type="application/json").status_code == 404
