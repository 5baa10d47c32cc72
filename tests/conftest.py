"""Shared fixtures: personas, datastores, a demo source, and a real Celery worker process.

The suite runs in two phases (see scripts/test): Assay's own database on SQLite, then on
PostgreSQL. Tests marked ``postgres`` run only in the second, ``both_backends`` in both,
all others only in the first. Tests of the other phase are deselected, not skipped.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Level, Role, Team
from tests.factories import DatastoreFactory, TeamFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent


def backend() -> str:
    return "postgresql" if "postgres" in settings.DATABASES["default"]["ENGINE"] else "sqlite"


def pytest_collection_modifyitems(config, items):
    phase = backend()
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("both_backends"):
            keep.append(item)
        elif item.get_closest_marker("postgres"):
            (keep if phase == "postgresql" else drop).append(item)
        else:
            (keep if phase == "sqlite" else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True, scope="session")
def _flush_runs_first():
    """Empty runs_run before the other tables when a transactional test flushes SQLite.

    The database refuses to delete a finished Run's log lines and units while the Run exists
    (migration runs.0005); deleting the Run takes them with it. Django flushes SQLite with one
    DELETE per table in set order (PostgreSQL's TRUNCATE fires no row trigger).
    """
    from django.core.management.commands import flush

    original = flush.sql_flush

    def runs_first(*args, **kwargs):
        return sorted(original(*args, **kwargs), key=lambda sql: '"runs_run";' not in sql)

    flush.sql_flush = runs_first
    yield
    flush.sql_flush = original


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache: rolled-back ids come back in the next test."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def dbs(tmp_path):
    """Throwaway source and enrichment databases for the test: ``dbs.new("sqlite", "source")``."""
    from tests.enrichment_support import Databases

    with Databases(tmp_path) as stack:
        yield stack


# -- personas ----------------------------------------------------------------------------------
@pytest.fixture
def datastore(db, tmp_path):
    return DatastoreFactory(name="warehouse")


def _member(name: str, level: Level, datastore, role=Role.MEMBER):
    user = UserFactory(username=name, role=role)
    team = TeamFactory(name=f"{name}-team", level=level)
    team.members.add(user)
    team.datastores.add(datastore)
    return user


@pytest.fixture
def admin(db):
    return UserFactory(username="admin", role=Role.ADMIN)


@pytest.fixture
def editor(datastore):
    return _member("editor", Level.EDITOR, datastore)


@pytest.fixture
def author(datastore):
    return _member("author", Level.AUTHOR, datastore)


@pytest.fixture
def drafter(datastore):
    return _member("drafter", Level.DRAFTER, datastore)


@pytest.fixture
def viewer(datastore):
    return _member("viewer", Level.VIEWER, datastore)


@pytest.fixture
def reporter(datastore):
    return _member("reporter", Level.REPORTER, datastore)


@pytest.fixture
def outsider(db):
    return UserFactory(username="outsider")


@pytest.fixture
def public_team(db):
    return Team.objects.get(is_public=True)


# -- sources -----------------------------------------------------------------------------------
@pytest.fixture
def demo_source_url(tmp_path):
    from datastores.demo_source import generate_demo_source

    path = tmp_path / "demo_source.sqlite3"
    generate_demo_source(f"sqlite:///{path}", rows=300)
    return f"sqlite:///{path}"


# -- a real worker -----------------------------------------------------------------------------
def test_database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{db['USER'] or 'postgres'}@{host}:{port}/{db['NAME']}"


class WorkerProcess:
    """A real ``celery worker`` (and optionally ``beat``) on this test's database and broker."""

    def __init__(self, tmp_path: Path, *, extra_env: dict[str, str] | None = None):
        self.log_path = tmp_path / "worker.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "assay.settings",
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "ASSAY_VAR_DIR": str(settings.VAR_DIR),
            "SECRET_KEY": settings.SECRET_KEY,
            "RUN_HEARTBEAT_INTERVAL": "0.5",
            "RUN_ABORT_POLL_INTERVAL": "0.1",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen | None = None

    def start(self, *, concurrency: int = 2) -> "WorkerProcess":
        self.log = open(self.log_path, "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "assay", "worker", "-l", "INFO",
             "--pool", "prefork", "-c", str(concurrency), "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-n", f"test-{os.getpid()}@%h"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_for_log("ready.", timeout=60)
        except BaseException:
            self.stop()  # a worker that never got ready must not outlive the test either
            raise
        return self

    def _wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"worker did not get {text!r}:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children), as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGTERM to the main process only: it stops its pool children itself (a TERM to
            # the whole group kills them under it and its shutdown then stalls).
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        # Whatever is left of the group (orphaned pool children) must not outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.log.close()


def purge_queue() -> None:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        shutil.rmtree(settings.BROKER_DIR, ignore_errors=True)
    for folder in getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).values():
        if isinstance(folder, str) and folder.startswith("/"):
            Path(folder).mkdir(parents=True, exist_ok=True)
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


def broker_messages(queue: str = "celery") -> list[tuple[str, list]]:
    """(task name, args) of every message waiting in ``queue``, read from the broker itself."""
    import base64
    import json

    if settings.CELERY_BROKER_URL.startswith("redis://"):
        import redis

        raw = redis.Redis.from_url(settings.CELERY_BROKER_URL).lrange(queue, 0, -1)
    else:
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        raw = [path.read_bytes() for path in sorted(folder.glob(f"*.{queue}.msg"))]
    messages = []
    for payload in map(json.loads, raw):
        args = json.loads(base64.b64decode(payload["body"]))[0]
        messages.append((payload["headers"]["task"], args))
    return messages


@pytest.fixture
def worker_process(transactional_db, tmp_path):
    """Start a worker on demand: ``worker_process()`` -> WorkerProcess (stopped at teardown)."""
    purge_queue()
    started: list[WorkerProcess] = []

    def start(**kwargs) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, extra_env=kwargs.pop("env", None)).start(**kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate, *, timeout: float, interval: float = 0.05, message: str = ""):
    """Poll ``predicate`` until it returns a truthy value; fail with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message or f"condition not met within {timeout} s")
        time.sleep(interval)


# -- the append-only audit log in tests that commit ------------------------------------------
SQLITE_AUDIT_TRIGGERS = ("audit_event_no_update", "audit_event_no_delete")


@pytest.fixture(autouse=True)
def _empty_audit_log_after_committed_tests(request):
    """Tests that commit (live server, real worker) end with Django emptying every table.

    On SQLite that is a DELETE, which the audit log's trigger refuses, as it should; so the
    triggers are set aside for that cleanup only, and put back exactly as the migration made
    them. (PostgreSQL empties tables with TRUNCATE, which row triggers do not see.)
    """
    marker = request.node.get_closest_marker("django_db")
    commits = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if not commits:
        yield
        return
    # Set up before (so torn down after) this fixture: the cleanup below runs first.
    request.getfixturevalue("_django_db_helper")
    yield
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN (%s, %s)",
            SQLITE_AUDIT_TRIGGERS,
        )
        triggers = cursor.fetchall()
        for name, _ in triggers:
            cursor.execute(f"DROP TRIGGER {name}")
        cursor.execute("DELETE FROM audit_auditevent")
        for _, sql in triggers:
            cursor.execute(sql)
