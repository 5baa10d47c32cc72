"""JSON logs name the Run they are about; Sentry is loaded only when a DSN is set."""

import json
import os
import subprocess
import sys

import pytest

from runs.models import Run
from runs.services import run_launch
from tests.conftest import ROOT, wait_for


@pytest.mark.worker
def test_worker_logs_json_lines_with_the_run_id(worker_process, editor, datastore,
                                                demo_source_url):
    datastore.source_url = demo_source_url
    datastore.save()
    worker = worker_process(env={"LOG_FORMAT": "json"})
    run = run_launch(user=editor, datastore=datastore, operation="sync", config={})
    wait_for(lambda: Run.objects.get(pk=run.pk).status == "success", timeout=60)

    def task_lines() -> list[dict]:
        records = []
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and "runs.execute_run[" in line:
                records.append(json.loads(line))
        return records

    done = wait_for(lambda: [r for r in task_lines() if "succeeded" in r["message"]],
                    timeout=20, message="no JSON line for the finished task")
    assert done[0]["run_id"] == run.pk
    assert done[0]["level"] == "INFO" and done[0]["logger"] == "celery.app.trace"
    assert {"time", "process"} <= set(done[0])


def django_process(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "assay.settings_test", **env},
        capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout.strip()


def test_sentry_is_imported_and_started_only_with_a_dsn():
    assert django_process("import sys; print('sentry_sdk' in sys.modules)") == "False"
    report = django_process(
        "import sentry_sdk; c = sentry_sdk.get_client(); "
        "print(c.is_active(), c.options['send_default_pii'], "
        "'django' in c.integrations, 'celery' in c.integrations)",
        SENTRY_DSN="https://public@127.0.0.1:9/1",
    )
    assert report == "True False True True"
