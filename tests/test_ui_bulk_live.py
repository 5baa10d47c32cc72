"""Bulk Abort and Delete, the live Activity list, time zones, odd inputs and the copy of the
pages, through Django's test client (the browser tests look at the same pages in Chromium)."""

import datetime as dt
import re
import uuid
from html import unescape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Level
from datastores.models import Container
from runs.models import Run
from tests.factories import DatastoreFactory, TeamFactory
from tests.ui_support import client_for, csrf_token, make_run, run_ids

pytestmark = pytest.mark.both_backends

STATES = ["queued"] * 15 + ["running"] * 10 + ["success"] * 10 + ["failure"] * 8 + ["aborted"] * 7


def text(response) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode())))


# -- bulk --------------------------------------------------------------------------------------
def test_bulk_abort_of_50_runs_in_mixed_states(datastore, editor):
    runs = [make_run(datastore, status=state, user=editor) for state in STATES]
    # Five of the running ones have a worker: it lands their abort, they show "stopping".
    owned = [run.pk for run in runs if run.status == "running"][:5]
    Run.objects.filter(pk__in=owned).update(worker_token=uuid.uuid4())
    active = {run.pk for run in runs if run.status in ("queued", "running")}
    client = client_for(editor, csrf=True)
    token = csrf_token(client, "/activity/")
    form = {"csrfmiddlewaretoken": token, "action": "abort", "all": "1",
            "datastore": str(datastore.pk), "next": "/activity/"}

    # First the preview: what would happen, and nothing happens yet.
    preview = client.post("/activity/bulk/", form)
    assert preview.status_code == 200
    assert "Abort 50 Runs?" in text(preview)
    assert "25 will be aborted" in text(preview) and "25 already finished" in text(preview)
    assert Run.objects.filter(status="aborted").count() == 7

    done = client.post("/activity/bulk/", {**form, "confirmed": "1"}, follow=True)
    statuses = dict(Run.objects.values_list("pk", "status"))
    assert {pk for pk, status in statuses.items() if status == "aborted"} == (
        active - set(owned)) | {run.pk for run in runs if run.status == "aborted"}
    assert all(statuses[pk] == "running" for pk in owned)
    assert Run.objects.filter(pk__in=owned, abort_requested_by=editor).count() == 5
    for run in runs:  # the finished ones are untouched
        if run.pk not in active:
            assert statuses[run.pk] == run.status
    page = text(done)
    assert "Abort: 20 aborted, 5 stopping (abort requested, the worker lands it), " \
           "25 already finished." in page
    first_queued = min(pk for pk in active if pk not in owned)
    assert re.search(rf"aborted: [#\d, ]*#{first_queued}\b", page)


def test_every_matching_run_needs_valid_filters(datastore, editor):
    make_run(datastore, status="queued")
    client = client_for(editor, csrf=True)
    response = client.post("/activity/bulk/", {
        "csrfmiddlewaretoken": csrf_token(client, "/activity/"), "action": "abort", "all": "1",
        "status": "exploded", "confirmed": "1"})
    assert "Some filters are not valid" in text(response)
    assert not Run.objects.filter(status="aborted").exists()


def test_bulk_delete_of_selected_rows_keeps_active_runs(datastore, editor):
    done = make_run(datastore, status="success")
    failed = make_run(datastore, status="failure")
    running = make_run(datastore, status="running")
    client = client_for(editor, csrf=True)
    token = csrf_token(client, "/activity/")
    response = client.post("/activity/bulk/", {
        "csrfmiddlewaretoken": token, "action": "delete", "confirmed": "1",
        "run": [done.pk, failed.pk, running.pk, "nonsense"], "next": "/activity/",
    }, follow=True)
    assert "Delete: 2 deleted, 1 still active (not deleted)." in text(response)
    assert list(Run.objects.values_list("pk", flat=True)) == [running.pk]


def test_bulk_actions_ask_the_policy_for_each_run(datastore, editor, viewer):
    other = DatastoreFactory(name="other")
    team = TeamFactory(name="other-viewers", level=Level.VIEWER)
    team.members.add(editor)
    team.datastores.add(other)
    mine = make_run(datastore, status="queued")
    theirs = make_run(other, status="queued")
    hidden = make_run(DatastoreFactory(name="hidden"), status="queued")
    client = client_for(editor, csrf=True)
    token = csrf_token(client, "/activity/")
    response = client.post("/activity/bulk/", {
        "csrfmiddlewaretoken": token, "action": "abort", "confirmed": "1",
        "run": [mine.pk, theirs.pk, hidden.pk],
    }, follow=True)
    assert "Abort: 1 aborted, 1 not allowed (Editor permission needed)." in text(response)
    assert Run.objects.get(pk=mine.pk).status == "aborted"
    assert Run.objects.get(pk=theirs.pk).status == "queued"
    assert Run.objects.get(pk=hidden.pk).status == "queued"  # invisible: not even listed
    # A viewer gets no bulk bar, and a forged request changes nothing.
    assert 'id="bulk-form"' not in client_for(viewer).get("/activity/").content.decode()
    forged = client_for(viewer).post("/activity/bulk/", {
        "action": "abort", "confirmed": "1", "run": [theirs.pk]}, follow=True)
    assert Run.objects.get(pk=theirs.pk).status == "queued"
    assert "Abort: 1 not allowed" not in text(forged)  # viewer cannot see it at all
    # Without the CSRF token: refused.
    assert client_for(editor, csrf=True).post(
        "/activity/bulk/", {"action": "abort", "confirmed": "1", "run": [theirs.pk]}
    ).status_code == 403
    # Resume and Rerun are one Run at a time; nonsense is a 400, not a 500.
    for action in ("resume", "explode", ""):
        assert client_for(editor).post("/activity/bulk/", {"action": action}).status_code == 400


# -- the live list -----------------------------------------------------------------------------
def poll_url(html: str) -> str:
    match = re.search(r'id="runs-poller" hx-get="([^"]+)"', html)
    assert match, "the first page of Activity follows new Runs"
    return match.group(1).replace("&amp;", "&")


@pytest.mark.parametrize("existing", [10, 80])
def test_an_unchanged_list_poll_reads_no_run(datastore, editor, existing):
    for _ in range(existing):
        make_run(datastore, status="success")
    client = client_for(editor)
    url = poll_url(client.get("/activity/?operation=scan").content.decode())
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response.content == b""
    run_table = Run._meta.db_table
    touching = [q["sql"] for q in queries if run_table in q["sql"]]
    assert len(touching) == 1 and re.match(r'SELECT MAX\("?\w+"?\."?id"?\)', touching[0]), touching
    assert len(queries) == 3  # session, user, newest id: whatever the number of Runs


def test_new_matching_runs_come_to_the_top(datastore, editor):
    make_run(datastore, status="success")
    client = client_for(editor)
    url = poll_url(client.get("/activity/?operation=scan").content.decode())
    other = make_run(datastore, status="queued", operation="sync")  # not matching
    new = make_run(datastore, status="queued", operation="scan")
    response = client.get(url, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert run_ids(html) == [new.pk]
    assert 'hx-swap-oob="afterbegin:#run-rows"' in html
    # The poller moves on past both: the next poll is unchanged again.
    assert f"after={other.pk + 0 if other.pk > new.pk else new.pk}" in poll_url(html)
    assert client.get(poll_url(html), HTTP_HX_REQUEST="true").status_code == 204
    # Older pages do not follow new Runs.
    assert 'id="runs-poller"' not in client.get(f"/activity/?before={new.pk}").content.decode()


# -- confirmations -----------------------------------------------------------------------------
def test_resume_confirmation_previews_what_remains(datastore, editor):
    names = [f"t{i:02d}" for i in range(15)]
    run = make_run(datastore, status="aborted", progress_total=15, progress_done=5,
                   progress_unit="Tables",
                   units=[(name, "success" if i < 5 else "queued", {})
                          for i, name in enumerate(names)])
    page = text(client_for(editor).get(f"/activity/runs/{run.pk}/resume/"))
    assert "10 of 15 tables remain: t05, t06, t07, t08, t09, and 5 more." in page
    # The dialog's body is the same explanation (the fragment the page is made of).
    fragment = client_for(editor).get(f"/activity/runs/{run.pk}/resume/",
                                      HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and "10 of 15 tables remain" in fragment
    assert "A new Run processes only the units that did not finish" in fragment


# -- times -------------------------------------------------------------------------------------
def test_times_in_the_users_zone_with_the_zone_named(datastore, editor):
    started = dt.datetime(2025, 1, 15, 23, 30, tzinfo=dt.UTC)
    run = make_run(datastore, status="success", created_at=started)
    client = client_for(editor)
    assert "2025-01-15 23:30:01 UTC" in text(client.get(f"/activity/runs/{run.pk}/"))
    token = csrf_token(client, "/preferences/")
    assert client.post("/preferences/", {"time_zone": "Mars/Olympus",
                                         "csrfmiddlewaretoken": token}).status_code == 422
    client.post("/preferences/", {"time_zone": "Europe/Paris", "csrfmiddlewaretoken": token})
    detail = text(client.get(f"/activity/runs/{run.pk}/"))
    assert "2025-01-16 00:30:01 CET" in detail
    listing = client.get("/activity/").content.decode()
    # Last year's date carries its year; the exact time is on hover.
    assert re.search(r'<time datetime="2025-01-15T23:30:01\+00:00" '
                     r'title="2025-01-16 00:30:01 CET">Jan 16 2025, 00:30</time>', listing)
    assert "Times in Europe/Paris" in text(client.get("/activity/"))
    recent = make_run(datastore, status="success",
                      created_at=timezone.now() - dt.timedelta(minutes=3))
    assert re.search(rf'id="run-{recent.pk}-line".*?>(2|3) min ago</time>',
                     client.get("/activity/").content.decode(), re.S)


def test_date_filters_are_days_of_the_users_zone(datastore, editor):
    editor.time_zone = "Asia/Tokyo"
    editor.save()
    # 2025-03-01 20:00 UTC is March 2nd in Tokyo.
    run = make_run(datastore, created_at=dt.datetime(2025, 3, 1, 20, 0, tzinfo=dt.UTC))
    client = client_for(editor)
    assert run_ids(client.get("/activity/?date_from=2025-03-02&date_to=2025-03-02")
                   .content.decode()) == [run.pk]
    assert run_ids(client.get("/activity/?date_from=2025-03-01&date_to=2025-03-01")
                   .content.decode()) == []


# -- odd inputs --------------------------------------------------------------------------------
def test_odd_filters_are_answered_in_the_page(datastore, editor):
    make_run(datastore)
    client = client_for(editor)
    page = text(client.get("/activity/?status=exploded"))
    assert "Status: Select a valid choice. exploded is not one of the available choices. " \
           "This filter is ignored." in page
    assert "Clear" in page and len(run_ids(client.get("/activity/?status=exploded")
                                           .content.decode())) == 1
    swapped = text(client.get("/activity/?date_from=2026-05-02&date_to=2026-05-01"))
    assert "From (May 2, 2026) is after To (May 1, 2026)" in swapped and "Clear" in swapped
    long = client.get("/activity/?by=" + "x" * 5000)
    assert long.status_code == 414
    assert "This address is too long" in text(long)
    assert "Open this page without filters" in text(long)
    api = client.get("/api/v1/runs?x=" + "y" * 5000)
    assert api.status_code == 414 and api.json()["code"] == "uri_too_long"


def test_launch_numbers_are_validated_not_defaulted(datastore, editor):
    Container.objects.create(datastore=datastore, name="orders", kind="table")
    client = client_for(editor)
    form = text(client.get(f"/datastores/{datastore.pk}/launch/scan/"))
    for help_text in ("Read only the rows added since the last Scan",
                      "record one rolled-up anomaly", "Example source rows kept",
                      "resolves the container's open anomalies", "Read only the first N rows"):
        assert help_text in form
    assert "data-picker" in client.get(f"/datastores/{datastore.pk}/launch/scan/").content.decode()
    response = client.post(f"/datastores/{datastore.pk}/launch/scan/",
                           {"rollup_threshold": "", "source_record_limit": "10"})
    assert response.status_code == 422
    assert "Enter a number (the default is 10)." in text(response)
    assert not Run.objects.exists()


def test_an_empty_catalogue_says_to_sync_first(datastore, editor):
    page = text(client_for(editor).get(f"/datastores/{datastore.pk}/launch/profile/"))
    assert "is catalogued yet, so there is nothing to choose from: run a Sync first." in page
    assert "run a Sync first" not in text(client_for(editor).get(
        f"/datastores/{datastore.pk}/launch/sync/"))


# -- copy --------------------------------------------------------------------------------------
def test_copy_of_logs_metrics_and_refusals(datastore, editor):
    one = make_run(datastore, status="success", logs=["only line"])
    html = text(client_for(editor).get(f"/activity/runs/{one.pk}/more/"))
    assert "Run log (last line)" in html
    never = make_run(datastore, status="queued")
    Run.objects.filter(pk=never.pk).update(status="aborted", finished_at=timezone.now(),
                                           aborted_by_kind="system")
    assert "No metrics: the Run ended before it started." in text(
        client_for(editor).get(f"/activity/runs/{never.pk}/"))
    refused = client_for(editor).post(f"/activity/runs/{never.pk}/abort/", {"confirmed": "1"},
                                      follow=True)
    assert f"Abort is not available: Run #{never.pk} (Scan) is Aborted." in text(refused)
