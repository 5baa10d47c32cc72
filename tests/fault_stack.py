"""A whole private Assay deployment for fault injection: its own PostgreSQL cluster and Redis
server on spare ports, and every process of the Procfile (web, worker, housekeeping, beat),
started from the Procfile itself. Nothing shared is touched: the faults (kill, SIGSTOP,
restarts) are applied to these processes only.

Ports: ``FAULTS_PG_PORT`` (default 55490) and ``FAULTS_REDIS_PORT`` (default 6390).

The benchmarks (bench/load.py, bench/scaleout.py) start the same deployment on a database of
their own on an existing PostgreSQL server (``ServerDatabase``) instead of a private cluster.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])

# Short liveness settings, so that a trial takes seconds (the promises scale with them).
TIMINGS = {
    "RUN_HEARTBEAT_INTERVAL": "0.5",
    "RUN_HEARTBEAT_STALE_AFTER": "4",
    "RUN_REAPER_INTERVAL": "1",
    "RUN_ABORT_POLL_INTERVAL": "0.1",
    "RUN_ABORT_GRACE": "30",
    "RUN_REQUEUE_AFTER": "5",
    "RUN_SCHEDULE_INTERVAL": "1",
    # Well inside the stale threshold: a frozen worker's row lock is released (and an Abort of
    # its Run accepted) seconds before the reaper may call the Run lost.
    "RUN_IDLE_IN_TRANSACTION_TIMEOUT": "1.5",
    "RUN_DB_RETRY_WINDOW": "45",
}

# What a TLS-terminating proxy adds: ASSAY_MODE=production redirects plain http otherwise.
PROXY = {"X-Forwarded-Proto": "https"}


def wait_until(predicate, *, timeout: float, interval: float = 0.05, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(interval)


def _as_postgres(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """initdb and pg_ctl refuse to run as root: run them as the postgres system user."""
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


class PrivateCluster:
    def __init__(self, root: Path, port: int):
        self.data = root / "pg"
        self.socket_dir = root / "pgsock"
        self.port = port
        self.log = root / "pg.log"

    def init(self) -> None:
        for folder in (self.data, self.socket_dir):
            folder.mkdir(parents=True)
            if os.geteuid() == 0:
                shutil.chown(folder, "postgres", "postgres")
        if os.geteuid() == 0:
            shutil.chown(self.data.parent, "postgres", "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        _as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                     "-U", "postgres", "assay")

    def start(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                     "-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                     "-c fsync=off -c max_connections=200", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                         "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/assay"

    def query(self, sql: str, params=()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://"),
                             autocommit=True, connect_timeout=3) as conn:
            return conn.execute(sql, params).fetchall()


class ServerDatabase:
    """A database of its own, dropped and recreated, on a PostgreSQL server that is already up
    (the benchmarks: their million seeded Runs live on the same server as the Activity
    benchmark's, so the figures compare). Same interface as ``PrivateCluster``."""

    def __init__(self, server: str, name: str):
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self.server, self.name = server.rstrip("/"), name

    def init(self) -> None:
        self.recreate()

    def recreate(self) -> None:
        import psycopg

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", [self.name])
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def start(self) -> None:
        pass  # the server is not ours to start or stop

    def stop(self) -> None:
        pass

    def _dsn(self, name: str) -> str:
        return f"{self.server}/{name}".replace("postgres://", "postgresql://", 1)

    @property
    def url(self) -> str:
        return f"{self.server}/{self.name}"

    def query(self, sql: str, params=()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self._dsn(self.name), autocommit=True, connect_timeout=3) as conn:
            return conn.execute(sql, params).fetchall()


class PrivateRedis:
    def __init__(self, root: Path, port: int):
        self.port = port
        self.log = root / "redis.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        import redis

        wait_until(lambda: _pings(redis.Redis(port=self.port)), timeout=10, what="redis up")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


class Deployment:
    """Private PostgreSQL (or ``database``) + Redis + the Procfile's processes, with a demo
    datastore and token."""

    def __init__(self, root: Path, *, web_port: int, redis_port: int, pg_port: int = 0,
                 database: ServerDatabase | None = None,
                 extra_env: dict[str, str] | None = None, timings: dict[str, str] = TIMINGS):
        self.root = root
        self.cluster = database or PrivateCluster(root, pg_port)
        self.redis = PrivateRedis(root, redis_port)
        self.web_port = web_port
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("ASSAY_", "DATABASE_", "CELERY_", "RUN_", "PYTEST"))
               # A choice the suite is meant to be run under both ways (docs/deployment.md).
               or k == "CELERY_DB_REUSE_MAX"},
            "DJANGO_SETTINGS_MODULE": "assay.settings",
            "DATABASE_URL": self.cluster.url,
            "CELERY_BROKER_URL": self.redis.url,
            "ASSAY_VAR_DIR": str(root / "var"),
            "ASSAY_PORT": str(web_port),
            "SECRET_KEY": "faults-secret-key",
            "DATASTORE_FILE_DIRS": str(root),
            "ASSAY_WORKER_CONCURRENCY": "2",
            **timings,
            **(extra_env or {}),
        }
        self.token = ""
        self.datastore_id = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, demo_rows: int = 20000) -> Deployment:
        self.prepare(demo_rows)
        for name in ("web", "worker", "housekeeping", "beat"):
            self.start(name)
        self.wait_ready("worker", "housekeeping")
        # A Sync makes the catalogue the other operations need.
        run = self.launch("sync")
        self.wait_for_status(run, {"success"}, timeout=60)
        return self

    def prepare(self, demo_rows: int = 20000) -> None:
        """Database, broker, migrations, a demo source, its datastore and an API token."""
        self.cluster.init()
        self.redis.start()
        self.manage("migrate", "--noinput", "-v0")
        source = self.root / "demo.sqlite3"
        seed = (
            "from datastores.demo_source import generate_demo_source\n"
            "from accounts.models import User, Role, ApiToken\n"
            "from datastores.models import Datastore\n"
            f"generate_demo_source('sqlite:///{source}', rows={demo_rows})\n"
            "u = User.objects.create_user('ops', password='pw-ops-12345', role=Role.ADMIN)\n"
            f"d = Datastore.objects.create(name='demo', source_url='sqlite:///{source}')\n"
            "print(ApiToken.issue(user=u, name='faults')[1], d.pk)\n"
        )
        token, datastore = self.manage("shell", "-c", seed).split()[-2:]
        self.token, self.datastore_id = token, int(datastore)

    def wait_ready(self, *workers: str) -> None:
        """The web process answers (if started) and each named Celery worker is ready."""
        if "web" in self.procs:
            wait_until(lambda: self._answers("/login/"), timeout=30, what="web up")
        for name in workers:
            wait_until(lambda n=name: "ready." in self.log(n), timeout=60, what=f"{name} ready")

    def down(self) -> None:
        for proc in self.procs.values():
            self._stop(proc)
        self.redis.stop()
        self.cluster.stop()

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(done.stderr[-3000:])
        return done.stdout

    def start(self, name: str, *, key: str = "", env: dict[str, str] | None = None
              ) -> subprocess.Popen:
        """Start the Procfile's process ``name``, known (log, procs) as ``key`` (default: name):
        e.g. several ``worker`` processes with their own ``ASSAY_WORKER_NAME``."""
        key = key or name
        command = procfile()[name]
        log = open(self.root / f"{key}.log", "ab")  # noqa: SIM115 -- lives with the process
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT,
                                env={**self.env, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[key] = proc
        return proc

    def stop(self, key: str) -> None:
        self._stop(self.procs.pop(key))

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL a process and its children (a machine or OOM kill)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def pool_children(self, name: str) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.procs[name].pid)], capture_output=True,
                             text=True).stdout
        return [int(pid) for pid in out.split()]

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
                proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    # -- HTTP --------------------------------------------------------------------------------
    def _answers(self, path: str) -> bool:
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}",
                                         headers=PROXY)
        try:
            with urllib.request.urlopen(request, timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def api(self, method: str, path: str, body: dict | None = None,
            timeout: float = 30) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/api/v1{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json", **PROXY},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                return exc.code, json.loads(payload)
            except ValueError:
                return exc.code, {"detail": payload[:200].decode(errors="replace")}

    def timed_get(self, path: str) -> float:
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=120):
            pass
        return time.monotonic() - started

    def launch(self, operation: str, config: dict | None = None) -> int:
        status, body = self.api("POST", "/runs", {"operation": operation,
                                                  "datastore": self.datastore_id,
                                                  "config": config or {}})
        assert status == 201, (status, body)
        return body["id"]

    def run(self, run_id: int) -> dict:
        rows = self.cluster.query(
            "SELECT status, error, aborted_by_kind, aborted_by_user_id, progress_done, "
            "progress_total, send_count FROM runs_run WHERE id = %s", (run_id,))
        keys = ("status", "error", "aborted_by_kind", "aborted_by_user_id", "done", "total",
                "send_count")
        return dict(zip(keys, rows[0], strict=True)) if rows else {}

    def wait_for_status(self, run_id: int, statuses: set[str], *, timeout: float) -> float:
        """Seconds until the Run reached one of ``statuses`` (polling the database)."""
        started = time.monotonic()

        def reached():
            with contextlib.suppress(Exception):
                return self.run(run_id).get("status") in statuses
            return False

        wait_until(reached, timeout=timeout, what=f"run {run_id} in {statuses}")
        return time.monotonic() - started

    def executions(self, run_id: int) -> int:
        """How many times a worker started the Run (its "started on datastore" log lines)."""
        return self.cluster.query(
            "SELECT count(*) FROM runs_runlogentry WHERE run_id = %s AND message LIKE %s",
            (run_id, "% started on datastore %"))[0][0]
