"""Fair sharing of workers between datastores (runs.fairness), on both backends."""

import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from playwright.sync_api import expect

from runs import fairness
from runs.execution import claim
from runs.models import Run, RunStatus
from tests import test_browser
from tests.factories import DatastoreFactory, RunFactory

# The browser fixtures of the page tests.
browser, open_as = test_browser.browser, test_browser.open_as

# Playwright's sync API runs an event loop in this thread (as in tests.test_browser).
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def queued(datastore, operation="scan", **config) -> Run:
    """A queued Run whose message is on its way, as run_launch leaves it."""
    return RunFactory(
        datastore=datastore, operation=operation, config=config, enqueued_at=timezone.now()
    )


def state(run: Run) -> tuple[str, object]:
    return Run.objects.values_list("status", "enqueued_at").get(pk=run.pk)


def test_the_limit_holds_and_the_line_keeps_its_order():
    store = DatastoreFactory(name="Demo warehouse", run_limit=2)
    runs = [queued(store, containers=[f"t{i}"]) for i in range(4)]

    # The third in line is turned away while the first two wait for their workers.
    assert claim(runs[2].pk) is None
    assert state(runs[2]) == (RunStatus.QUEUED, None)
    assert claim(runs[0].pk) is not None
    assert claim(runs[1].pk) is not None
    assert claim(runs[2].pk) is None
    assert claim(runs[3].pk) is None
    assert Run.objects.filter(datastore=store, status=RunStatus.RUNNING).count() == 2

    # One ends: only the head of the line may go, the fourth still waits its turn.
    Run.objects.filter(pk=runs[0].pk).update(
        status=RunStatus.SUCCESS, finished_at=runs[0].created_at
    )
    assert claim(runs[3].pk) is None
    assert claim(runs[2].pk) is not None


def test_another_datastore_is_not_held_up_by_a_full_one():
    busy = DatastoreFactory(run_limit=1)
    quiet = DatastoreFactory()
    first = queued(busy)
    burst = [queued(busy, containers=[f"t{i}"]) for i in range(5)]
    late = queued(quiet)

    assert claim(first.pk) is not None
    assert all(claim(run.pk) is None for run in burst)
    assert claim(late.pk) is not None


def test_runs_writing_the_same_catalogue_or_marks_never_run_together():
    store = DatastoreFactory(run_limit=10)
    sync = queued(store, "sync")
    assert claim(sync.pk) is not None
    second_sync = queued(store, "sync")
    profile = queued(store, "profile", containers=["orders"])
    scan = queued(store, "scan", containers=["orders"])
    assert claim(second_sync.pk) is None  # both would create the same catalogue rows
    assert claim(profile.pk) is None  # writes fields the Sync writes
    assert claim(scan.pk) is not None  # reads the catalogue, writes check results

    other_scan = queued(store, "scan", containers=["customers"])
    whole_scan = queued(store, "scan")
    same_scan = queued(store, "scan", containers=["orders"])
    assert claim(other_scan.pk) is not None  # another container's mark
    assert claim(whole_scan.pk) is None  # would write the marks of orders and customers
    assert claim(same_scan.pk) is None


def test_wait_reasons_say_where_each_run_waits():
    store = DatastoreFactory(name="Demo warehouse", run_limit=1)
    other = DatastoreFactory(name="Lake")
    running = queued(store)
    assert claim(running.pk) is not None
    first, second = queued(store, containers=["a"]), queued(store, containers=["b"])
    lake = [queued(other, containers=[f"t{i}"]) for i in range(3)]
    Run.objects.filter(pk__in=[first.pk, second.pk]).update(enqueued_at=None)

    ids = list(Run.objects.values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as queries:
        reasons = fairness.wait_reasons(ids)
    assert len(queries) == 1
    assert reasons == {
        first.pk: "1st in line for Demo warehouse",
        second.pk: "2nd in line for Demo warehouse",
        lake[0].pk: "waiting for a worker",
        lake[1].pk: "waiting for a worker: 1 Run ahead",
        lake[2].pk: "waiting for a worker: 2 Runs ahead",
    }
    assert running.pk not in reasons


def test_an_ending_run_sends_the_head_of_the_line(django_capture_on_commit_callbacks, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr("runs.fairness.enqueue", sent.append)
    store = DatastoreFactory(run_limit=2)
    running = queued(store)
    assert claim(running.pk) is not None
    line = [queued(store, containers=[f"t{i}"]) for i in range(4)]
    for run in line[1:]:
        assert claim(run.pk) is None

    with django_capture_on_commit_callbacks(execute=True):
        assert fairness.dispatch_line(store.pk) == 0  # line[0] has its message already
    Run.objects.filter(pk=running.pk).update(
        status=RunStatus.SUCCESS, finished_at=running.created_at
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert fairness.dispatch_waiting() == 1
    assert sent == [line[1].pk]
    assert state(line[1])[1] is not None
    assert state(line[2]) == (RunStatus.QUEUED, None)


# -- where users see it ------------------------------------------------------------------------
def line_on(datastore, editor) -> tuple[Run, Run, Run]:
    """One Run running on the datastore (limit 1), two waiting in line behind it."""
    datastore.run_limit = 1
    datastore.save()
    running = queued(datastore)
    assert claim(running.pk) is not None
    first, second = queued(datastore, containers=["a"]), queued(datastore, containers=["b"])
    assert claim(second.pk) is None and claim(first.pk) is None
    return running, first, second


def test_the_api_says_why_a_run_waits(datastore, editor):
    from tests.api_support import bearer

    running, first, second = line_on(datastore, editor)
    api = bearer(editor)
    listed = {item["id"]: item for item in api.get("/api/v1/runs").json()["items"]}
    assert listed[first.pk]["wait_reason"] == "1st in line for warehouse"
    assert listed[second.pk]["wait_reason"] == "2nd in line for warehouse"
    assert listed[running.pk]["wait_reason"] is None
    one = api.get(f"/api/v1/runs/{second.pk}").json()
    assert one["wait_reason"] == "2nd in line for warehouse"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_pages_show_the_place_in_line_and_follow_it(datastore, editor, open_as, live_server):
    running, first, second = line_on(datastore, editor)
    page = open_as(editor)
    expect(page.locator(f"#run-{first.pk}-line")).to_contain_text("1st in line for warehouse")
    expect(page.locator(f"#run-{second.pk}-line")).to_contain_text("2nd in line for warehouse")
    page.screenshot(path=str(live_server_screenshot("wait-reason-activity.png")))

    page.goto(f"{live_server.url}/activity/runs/{second.pk}/")
    expect(page.locator("#run-live")).to_contain_text("2nd in line for warehouse")
    # The Run ahead ends and the first in line starts: the open page moves up by itself.
    Run.objects.filter(pk=running.pk).update(
        status=RunStatus.SUCCESS, finished_at=timezone.now()
    )
    assert claim(first.pk) is not None
    expect(page.locator("#run-live")).to_contain_text("1st in line for warehouse", timeout=15_000)
    page.screenshot(path=str(live_server_screenshot("wait-reason-run-page.png")))


def live_server_screenshot(name: str):
    from django.conf import settings

    folder = settings.VAR_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_a_run_behind_a_full_datastore_gets_no_message_until_its_turn(
    datastore, editor, django_capture_on_commit_callbacks, monkeypatch
):
    from runs.services import run_launch

    sent: list[int] = []
    monkeypatch.setattr("runs.fairness.enqueue", sent.append)
    datastore.run_limit = 2
    datastore.save()
    with django_capture_on_commit_callbacks(execute=True):
        runs = [
            run_launch(user=editor, datastore=datastore, operation="sync", config={})
            for _ in range(4)
        ]
    assert sent == [runs[0].pk, runs[1].pk]
    assert [state(run)[1] is None for run in runs] == [False, False, True, True]
    assert fairness.wait_reasons([runs[3].pk]) == {runs[3].pk: "2nd in line for warehouse"}


def test_admins_set_the_limits_and_bad_values_are_refused(datastore, admin, editor):
    from tests.api_support import bearer

    api = bearer(admin)
    url = f"/api/v1/datastores/{datastore.pk}"
    shown = api.get(url).json()
    assert (shown["run_limit"], shown["connection_limit"]) == (4, 2)
    for bad in ({"run_limit": 0}, {"run_limit": 1001}, {"connection_limit": 17},
                {"run_limit": "three"}, {"connection_limit": [2]}):  # fmt: skip
        response = api.patch(url, bad, content_type="application/json")
        assert response.status_code == 422, (bad, response.content)
    response = api.patch(url, {"run_limit": 3, "connection_limit": 4},
                         content_type="application/json")  # fmt: skip
    assert response.status_code == 200
    datastore.refresh_from_db()
    assert (datastore.run_limit, datastore.connection_limit) == (3, 4)
    assert bearer(editor).patch(url, {"run_limit": 9},
                                content_type="application/json").status_code == 403  # fmt: skip
    datastore.refresh_from_db()
    assert datastore.run_limit == 3


def test_the_datastore_form_edits_the_limits(datastore, admin, demo_source_url):
    from tests.ui_support import client_for

    datastore.source_url = demo_source_url  # a file the URL policy accepts
    datastore.save()
    client = client_for(admin)
    url = f"/datastores/{datastore.pk}/edit/"
    html = client.get(url).content.decode()
    assert "Runs at once" in html and 'name="run_limit" value="4"' in html
    form = {"name": datastore.name, "source_url": datastore.source_url,
            "enrichment_prefix": "assay", "run_limit": "0", "connection_limit": "2"}  # fmt: skip
    response = client.post(url, form)
    assert response.status_code == 422
    assert "greater than or equal to 1" in response.content.decode()
    response = client.post(url, {**form, "run_limit": "7"})
    assert response.status_code == 302
    datastore.refresh_from_db()
    assert datastore.run_limit == 7
