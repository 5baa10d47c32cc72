"""Production mode end to end: every process of the Procfile, as written there, on PostgreSQL
and a Redis of the test's own; a Scan launched through the API ends Success and is counted on
/metrics, whichever gunicorn process answers."""

import contextlib
import os
import signal
import subprocess

import httpx
import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from monitoring.models import WorkerHeartbeat
from tests import conftest
from tests.api_support import token_for
from tests.conftest import ROOT, wait_for
from tests.ops_support import PrivateRedis, free_port
from tests.profile_scan_support import author_defect_checks, synced_demo_source

pytestmark = [pytest.mark.postgres, pytest.mark.worker]
WORKERS = 2
START = 90


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and ":" in line)


class Stack:
    """The Procfile's processes: each once, ``worker`` WORKERS times (own node names)."""

    def __init__(self, tmp_path, env: dict[str, str]):
        self.tmp_path, self.env = tmp_path, env
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self) -> None:
        for name, command in procfile().items():
            for n in range(WORKERS if name == "worker" else 1):
                label = f"{name}{n + 1}" if name == "worker" else name
                log = open(self.tmp_path / f"{label}.log", "ab")  # noqa: SIM115
                env = {**self.env, "ASSAY_WORKER_NAME": label}
                self.procs.append((label, subprocess.Popen(
                    ["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )))

    def logs(self) -> str:
        return "\n".join(
            f"--- {label}\n{(self.tmp_path / f'{label}.log').read_text(errors='replace')[-2000:]}"
            for label, _ in self.procs
        )

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group


def test_procfile_stack_runs_a_scan_launched_through_the_api(
    transactional_db, tmp_path, editor, datastore
):
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    broker = PrivateRedis(free_port(range(6440, 6450)), redis_dir).start()
    port = free_port(range(55440, 55450))
    env = {
        **os.environ,
        "ASSAY_MODE": "production",
        "DJANGO_SETTINGS_MODULE": "assay.settings",
        "SECRET_KEY": "smoke-test-secret-key-" + "x" * 40,
        "CREDENTIAL_KEYS": ",".join(settings.CREDENTIAL_KEYS),
        "DATABASE_URL": conftest.test_database_url(),
        "CELERY_BROKER_URL": broker.url,
        "ALLOWED_HOSTS": "127.0.0.1",
        "ASSAY_PORT": str(port),
        "ASSAY_VAR_DIR": str(tmp_path / "var"),
        "LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    (tmp_path / "var").mkdir()
    with synced_demo_source("sqlite", tmp_path, datastore, editor):
        author_defect_checks(datastore)
        stack = Stack(tmp_path, env)
        # A proxy in front terminates TLS and says so: production mode redirects plain HTTP.
        web = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                           headers={"X-Forwarded-Proto": "https"})
        try:
            stack.start()

            last = {}

            def healthy():
                try:
                    response = web.get("/healthz")
                except httpx.HTTPError as exc:
                    last["answer"] = repr(exc)
                    return False
                last["answer"] = response.text
                ok = response.status_code == 200 and response.json()
                return ok and ok["checks"]["workers"]["alive"] == WORKERS and ok

            try:
                health = wait_for(healthy, timeout=START, interval=0.5)
            except AssertionError:
                raise AssertionError(f"never healthy: {last}\n{stack.logs()}") from None
            assert health["checks"]["workers"] == {"ok": True, "alive": WORKERS}
            # Every other process of the Procfile that is a worker (the notifier) beats too.
            others = [n for n in procfile() if n not in ("web", "worker", "beat")]
            wait_for(lambda: WorkerHeartbeat.objects.count() == WORKERS + len(others),
                     timeout=START, message=stack.logs())

            api = {"Authorization": f"Bearer {token_for(editor)}"}
            launched = web.post("/api/v1/runs", headers=api, json={
                "operation": "scan", "datastore": datastore.pk, "config": {},
            })
            assert launched.status_code == 201, launched.text
            run_id = launched.json()["id"]

            def finished():
                run = web.get(f"/api/v1/runs/{run_id}", headers=api).json()
                return run["status"] not in ("queued", "running") and run

            run = wait_for(finished, timeout=START, interval=0.5, message=stack.logs())
            assert run["status"] == "success", (run["error"], stack.logs())

            # Scraped several times: both gunicorn processes answer, with the same figures.
            scrapes = [
                {f.name: f for f in text_string_to_metric_families(web.get("/metrics").text)}
                for _ in range(4)
            ]
            for families in scrapes:
                runs = {(s.labels["operation"], s.labels["status"]): s.value
                        for s in families["assay_runs"].samples}
                assert runs[("scan", "success")] == 1.0
                alive = families["assay_workers_alive"].samples[0].value
                assert alive == WORKERS + len(others)
            http = scrapes[-1]["assay_http_request_duration_seconds"]
            served = {s.labels["view"] for s in http.samples if s.name.endswith("_count")}
            assert "healthz" in served
        finally:
            web.close()
            stack.stop()
            broker.stop()
