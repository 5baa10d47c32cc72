"""The Run detail page: timeline, results, logs, live polling, and the actions with their checks."""

import re

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from runs.logs import append_log
from runs.models import Run, RunDeletion, RunLogEntry
from tests.factories import DatastoreFactory
from tests.ui_support import client_for, csrf_token, make_run

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def detail(client, run):
    response = client.get(f"/activity/runs/{run.pk}/")
    assert response.status_code == 200
    return response.content.decode()


# -- page --------------------------------------------------------------------------------------
def test_visibility_per_persona(datastore, admin, editor, viewer, reporter, outsider):
    run = make_run(datastore, status="running")
    for user in (admin, editor, viewer, reporter):
        assert client_for(user).get(f"/activity/runs/{run.pk}/").status_code == 200
    assert client_for(outsider).get(f"/activity/runs/{run.pk}/").status_code == 404
    assert client_for(editor).get("/activity/runs/999999/").status_code == 404


def test_buttons_follow_policy_and_level(datastore, editor, viewer):
    running = make_run(datastore, status="running")
    aborted_scan = make_run(datastore, status="aborted", operation="scan")
    editor_html = detail(client_for(editor), running)
    assert f'action="/activity/runs/{running.pk}/abort/"' in editor_html
    assert "/rerun/" not in editor_html and "/delete/" not in editor_html
    aborted_html = detail(client_for(editor), aborted_scan)
    for action in ("resume", "rerun", "delete"):
        assert f'action="/activity/runs/{aborted_scan.pk}/{action}/"' in aborted_html
    assert "/abort/" not in aborted_html
    for run in (running, aborted_scan):
        html = detail(client_for(viewer), run)
        assert not re.search(r"/activity/runs/\d+/(abort|resume|rerun|delete)/", html)


def test_timeline_of_an_aborted_resumed_run(datastore, editor):
    original = make_run(datastore, status="aborted", user=editor)
    rerun_source = make_run(datastore, status="failure")
    run = make_run(
        datastore, status="aborted", user=editor, resumed_from=original,
        abort_requested_at=timezone.now(), abort_requested_by=editor,
    )
    rerun = make_run(datastore, status="success", rerun_of=rerun_source)
    rerun_source_id = rerun_source.pk
    rerun_source.delete()
    html = detail(client_for(editor), run)
    steps = re.findall(r'<li class="step[^"]*">(.*?)</li>', html, re.S)
    text = [re.sub(r"<[^>]+>", " ", s) for s in steps]
    assert "Resumed from" in text[0] and f"#{original.pk}" in text[0]
    assert "Queued" in text[1]
    assert "Running" in text[2]
    assert "Abort requested" in text[3] and "editor" in text[3]
    assert "Aborted" in text[4] and "by editor" in text[4]
    assert "#cancel" in steps[4]  # the Aborted glyph
    assert f'href="/activity/runs/{original.pk}/"' in html
    # The original links forward to its resumption.
    assert f'Resumed as\n  <a href="/activity/runs/{run.pk}/">' in detail(
        client_for(editor), original)
    rerun_html = detail(client_for(editor), rerun)
    # A deleted original is named, not linked (its page would answer 404).
    assert f"Rerun of #{rerun_source_id}</strong> <span class=\"muted\">(deleted)" in rerun_html
    assert f'href="/activity/runs/{rerun_source_id}/"' not in rerun_html


def test_promote_has_no_queued_step(datastore, editor):
    destination = DatastoreFactory(name="dest")
    destination.teams.add(*datastore.teams.all())  # named only to those who can see it
    run = make_run(datastore, status="success", operation="promote",
                   destination_datastore=destination)
    html = detail(client_for(editor), run)
    assert "<strong>Queued</strong>" not in html
    assert "Promote starts running directly" in html
    assert "warehouse → dest" in html


def test_results_tab_and_container_log(datastore, editor):
    run = make_run(
        datastore, status="success", operation="scan",
        units=[("orders", "success", {"records_scanned": 1200, "anomalies_identified": 2}),
               ("customers", "failure", {})],
        metrics={"tables_requested": 2, "tables_scanned": 1, "records_scanned": 1200},
        has_warnings=True,
    )
    html = detail(client_for(editor), run)
    assert "Completed with warnings: the worker logged warnings or errors" in html
    results = html.split('id="panel-results"')[1].split('id="panel-config"')[0]
    assert '<th scope="row">orders</th>' in results
    assert '<span class="badge badge-success">Success</span>' in results
    assert '<span class="badge badge-failure">Failure</span>' in results
    assert "1,200" in results and "Anomalies identified" in results
    # Summary metrics in reading order (asked, done, read), each with its unit.
    summary = re.sub(r"<[^>]+>", " ", html.split("<h2>Summary</h2>")[1].split("</dl>")[0])
    words = summary.split()
    assert " ".join(words) == ("Requested 2 tables Scanned 1 table Records scanned 1,200 records")


def test_container_log_lines_sit_with_their_container(datastore, editor):
    run = make_run(datastore, status="running", operation="scan",
                   units=[("orders", "failure", {}), ("customers", "queued", {})])
    append_log(run.pk, "orders: no such column email", level="warning", container="orders")
    html = detail(client_for(editor), run)
    results = html.split('id="panel-results"')[1].split('id="panel-config"')[0]
    orders_row = results.split('<th scope="row">orders</th>')[1].split("</tr>")[0]
    assert "no such column email" in orders_row


def test_no_results_note_for_folded_operations(datastore, editor):
    run = make_run(datastore, status="success", operation="sync")
    assert "Sync folds its work into one Run-level state" in detail(client_for(editor), run)


# -- logs --------------------------------------------------------------------------------------
def _poller(html):
    match = re.search(r'<div id="log-poller"[^>]*>', html, re.S)
    assert match
    return match.group(0)


def test_log_block_streams_only_new_lines_then_freezes(datastore, editor):
    run = make_run(datastore, status="running", logs=["first line", "second line"])
    client = client_for(editor)
    html = detail(client, run)
    assert "first line" in html and "second line" in html
    poller = _poller(html)
    url = re.search(r'hx-get="([^"]+)"', poller).group(1).replace("&amp;", "&")
    assert 'hx-swap="beforeend"' in poller and 'hx-target="#log-lines"' in poller

    unchanged = client.get(url)
    assert unchanged.status_code == 204 and unchanged.content == b""

    append_log(run.pk, "third line")
    chunk = client.get(url).content.decode()
    assert "third line" in chunk
    assert "first line" not in chunk and "second line" not in chunk  # only new lines
    assert 'hx-swap-oob="true"' in chunk  # the poller moves its cursor forward
    url = re.search(r'hx-get="([^"]+)"', _poller(chunk)).group(1).replace("&amp;", "&")
    assert client.get(url).status_code == 204

    append_log(run.pk, "last words")
    Run.objects.filter(pk=run.pk).update(status="success", finished_at=timezone.now())
    final = client.get(url).content.decode()
    assert "last words" in final and "third line" not in final
    assert "hx-get" not in _poller(final) and "Log frozen" in final

    frozen_page = detail(client, Run.objects.get(pk=run.pk))
    assert "hx-get" not in _poller(frozen_page) and "Log frozen" in frozen_page


@pytest.mark.parametrize("lines", [1, 30])
def test_unchanged_log_poll_is_one_query(datastore, editor, lines, django_assert_num_queries):
    run = make_run(datastore, status="running", logs=[f"line {i}" for i in range(lines)])
    run.refresh_from_db()
    last = RunLogEntry.objects.filter(run=run).latest("id").pk
    client = client_for(editor)
    client.get(f"/activity/runs/{run.pk}/logs/", {"after": last, "n": run.log_lines})  # warm-up
    with django_assert_num_queries(3):  # session, user, the Run's live state
        response = client.get(f"/activity/runs/{run.pk}/logs/",
                              {"after": last, "n": run.log_lines})
    assert response.status_code == 204
    with django_assert_num_queries(4):  # ... plus the new lines
        response = client.get(f"/activity/runs/{run.pk}/logs/", {"after": 0, "n": 0})
    assert response.content.decode().count('class="log-line') == lines


def test_log_download_streams_the_whole_log(datastore, editor, outsider):
    run = make_run(datastore, status="failure",
                   logs=["Launched.", "orders: broken|warning", "Run failed: boom|error"])
    response = client_for(editor).get(f"/activity/runs/{run.pk}/log.txt")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"] == f'attachment; filename="run-{run.pk}.log"'
    text = b"".join(response.streaming_content).decode()
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[1].endswith("WARNING orders: broken")
    assert lines[2].endswith("ERROR   Run failed: boom")
    assert client_for(outsider).get(f"/activity/runs/{run.pk}/log.txt").status_code == 404


# -- live header -------------------------------------------------------------------------------
def test_live_region_polls_until_terminal(datastore, editor):
    run = make_run(datastore, status="running", progress_total=3, progress_done=1,
                   progress_unit="Tables", units=[("a", "success", {}), ("b", "running", {}),
                                                  ("c", "queued", {})])
    client = client_for(editor)
    html = detail(client, run)
    live = re.search(r'<div id="run-live"[^>]*>', html, re.S).group(0)
    assert 'hx-trigger="every 2s"' in live  # only while visible: static/js/assay.js
    url = re.search(r'hx-get="([^"]+)"', live).group(1)
    response = client.get(url)
    assert response.status_code == 204 and len(response.content) == 0

    Run.objects.filter(pk=run.pk).update(progress_done=2)
    body = client.get(url).content.decode()
    assert "2 / 3 Tables" in body and 'id="results-body" hx-swap-oob="true"' in body

    Run.objects.filter(pk=run.pk).update(
        status="aborted", finished_at=timezone.now(), aborted_by_kind="user",
        aborted_by_user=editor)
    final = client.get(url).content.decode()
    live = re.search(r'<div id="run-live"[^>]*>', final, re.S).group(0)
    assert "hx-get" not in live and "hx-trigger" not in final
    assert '<span class="badge badge-aborted">Aborted</span>' in final
    assert f"/activity/runs/{run.pk}/resume/" in final


@pytest.mark.parametrize("n", [1, 30])
def test_live_poll_query_count_is_constant(datastore, editor, n, django_assert_num_queries):
    run = make_run(datastore, status="running", progress_total=n,
                   units=[(f"t{i}", "queued", {}) for i in range(n)],
                   logs=[f"x{i}" for i in range(n)])
    client = client_for(editor)
    version = _v(run)
    client.get(f"/activity/runs/{run.pk}/live/", {"v": version})  # warm-up
    with django_assert_num_queries(3):
        assert client.get(f"/activity/runs/{run.pk}/live/", {"v": version}).status_code == 204
    # changed: + the Run, the level, the units, the container lines, the Scan's failed checks
    with django_assert_num_queries(8):
        assert client.get(f"/activity/runs/{run.pk}/live/", {"v": "x"}).status_code == 200


def _v(run):
    from activity.selectors import state_version

    return state_version(Run.objects.get(pk=run.pk))


# -- actions -----------------------------------------------------------------------------------
def test_actions_need_csrf(datastore, editor):
    run = make_run(datastore, status="queued")
    client = client_for(editor, csrf=True)
    response = client.post(f"/activity/runs/{run.pk}/abort/", {"confirmed": "1"})
    assert response.status_code == 403
    assert Run.objects.get(pk=run.pk).status == "queued"
    token = csrf_token(client, f"/activity/runs/{run.pk}/")
    response = client.post(f"/activity/runs/{run.pk}/abort/",
                           {"confirmed": "1", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Run.objects.get(pk=run.pk).status == "aborted"


def test_viewer_gets_403_outsider_404(datastore, viewer, outsider):
    run = make_run(datastore, status="failure", operation="scan")
    for action in ("resume", "rerun", "delete"):
        assert client_for(viewer).post(
            f"/activity/runs/{run.pk}/{action}/", {"confirmed": "1"}).status_code == 403
        assert client_for(viewer).get(f"/activity/runs/{run.pk}/{action}/").status_code == 403
        assert client_for(outsider).post(
            f"/activity/runs/{run.pk}/{action}/", {"confirmed": "1"}).status_code == 404
    assert Run.objects.count() == 1 and Run.objects.get(pk=run.pk).status == "failure"


def test_confirmation_page_without_javascript(datastore, editor):
    run = make_run(datastore, status="success", operation="scan")
    client = client_for(editor)
    page = client.get(f"/activity/runs/{run.pk}/delete/", {"next": "/activity/?status=success"})
    html = page.content.decode()
    assert page.status_code == 200 and "Delete Run #" in html
    assert '<input type="hidden" name="confirmed" value="1">' in html
    assert 'value="/activity/?status=success"' in html
    # The list's button posts without "confirmed" when htmx is absent: confirm first.
    unconfirmed = client.post(f"/activity/runs/{run.pk}/delete/")
    assert unconfirmed.status_code == 200 and "Delete Run #" in unconfirmed.content.decode()
    assert Run.objects.filter(pk=run.pk).exists()


def test_abort_queued_and_running(datastore, editor):
    queued = make_run(datastore, status="queued")
    running = make_run(datastore, status="running")
    Run.objects.filter(pk=running.pk).update(worker_token="0" * 32)
    client = client_for(editor)
    response = client.post(f"/activity/runs/{queued.pk}/abort/",
                           {"confirmed": "1", "next": "/activity/"})
    assert response.status_code == 302 and response["Location"] == "/activity/"
    queued.refresh_from_db()
    assert queued.status == "aborted" and queued.aborted_by_user == editor
    # From the detail page through htmx: the live region comes back, showing "Aborting…".
    response = client.post(
        f"/activity/runs/{running.pk}/abort/", {"confirmed": "1"},
        headers={"HX-Request": "true", "HX-Target": "run-live"},
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert 'class="aborting" title="Abort requested by editor">Aborting…' in body
    assert "every 2s" in body  # still running: keeps polling until the worker lands it
    running.refresh_from_db()
    assert running.status == "running" and running.abort_requested_by == editor
    # From an Activity row, the row's line comes back.
    other = make_run(datastore, status="running")
    Run.objects.filter(pk=other.pk).update(worker_token="1" * 32)
    response = client.post(
        f"/activity/runs/{other.pk}/abort/", {"confirmed": "1", "next": "/activity/"},
        headers={"HX-Request": "true", "HX-Target": f"run-{other.pk}-line"},
    )
    body = response.content.decode()
    assert f'id="run-{other.pk}-line"' in body
    assert 'class="aborting" title="Abort requested by editor">Aborting…' in body


def test_resume_and_rerun_land_on_the_new_run(datastore, editor):
    run = make_run(datastore, status="aborted", operation="scan", progress_total=2,
                   progress_done=1, progress_unit="Tables",
                   units=[("orders", "success", {}), ("customers", "aborted", {})])
    client = client_for(editor)
    response = client.post(f"/activity/runs/{run.pk}/resume/", {"confirmed": "1"})
    resumed = Run.objects.get(resumed_from=run)
    assert response.status_code == 302
    assert response["Location"] == f"/activity/runs/{resumed.pk}/"
    assert list(resumed.units.values_list("name", flat=True)) == ["customers"]
    response = client.post(f"/activity/runs/{run.pk}/rerun/", {"confirmed": "1"},
                           headers={"HX-Request": "true"})
    rerun = Run.objects.get(rerun_of=run)
    assert response["HX-Redirect"] == f"/activity/runs/{rerun.pk}/"
    assert f"Reran Run #{run.pk} as Run #{rerun.pk}." in client.get(
        f"/activity/runs/{rerun.pk}/").content.decode()
    run.refresh_from_db()
    assert run.status == "aborted"  # the original never changes


def test_delete_goes_back_to_the_list_and_is_audited(datastore, editor):
    run = make_run(datastore, status="success")
    response = client_for(editor).post(f"/activity/runs/{run.pk}/delete/",
                                       {"confirmed": "1", "next": f"/activity/runs/{run.pk}/"})
    assert response.status_code == 302 and response["Location"] == "/activity/"
    assert not Run.objects.filter(pk=run.pk).exists()
    assert RunDeletion.objects.get(run_id=run.pk).deleted_by == editor


def test_action_not_allowed_in_state_is_a_message_not_a_crash(datastore, editor):
    run = make_run(datastore, status="running")
    client = client_for(editor)
    response = client.post(f"/activity/runs/{run.pk}/rerun/", {"confirmed": "1"})
    assert response.status_code == 302 and response["Location"] == f"/activity/runs/{run.pk}/"
    assert f"Rerun is not available: Run #{run.pk} (Scan) is Running." in detail(client, run)
    assert client.post(f"/activity/runs/{run.pk}/explode/").status_code == 404
    assert Run.objects.count() == 1


def test_unsafe_next_is_ignored(datastore, editor):
    run = make_run(datastore, status="queued")
    response = client_for(editor).post(f"/activity/runs/{run.pk}/abort/",
                                       {"confirmed": "1", "next": "https://evil.example/"})
    assert response["Location"] == f"/activity/runs/{run.pk}/"
