"""A manager attacks with datastore URLs; Assay refuses, uniformly, touching nothing.

Each refused form goes through the API and the browser form, as a source and as an enrichment
URL, on create and on update. What must hold every time: the same words for every refusal (no
oracle for files or ports), no datastore saved, no file created, no connection opened. What
"no connection opened" rests on: Python's audit hooks, which report every ``sqlite3.connect``
and ``socket.connect`` this process makes, a wrapper recording every ``duckdb.connect`` (DuckDB
raises no audit event), and a real listening socket that would see a connection from any
process.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from django.db import connection

from accounts.models import Level, Role
from datastores.demo_source import generate_demo_source
from datastores.models import Datastore
from datastores.url_policy import UNIFORM_REFUSAL
from runs.models import RunStatus
from tests.api_support import bearer
from tests.databases import run_now
from tests.factories import TeamFactory, UserFactory
from tests.ui_support import client_for, csrf_token

pytestmark = [pytest.mark.django_db]


# -- observing connections -----------------------------------------------------------------------
class Connections:
    """Every database file and socket this process connects to while ``watching``."""

    def __init__(self):
        self.seen: list[tuple[str, object]] = []
        self.active = False
        sys.addaudithook(self._hook)  # for the life of the process; idle unless watching

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event in ("sqlite3.connect", "socket.connect"):
            # Only connections to a datastore count: Django reconnecting to its own database
            # between requests is not the attack.
            frames = [frame.filename for frame in traceback.extract_stack(limit=60)]
            if any(DATASTORE_CODE.search(name) for name in frames):
                self.seen.append((event, args[-1]))

    @contextmanager
    def watching(self):
        self.seen, self.active = [], True
        real_connect = duckdb.connect

        def recording_connect(database=":memory:", *args, **kwargs):
            self.seen.append(("duckdb.connect", database))
            return real_connect(database, *args, **kwargs)

        duckdb.connect = recording_connect
        try:
            yield self.seen
        finally:
            duckdb.connect = real_connect
            self.active = False


DATASTORE_CODE = re.compile(r"[/\\](sqlalchemy|datastores)[/\\]")
CONNECTIONS = Connections()


class Listener:
    """A TCP port that records whether anyone connected to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


# -- the scene ---------------------------------------------------------------------------------
@pytest.fixture
def scene(tmp_path, settings):
    """Allowed folder ``sources/`` (with a real database), a forbidden ``outside/``, symlinks
    planted inside the allowed folder, a denied loopback network with a listener on it."""
    sources, outside = tmp_path / "sources", tmp_path / "outside"
    sources.mkdir()
    outside.mkdir()
    generate_demo_source(f"sqlite:///{sources / 'shop.sqlite3'}", rows=30)
    sqlite3_file(sources / "enrichment.sqlite3")
    sqlite3_file(outside / "data.sqlite3")
    duckdb.connect(str(sources / "shop.duckdb")).close()
    duckdb.connect(str(outside / "data.duckdb")).close()
    listener = Listener()
    settings.DATASTORE_FILE_DIRS = [str(sources)]
    settings.DATASTORE_DENIED_HOSTS = ["127.0.0.0/8", "::1/128"]
    own = Path(connection.settings_dict["NAME"]) if connection.vendor == "sqlite" else None
    if own is not None:
        (sources / "own-link.sqlite3").symlink_to(own)
    (sources / "outside-link.sqlite3").symlink_to(outside / "data.sqlite3")
    (sources / "outside-link.duckdb").symlink_to(outside / "data.duckdb")
    (sources / "outside-dir").symlink_to(outside, target_is_directory=True)
    yield {"sources": sources, "outside": outside, "own": own, "listener": listener}
    listener.close()


def sqlite3_file(path: Path) -> None:
    sa.create_engine(f"sqlite:///{path}").connect().close()


@pytest.fixture
def manager(db):
    user = UserFactory(username="manager", role=Role.MANAGER)
    TeamFactory(name="managers", level=Level.EDITOR).members.add(user)
    return user


def refused_urls(scene) -> dict[str, str]:
    sources, outside, port = scene["sources"], scene["outside"], scene["listener"].port
    urls = {
        "uri mode creating a file": (
            f"sqlite:///file:{outside / 'created.sqlite3'}?mode=rwc&uri=true"
        ),
        "uri filename in the allowed folder": f"sqlite:///file:{sources / 'shop.sqlite3'}",
        "query option": f"sqlite:///{sources / 'shop.sqlite3'}?mode=ro",
        "outside the folders": f"sqlite:///{outside / 'data.sqlite3'}",
        "dot-dot out of the folder": f"sqlite:///{sources}/../outside/data.sqlite3",
        "percent-encoded dot-dot": f"sqlite:///{sources}/%2e%2e/outside/data.sqlite3",
        "symlinked file": f"sqlite:///{sources / 'outside-link.sqlite3'}",
        "symlinked folder": f"sqlite:///{sources / 'outside-dir' / 'data.sqlite3'}",
        "missing file (would be created)": f"sqlite:///{sources / 'new.sqlite3'}",
        "relative path": "sqlite:///shop.sqlite3",
        "in memory": "sqlite://",
        "denied host": f"postgresql+psycopg://u:pw@127.0.0.1:{port}/db",
        "denied host by name": f"postgresql+psycopg://u:pw@localhost:{port}/db",
        "denied host, short form": f"postgresql+psycopg://u:pw@127.1:{port}/db",
        "denied host, IPv4-mapped IPv6": f"postgresql+psycopg://u:pw@[::ffff:127.0.0.1]:{port}/db",
        "unspecified address": f"postgresql+psycopg://u:pw@0.0.0.0:{port}/db",
        "local socket": "postgresql+psycopg://u@/db?host=/var/run/postgresql",
        "host in an option": f"postgresql+psycopg://u@example.org/db?host=127.0.0.1&port={port}",
        "several hosts": f"postgresql+psycopg://u@127.0.0.1:{port},127.0.0.2:{port}/db",
        "driver not allowed": f"postgresql+pg8000://u:pw@127.0.0.1:{port}/db",
        "not a URL": "not a url",
        "duckdb in memory": "duckdb:///:memory:",
        "duckdb without a database": "duckdb://",
        "duckdb motherduck": "duckdb:///md:shop",
        "duckdb remote file": "duckdb:///s3://bucket/shop.duckdb",
        "duckdb relative path": "duckdb:///shop.duckdb",
        "duckdb outside the folders": f"duckdb:///{outside / 'data.duckdb'}",
        "duckdb symlinked file": f"duckdb:///{sources / 'outside-link.duckdb'}",
        "duckdb missing file (would be created)": f"duckdb:///{sources / 'new.duckdb'}",
        "duckdb external access on": (
            f"duckdb:///{sources / 'shop.duckdb'}?enable_external_access=true"
        ),
        "duckdb unsigned extensions": (
            f"duckdb:///{sources / 'shop.duckdb'}?allow_unsigned_extensions=true"
        ),
        "duckdb extension preload": (
            f"duckdb:///{sources / 'shop.duckdb'}?preload_extensions=httpfs"
        ),
        "duckdb motherduck token": f"duckdb:///{sources / 'shop.duckdb'}?motherduck_token=pw",
        "duckdb access mode": f"duckdb:///{sources / 'shop.duckdb'}?access_mode=read_write",
    }
    if scene["own"] is not None:
        own = scene["own"]
        urls.update({
            "own database": f"sqlite:///{own}",
            "own database, dot-dot": f"sqlite:///{sources}/{'../' * 12}{str(own).lstrip('/')}",
            "own database, symlink": f"sqlite:///{sources / 'own-link.sqlite3'}",
            "own database, uri": f"sqlite:///file:{own}?mode=ro&uri=true",
            "own database, its WAL": f"sqlite:///{own}-wal",
        })
    return urls


def disk(scene) -> set[str]:
    return {
        str(path) for folder in (scene["sources"], scene["outside"]) for path in folder.rglob("*")
    }


@contextmanager
def nothing_touched(scene):
    """Nothing saved, no file created, no connection made by this process or any other."""
    before, datastores = disk(scene), Datastore.objects.count()
    with CONNECTIONS.watching() as seen:
        yield
    assert seen == []
    assert disk(scene) == before
    assert not (scene["outside"] / "created.sqlite3").exists()
    assert Datastore.objects.count() == datastores
    assert scene["listener"].accepted == 0


ATTACKS = [
    "uri mode creating a file", "uri filename in the allowed folder", "query option",
    "outside the folders", "dot-dot out of the folder", "percent-encoded dot-dot",
    "symlinked file", "symlinked folder", "missing file (would be created)", "relative path",
    "in memory", "denied host", "denied host by name", "denied host, short form",
    "denied host, IPv4-mapped IPv6", "unspecified address", "local socket",
    "host in an option", "several hosts", "driver not allowed", "not a URL",
    "duckdb in memory", "duckdb without a database", "duckdb motherduck", "duckdb remote file",
    "duckdb relative path", "duckdb outside the folders", "duckdb symlinked file",
    "duckdb missing file (would be created)", "duckdb external access on",
    "duckdb unsigned extensions", "duckdb extension preload", "duckdb motherduck token",
    "duckdb access mode",
]
OWN_DATABASE = [
    "own database", "own database, dot-dot", "own database, symlink", "own database, uri",
    "own database, its WAL",
]


# -- through the API ---------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["source_url", "enrichment_url"])
@pytest.mark.parametrize("attack", ATTACKS + OWN_DATABASE)
def test_api_refuses_each_url_uniformly_and_touches_nothing(scene, manager, attack, field):
    url = refused_urls(scene)[attack]
    body = {"name": "loot", "source_url": f"sqlite:///{scene['sources'] / 'shop.sqlite3'}"}
    body[field] = url
    client = bearer(manager)
    with nothing_touched(scene):
        response = client.post("/api/v1/datastores", body, content_type="application/json")
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == {field: [UNIFORM_REFUSAL]}
    assert b"pw" not in response.content


@pytest.mark.parametrize("attack", ATTACKS + OWN_DATABASE)
def test_api_update_refuses_each_url_and_keeps_the_old_one(scene, manager, attack):
    good = f"sqlite:///{scene['sources'] / 'shop.sqlite3'}"
    created = bearer(manager).post(
        "/api/v1/datastores", {"name": "shop", "source_url": good, "teams": [
            manager.teams.get().pk]}, content_type="application/json",
    )
    assert created.status_code == 201, created.content
    store_id = created.json()["id"]
    with nothing_touched(scene):
        response = bearer(manager).patch(
            f"/api/v1/datastores/{store_id}", {"source_url": refused_urls(scene)[attack]},
            content_type="application/json",
        )
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == {"source_url": [UNIFORM_REFUSAL]}
    assert Datastore.objects.get(pk=store_id).source_url == good


# -- through the browser form ------------------------------------------------------------------
@pytest.mark.parametrize("attack", ATTACKS + OWN_DATABASE)
def test_form_refuses_each_url_uniformly_and_touches_nothing(scene, manager, attack):
    client = client_for(manager, csrf=True)
    token = csrf_token(client, "/datastores/new/")
    data = {
        "csrfmiddlewaretoken": token, "name": "loot", "source_url": refused_urls(scene)[attack],
        "enrichment_prefix": "assay",
    }
    with nothing_touched(scene):
        response = client.post("/datastores/new/", data)
    assert response.status_code == 422
    html = response.content.decode()
    assert html.count(UNIFORM_REFUSAL) == 1
    assert "u:pw@" not in html  # the URL typed is shown back without its password


@pytest.mark.parametrize("attack", ["outside the folders", "symlinked file", "denied host",
                                    "uri mode creating a file"])
def test_edit_form_refuses_enrichment_urls_too(scene, manager, attack):
    good = f"sqlite:///{scene['sources'] / 'shop.sqlite3'}"
    store = Datastore.objects.create(name="shop", source_url=good)
    store.teams.add(manager.teams.get())
    client = client_for(manager, csrf=True)
    url = f"/datastores/{store.pk}/edit/"
    data = {
        "csrfmiddlewaretoken": csrf_token(client, url), "name": "shop", "source_url": good,
        "enrichment_url": refused_urls(scene)[attack], "enrichment_prefix": "assay",
    }
    with nothing_touched(scene):
        response = client.post(url, data)
    assert response.status_code == 422
    assert UNIFORM_REFUSAL in response.content.decode()
    store.refresh_from_db()
    assert store.enrichment_url == ""


# -- who sees why --------------------------------------------------------------------------------
@pytest.mark.parametrize(("attack", "reason"), [
    ("outside the folders", "is outside the folders"),
    ("symlinked file", "is outside the folders"),
    ("uri mode creating a file", "URL options are not allowed"),
    ("denied host", "in DATASTORE_DENIED_HOSTS"),
    ("missing file (would be created)", "does not exist"),
    ("duckdb external access on", "URL options are not allowed"),
    ("duckdb in memory", "names no database file"),
])
def test_admins_see_the_reason_managers_do_not(scene, manager, attack, reason):
    url = refused_urls(scene)[attack]
    admin = UserFactory(username="root", role=Role.ADMIN)
    answers = {}
    for user in (manager, admin):
        response = bearer(user).post(
            "/api/v1/datastores", {"name": "x", "source_url": url},
            content_type="application/json",
        )
        assert response.status_code == 422
        answers[user.role] = response.json()["errors"]["source_url"][0]
    assert answers[Role.MANAGER] == UNIFORM_REFUSAL
    assert reason in answers[Role.ADMIN]
    assert "pw" not in answers[Role.ADMIN]


def test_failed_connections_answer_managers_uniformly(scene, manager, settings):
    """Allowed by the policy, yet not a database (a closed port, a file that is no database):
    the manager's answer is the same as for a refusal; the admin's says what happened."""
    settings.DATASTORE_DENIED_HOSTS = []
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    (scene["sources"] / "notes.sqlite3").write_text("not a database")
    admin = UserFactory(username="root", role=Role.ADMIN)
    for url, reason in [
        (f"postgresql+psycopg://u:pw@127.0.0.1:{closed_port}/db", "refused"),
        (f"sqlite:///{scene['sources'] / 'notes.sqlite3'}", "not a database"),
    ]:
        store = Datastore.objects.create(name=f"s{closed_port}{len(url)}", source_url=url)
        store.teams.add(manager.teams.get())
        path = f"/api/v1/datastores/{store.pk}/test-connection"
        as_manager = bearer(manager).post(path)
        assert as_manager.status_code == 422
        assert as_manager.json()["errors"] == {"source_url": [UNIFORM_REFUSAL]}
        as_admin = bearer(admin).post(path).json()["errors"]["source_url"][0]
        assert reason in as_admin and "pw" not in as_admin


# -- at run time ---------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)  # the Run executes here, as in a worker
@pytest.mark.parametrize("attack", ["denied host", "outside the folders", "symlinked file",
                                    "uri mode creating a file", "duckdb outside the folders",
                                    "duckdb external access on", "duckdb in memory"]
                         + OWN_DATABASE)
def test_a_stored_url_the_policy_now_refuses_is_never_connected(scene, manager, attack):
    """Vetting runs again at every connection: a row saved before the policy (or by hand)
    fails its Run with the uniform message, and nothing is opened."""
    store = Datastore.objects.create(name="legacy", source_url=refused_urls(scene)[attack])
    store.teams.add(manager.teams.get())
    with nothing_touched(scene):
        run = run_now(manager, store, "sync")
    assert run.status == RunStatus.FAILURE
    assert run.error == UNIFORM_REFUSAL


# -- and what is allowed still works ------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_an_allowed_datastore_works_end_to_end(scene, manager):
    sources = scene["sources"]
    created = bearer(manager).post("/api/v1/datastores", {
        "name": "shop", "source_url": f"sqlite:///{sources / 'shop.sqlite3'}",
        "enrichment_url": f"sqlite:///{sources / 'enrichment.sqlite3'}",
        "enrichment_prefix": "shop", "teams": [manager.teams.get().pk],
    }, content_type="application/json")
    assert created.status_code == 201, created.content
    store = Datastore.objects.get(pk=created.json()["id"])
    for operation, config in [("sync", {}), ("profile", {"containers": ["orders"]}),
                              ("materialize", {"containers": ["orders"]})]:
        run = run_now(manager, store, operation, config)
        assert run.status == RunStatus.SUCCESS, (operation, run.error)
    with sa.create_engine(f"sqlite:///{sources / 'enrichment.sqlite3'}").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM shop_mat_orders")).scalar() > 0
    assert os.path.exists(sources / "enrichment.sqlite3")


@pytest.mark.django_db(transaction=True)
def test_a_duckdb_datastore_works_but_its_file_cannot_reach_outside(scene, manager):
    """A DuckDB file may hold views over other files (read_csv, ATTACH-ed databases, URLs):
    Assay reads the file's own tables, and nothing the file points at."""
    sources, outside = scene["sources"], scene["outside"]
    secret = outside / "secret.csv"
    secret.write_text("word\nsesame\n")
    shop, enrichment = sources / "shop.duckdb", sources / "enrichment.duckdb"
    generate_demo_source(f"duckdb:///{shop}", rows=30)
    duckdb.connect(str(enrichment)).close()  # an enrichment file must exist too
    with duckdb.connect(str(shop)) as raw:
        raw.execute(f"CREATE VIEW leak AS SELECT * FROM read_csv('{secret}')")
    created = bearer(manager).post("/api/v1/datastores", {
        "name": "duck", "source_url": f"duckdb:///{shop}",
        "enrichment_url": f"duckdb:///{enrichment}",
        "enrichment_prefix": "duck", "teams": [manager.teams.get().pk],
    }, content_type="application/json")
    assert created.status_code == 201, created.content
    store = Datastore.objects.get(pk=created.json()["id"])

    assert run_now(manager, store, "sync").status == RunStatus.SUCCESS
    for operation, config in [("profile", {"containers": ["orders"]}),
                              ("scan", {"containers": ["orders"]}),
                              ("materialize", {"containers": ["orders"]}),
                              ("export", {"containers": ["orders"]})]:
        run = run_now(manager, store, operation, config)
        assert run.status == RunStatus.SUCCESS, (operation, run.error)
    with duckdb.connect(str(enrichment), read_only=True) as raw:
        assert raw.execute("SELECT count(*) FROM duck_mat_orders").fetchone()[0] == 30
        assert raw.execute("SELECT count(*) FROM duck_export_field_profiles").fetchone()[0] > 0

    leaked = run_now(manager, store, "profile", {"containers": ["leak"]})
    assert leaked.units.get(name="leak").status == RunStatus.FAILURE
    assert "sesame" not in str(list(leaked.units.values()) + list(leaked.log_entries.values()))

    from datastores.sources import SourceConnection

    with SourceConnection(f"duckdb:///{shop}") as source:
        for statement in [
            f"SELECT * FROM read_csv('{secret}')",
            f"ATTACH '{outside / 'data.duckdb'}' AS other",
            "SET enable_external_access = true",
            "INSTALL httpfs",
            "LOAD httpfs",
            "CREATE TABLE written (a INTEGER)",  # sources are opened read-only
        ]:
            with pytest.raises(sa.exc.DBAPIError):
                source.conn.exec_driver_sql(statement)
            source.conn.rollback()


# -- Assay's own PostgreSQL database -----------------------------------------------------------
@pytest.mark.postgres
def test_own_postgresql_database_is_refused_by_any_spelling(scene, manager, settings):
    settings.DATASTORE_DENIED_HOSTS = []
    own = connection.settings_dict
    name, port = own["NAME"], own["PORT"] or 5432
    spellings = ["127.0.0.1", "localhost", "127.0.0.2", socket.gethostname()]
    for host in spellings:
        url = f"postgresql+psycopg://{own['USER'] or 'postgres'}@{host}:{port}/{name}"
        with nothing_touched(scene):
            response = bearer(manager).post(
                "/api/v1/datastores", {"name": "loot", "source_url": url},
                content_type="application/json",
            )
        assert response.status_code == 422, (host, response.content)
        assert response.json()["errors"] == {"source_url": [UNIFORM_REFUSAL]}
    # Another database of the same server is a datastore like any other.
    other = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    response = bearer(manager).post(
        "/api/v1/datastores", {"name": "ok", "source_url": other},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
