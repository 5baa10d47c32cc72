"""The ``assay`` CLI, run as a real subprocess against a live server over real HTTP."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from datastores.models import Anomaly, Datastore
from runs.models import Run, RunContainer
from tests.api_support import orders_container, token_for
from tests.conftest import wait_for
from tests.ui_support import make_run

ASSAY = Path(sys.executable).parent / "assay"

HEADER = "id,customer,quantity,status,ordered_on"
GOOD_ROWS = [
    "1,ada,3,open,2024-01-02",
    "2,bob,-1,open,2024-01-03",      # negative quantity
    "3,,5,shipped,2024-01-04",        # no customer
    "4,cy,-7,lost,2024-01-05",        # negative quantity, unexpected status
    "4,dee,2,open,2024-01-06",        # duplicate id
    "6,eve,0,shipped,",
]


@pytest.fixture
def scan_setup(transactional_db, editor, datastore, tmp_path):
    _, checks = orders_container(datastore)
    csv_path = tmp_path / "orders.csv"
    csv_path.write_text("\n".join([HEADER, *GOOD_ROWS]) + "\n")
    return {"token": token_for(editor), "checks": checks, "csv": csv_path}


def assay(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    environment.update(env or {})
    return subprocess.run([str(ASSAY), *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=timeout)


def server(live_server, token) -> list[str]:
    return ["--url", live_server.url, "--token", token]


def assert_clean_failure(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_external_scan_registers_the_local_evaluation(live_server, scan_setup, datastore):
    result = assay("external-scan", *server(live_server, scan_setup["token"]),
                   "--datastore", datastore.pk, "--container", "orders",
                   "--csv", scan_setup["csv"], "--source", "ci job 42")
    assert result.returncode == 0, result.stderr
    run = Run.objects.get()
    assert f"Run #{run.pk} External Scan of warehouse.orders: success" in result.stdout
    assert "6 records scanned, 4 checks, 4 anomalies identified" in result.stdout
    assert run.status == "success" and run.operation == "external_scan"
    assert run.triggered_via == "api" and run.config["source"] == "ci job 42"
    assert run.metrics == {"records_scanned": 6, "anomalies_identified": 4}
    checks = scan_setup["checks"]
    counts = {a.check_rule_id: a.failed_count for a in Anomaly.objects.filter(run_id=run.pk)}
    assert counts == {checks["quantity"].pk: 2, checks["customer"].pk: 1,
                      checks["status"].pk: 1, checks["unique_id"].pk: 1}
    negative = Anomaly.objects.get(check_rule=checks["quantity"])
    assert [row["id"] for row in negative.examples] == ["2", "4"]
    assert RunContainer.objects.get(run=run).metrics["records_scanned"] == 6


def test_environment_variables_and_fail_on_anomalies(live_server, scan_setup, datastore):
    env = {"ASSAY_URL": live_server.url, "ASSAY_TOKEN": scan_setup["token"]}
    result = assay("external-scan", "--datastore", datastore.pk, "--container", "orders",
                   "--csv", scan_setup["csv"], "--fail-on-anomalies", env=env)
    assert result.returncode == 3, result.stderr
    assert Run.objects.get().status == "success"


def test_a_clean_csv_passes_fail_on_anomalies(live_server, scan_setup, datastore, tmp_path):
    clean = tmp_path / "clean.csv"
    # Columns in another order are fine: they are matched by name.
    clean.write_text("status,id,customer,quantity,ordered_on\nopen,1,ada,1,2024-01-01\n")
    result = assay("external-scan", *server(live_server, scan_setup["token"]),
                   "--datastore", datastore.pk, "--container", "orders", "--csv", clean,
                   "--fail-on-anomalies")
    assert result.returncode == 0, result.stderr
    assert "0 anomalies identified" in result.stdout


@pytest.mark.parametrize(
    "content,message",
    [
        ("id,customer,quantity,status\n1,a,1,open\n", "missing columns: ordered_on"),
        (HEADER + ",note\n1,a,1,open,2024-01-01,x\n", "unexpected columns: note"),
        ("id,id,customer,quantity,status,ordered_on\n", "repeated columns: id"),
        ("", "empty file"),
        (HEADER + "\n1,a,many,open,2024-01-01\n", "cannot read 'many' as integer"),
        (HEADER + "\n1,a,1,open,2024-01-01,extra\n", "line 2 has more values than the header"),
        # A short row is refused, not read as NULLs (which not_null checks would count).
        (HEADER + "\n1,a,1,open,2024-01-01\n2,b,1\n",
         "line 3 has 3 values but the header has 5 columns"),
        (HEADER + '\n1,"a\nmultiline",1,open,2024-01-01\n2\n',
         "line 4 has 1 value but the header has 5 columns"),
        (HEADER + "\n1,a,2,open,2024-01-01\n2,b,1.5,open,2024-01-01\n", "row 2, column 'quantity'"),
    ],
)
def test_bad_csv_is_a_clear_message_and_registers_nothing(
    live_server, scan_setup, datastore, tmp_path, content, message
):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = assay("external-scan", *server(live_server, scan_setup["token"]),
                   "--datastore", datastore.pk, "--container", "orders", "--csv", path)
    assert_clean_failure(result, 2, message)
    assert not Run.objects.exists()


def test_binary_and_missing_files(live_server, scan_setup, datastore, tmp_path):
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x00\n")
    for path, message in [(binary, "not a readable UTF-8 CSV"), (tmp_path / "nope.csv",
                                                                  "no such file")]:
        result = assay("external-scan", *server(live_server, scan_setup["token"]),
                       "--datastore", datastore.pk, "--container", "orders", "--csv", path)
        assert_clean_failure(result, 2, message)
    assert not Run.objects.exists()


def test_server_refusals_print_the_apis_detail(live_server, scan_setup, datastore, viewer):
    base = ["external-scan", "--datastore", datastore.pk, "--container", "orders",
            "--csv", scan_setup["csv"]]
    bad_token = assay(*base, "--url", live_server.url, "--token", "assay_wrong")
    assert_clean_failure(bad_token, 1, "Missing or invalid API token", "HTTP 401")
    as_viewer = assay(*base, *server(live_server, token_for(viewer)))
    assert_clean_failure(as_viewer, 1, "Editor permission", "HTTP 403")
    unknown = assay("external-scan", *server(live_server, scan_setup["token"]),
                    "--datastore", 987654, "--container", "orders", "--csv", scan_setup["csv"])
    assert_clean_failure(unknown, 1, "Datastore not found", "HTTP 404")
    no_container = assay("external-scan", *server(live_server, scan_setup["token"]),
                         "--datastore", datastore.pk, "--container", "ghost",
                         "--csv", scan_setup["csv"])
    assert_clean_failure(no_container, 2, "no container named 'ghost'")
    unreachable = assay(*base, "--url", "http://127.0.0.1:9", "--token", "x")
    assert_clean_failure(unreachable, 1, "cannot reach")
    not_assay = assay(*base, "--url", live_server.url + "/login", "--token", "x")
    assert not_assay.returncode == 1 and "Traceback" not in not_assay.stderr
    assert not Run.objects.exists()


def test_usage_errors_exit_2(live_server, scan_setup):
    assert_clean_failure(assay("runs", "list"), 2, "ASSAY_URL")
    assert_clean_failure(assay("runs", "list", "--url", live_server.url), 2, "ASSAY_TOKEN")
    assert_clean_failure(assay("runs", "show", "abc"), 2, "not a whole number")
    assert_clean_failure(assay("bogus"), 2)
    assert_clean_failure(
        assay("runs", "launch", *server(live_server, scan_setup["token"]), "--datastore", 1,
              "--operation", "sync", "--config", "{nope"), 2, "--config is not valid JSON")


def test_runs_launch_list_show_abort(live_server, scan_setup, datastore):
    auth = server(live_server, scan_setup["token"])
    launched = assay("runs", "launch", *auth, "--datastore", datastore.pk, "--operation", "sync",
                     "--config", '{"prune": true}', "--json")
    assert launched.returncode == 0, launched.stderr
    run = json.loads(launched.stdout)
    assert run["status"] == "queued" and run["config"]["prune"] is True
    assert Run.objects.get(pk=run["id"]).triggered_via == "api"

    listed = assay("runs", "list", *auth)
    assert listed.returncode == 0 and f"{run['id']:>7}  sync" in listed.stdout
    as_json = json.loads(assay("runs", "list", *auth, "--json", "--status", "queued").stdout)
    assert [item["id"] for item in as_json["items"]] == [run["id"]]

    shown = assay("runs", "show", *auth, run["id"])
    assert shown.returncode == 0
    assert f"Run #{run['id']} sync on warehouse: queued" in shown.stdout
    assert "actions: abort" in shown.stdout

    aborted = assay("runs", "abort", *auth, run["id"])
    assert aborted.returncode == 0, aborted.stderr
    assert f"Run #{run['id']} sync on warehouse: aborted" in aborted.stdout
    again = assay("runs", "abort", *auth, run["id"])
    assert_clean_failure(again, 1, "Abort is not available", "HTTP 409")

    log = assay("runs", "show", *auth, run["id"], "--log")
    assert log.returncode == 0
    assert "Launched by editor via API." in log.stdout and "Aborted by editor." in log.stdout

    assert_clean_failure(assay("runs", "show", *auth, 987654), 1, "Run not found", "HTTP 404")
    bad_config = assay("runs", "launch", *auth, "--datastore", datastore.pk,
                       "--operation", "sync", "--config", '{"prune": "perhaps"}')
    assert_clean_failure(bad_config, 1, "prune", "HTTP 422")
    assert Run.objects.count() == 1


@pytest.mark.worker
def test_runs_launch_wait_follows_a_real_worker(live_server, worker_process, editor,
                                                demo_source_url):
    store = Datastore.objects.create(name="demo", source_url=demo_source_url)
    editor.teams.get().datastores.add(store)
    worker_process()
    result = assay("runs", "launch", "--url", live_server.url, "--token", token_for(editor),
                   "--datastore", store.pk, "--operation", "sync", "--wait", "--poll", "0.2",
                   "--wait-timeout", "60", timeout=90)
    assert result.returncode == 0, (result.stdout, result.stderr)
    run = wait_for(lambda: Run.objects.filter(status="success").first(), timeout=5)
    assert result.stdout.splitlines()[-1] == f"Run #{run.pk} sync on demo: success"
    assert store.containers.exists()


def test_a_refused_registration_aborts_the_run_it_opened(live_server, scan_setup, datastore,
                                                         settings, tmp_path):
    # The results post (with a long failing row as example) is larger than the server
    # accepts; the small open request is not.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    wide = tmp_path / "wide.csv"
    wide.write_text(f"{HEADER}\n1,{'x' * 5000},-1,open,2024-01-01\n")
    result = assay("external-scan", *server(live_server, scan_setup["token"]),
                   "--datastore", datastore.pk, "--container", "orders", "--csv", wide)
    run = Run.objects.get()
    assert_clean_failure(result, 1, f"Run #{run.pk}:", "Request body too large", "HTTP 413")
    assert run.status == "aborted" and run.aborted_by_user.username == "editor"
    assert not Anomaly.objects.exists()


# -- runs wait / resume / rerun / delete ---------------------------------------------------------
@pytest.fixture
def cli_editor(transactional_db, editor):
    return ["--token", token_for(editor)]


def test_runs_wait_exits_3_on_failure_and_aborted(live_server, cli_editor, datastore):
    failed = make_run(datastore, status="failure", error="all 3 tables failed")
    aborted = make_run(datastore, status="aborted")
    result = assay("runs", "wait", failed.pk, "--url", live_server.url, *cli_editor)
    assert_clean_failure(result, 3, "error: all 3 tables failed")
    assert result.stdout.strip() == f"Run #{failed.pk} scan on {datastore.name}: failure"
    result = assay("runs", "wait", aborted.pk, "--url", live_server.url, *cli_editor)
    assert result.returncode == 3 and result.stdout.strip().endswith(": aborted")


def test_fail_on_warnings_turns_a_success_with_warnings_into_exit_3(live_server, cli_editor,
                                                                    datastore):
    run = make_run(datastore, status="success", has_warnings=True)
    plain = assay("runs", "wait", run.pk, "--url", live_server.url, *cli_editor)
    assert plain.returncode == 0, plain.stderr
    strict = assay("runs", "wait", run.pk, "--fail-on-warnings", "--url", live_server.url,
                   *cli_editor)
    assert_clean_failure(strict, 3, f"Run #{run.pk} has warnings")
    clean = make_run(datastore, status="success")
    assert assay("runs", "wait", clean.pk, "--fail-on-warnings", "--url", live_server.url,
                 *cli_editor).returncode == 0


def test_runs_rerun_resume_and_delete(live_server, cli_editor, datastore):
    done = make_run(datastore, status="aborted", progress_total=2, progress_done=2)
    refused = assay("runs", "resume", done.pk, "--url", live_server.url, *cli_editor)
    assert_clean_failure(refused, 1, "Nothing to resume", "HTTP 409")
    rerun = assay("runs", "rerun", done.pk, "--url", live_server.url, *cli_editor)
    assert rerun.returncode == 0, rerun.stderr
    new = Run.objects.get(rerun_of=done.pk)
    assert rerun.stdout.strip() == f"Run #{new.pk} scan on {datastore.name}: queued"
    deleted = assay("runs", "delete", done.pk, "--url", live_server.url, *cli_editor)
    assert deleted.stdout.strip() == f"Run #{done.pk} deleted."
    assert not Run.objects.filter(pk=done.pk).exists()
    again = assay("runs", "delete", done.pk, "--url", live_server.url, *cli_editor)
    assert_clean_failure(again, 1, "HTTP 404")


def test_a_dropped_keep_alive_connection_is_retried_for_reads(live_server, cli_editor,
                                                              datastore):
    """A proxy in front of the server drops the first connection without an answer: the read
    is sent again on a fresh one, and ``runs wait`` reports the Run's real outcome."""
    run = make_run(datastore, status="success")
    with dropping_proxy(live_server.url, drops=1) as url:
        result = assay("runs", "wait", run.pk, "--url", url, *cli_editor)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"Run #{run.pk} scan on {datastore.name}: success"
    with dropping_proxy(live_server.url, drops=5) as url:
        result = assay("runs", "wait", run.pk, "--url", url, *cli_editor)
    assert_clean_failure(result, 1, "cannot reach")


@contextlib.contextmanager
def dropping_proxy(target: str, *, drops: int):
    """A TCP proxy to ``target`` that closes its first ``drops`` connections unanswered."""
    host, port = target.removeprefix("http://").split(":")
    listener = socket.create_server(("127.0.0.1", 0))
    seen = [0]

    def pump(a, b):
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            seen[0] += 1
            if seen[0] <= drops:
                client.recv(65536)
                client.close()
                continue
            upstream = socket.create_connection((host, int(port)))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
