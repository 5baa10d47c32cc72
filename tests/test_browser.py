"""The pages in a real browser (Debian's Chromium through Playwright) against a live server and,
where the flow needs one, a real Celery worker on the same test database."""

import os
import re
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from datastores.demo_source import generate_bench_table
from datastores.models import Check, Container
from runs.models import Run
from runs.services import run_launch
from tests.conftest import wait_for
from tests.ui_support import make_run

# Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
# ordinary blocking calls all the same.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PASSWORD = "pw-for-tests-1"  # tests.factories.UserFactory
SLICES = 20


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_as(browser, live_server):
    """``open_as(user, width=1280, **context_options)`` -> a Page logged in through the login
    form, in a new browser context of that width."""
    contexts = []

    def open_as(user, width: int = 1280, password: str = PASSWORD, **options):
        context = browser.new_context(viewport={"width": width, "height": 900}, **options)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/activity/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def slow_scan_source(datastore, tmp_path):
    """A source where each container takes about a second to scan.

    One generated table, read by SLICES computed containers with three active checks each:
    a Scan of them advances one container at a time, slowly enough to watch and to abort.
    """
    url = f"sqlite:///{tmp_path / 'slow_source.sqlite3'}"
    generate_bench_table(url, rows=300_000, table="events")
    datastore.source_url = url
    datastore.save()
    for i in range(SLICES):
        container = Container.objects.create(
            datastore=datastore, name=f"slice_{i:02d}", kind="computed",
            query="SELECT * FROM events",
        )
        Check.objects.create(container=container, type="unique", field_name="event_key")
        Check.objects.create(container=container, type="matches_pattern", field_name="code",
                             params={"pattern": "^[A-Z]{3}-[0-9]{4}$"})
        Check.objects.create(container=container, type="between", field_name="score",
                             params={"min": 0, "max": 100})


# Records whether a visible "Aborting…" ever appears in the live region.
SEE_ABORTING = """() => {
    window.sawAborting = false;
    const look = () => document.querySelectorAll('#run-live .aborting').forEach((el) => {
        if (el.offsetParent !== null && el.textContent.includes('Aborting…')) {
            window.sawAborting = true;
        }
    });
    new MutationObserver(look).observe(document.body,
        {subtree: true, childList: true, attributes: true, attributeFilter: ['class']});
}"""


def wait_for_progress(page, at_least: int) -> int:
    """Wait until the detail page's progress shows ``at_least`` done units; return the count."""
    handle = page.wait_for_function(
        """(n) => {
            const text = document.querySelector('#run-live .progress-text');
            const done = text ? parseInt(text.textContent, 10) : -1;
            return done >= n ? done : false;
        }""",
        arg=at_least, timeout=30_000,
    )
    return handle.json_value()


@pytest.mark.worker
def test_editor_launches_a_scan_aborts_it_and_resumes_it(
    open_as, live_server, worker_process, editor, datastore, tmp_path
):
    slow_scan_source(datastore, tmp_path)
    # A worker that notices an abort within a second, as a busy one would, not 0.1 s.
    worker_process(env={"RUN_ABORT_POLL_INTERVAL": "1.0"})
    page = open_as(editor)

    # Launch from the Datastores page's Launch menu.
    page.click("text=Datastores")
    page.click("summary:has-text('Launch')")
    page.click(f"a[href='/datastores/{datastore.pk}/launch/scan/']")
    expect(page.locator("h1")).to_contain_text("Launch Scan on warehouse")
    page.click("button:has-text('Launch Scan')")
    page.wait_for_url(re.compile(r"/activity/runs/\d+/$"))
    run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
    navigations = []
    page.on("framenavigated", lambda frame: frame == page.main_frame and navigations.append(1))

    # The progress bar advances while the page stays put.
    first = wait_for_progress(page, 1)
    later = wait_for_progress(page, first + 1)
    assert later < SLICES, "the Scan finished before it could be aborted"
    assert navigations == []
    assert Run.objects.get(pk=run_id).status == "running"

    # Abort: "Aborting…" at once, then the Aborted badge when the worker has stopped. The
    # worker may stop within milliseconds, so an observer records that the text was shown.
    page.evaluate(SEE_ABORTING)
    page.click("#run-live button.act-abort")
    page.click("#confirm-dialog-yes")  # the confirmation dialog asks first
    # A function, not a bare expression: Playwright evaluates a bare expression again on every
    # poll, and the page's CSP (no 'unsafe-eval') refuses that once the first check says no.
    page.wait_for_function("() => window.sawAborting === true", timeout=10_000)
    expect(page.locator("#run-live .badge")).to_have_text("Aborted", timeout=20_000)
    expect(page.locator(".timeline")).to_contain_text("by editor")
    aborted = Run.objects.get(pk=run_id)
    assert aborted.status == "aborted" and 0 < aborted.progress_done < SLICES
    assert navigations == []

    # Resume lands on a new Run that finishes the remaining containers.
    page.click("#run-live button.act-resume")
    page.click("#confirm-dialog-yes")
    page.wait_for_url(re.compile(rf"/activity/runs/(?!{run_id}/)\d+/$"))
    new_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
    assert new_id != run_id
    expect(page.locator(".timeline")).to_contain_text(f"Resumed from #{run_id}")
    expect(page.locator("#run-live .badge")).to_have_text("Success", timeout=60_000)
    resumed = Run.objects.get(pk=new_id)
    assert resumed.resumed_from_id == run_id and resumed.status == "success"
    assert resumed.progress_total == SLICES - aborted.progress_done
    expect(page.locator("#log-poller")).to_contain_text("Log frozen")
    assert Run.objects.get(pk=run_id).status == "aborted"  # the original is untouched


def test_viewer_sees_the_same_pages_without_buttons(open_as, live_server, viewer, datastore):
    running = make_run(datastore, status="running", progress_total=4, progress_done=1,
                       progress_unit="Tables")
    failed = make_run(datastore, status="failure", operation="scan")
    page = open_as(viewer)
    expect(page.locator(f"#run-{running.pk}-line .badge")).to_have_text("Running")
    expect(page.locator(f"#run-{failed.pk}-line .badge")).to_have_text("Failure")
    assert page.locator(".actions button").count() == 0
    page.click(f"#run-{failed.pk} button.expand")
    expect(page.locator(f"#run-{failed.pk}-more")).to_contain_text("Configuration")
    page.click(f"#run-{failed.pk}-line a.run-id")
    expect(page.locator("#run-live .badge")).to_have_text("Failure")
    assert page.locator("#run-live button").count() == 0
    page.click("text=Datastores")
    expect(page.locator("tbody")).to_contain_text("warehouse")
    assert page.locator("summary:has-text('Launch')").count() == 0
    assert page.locator("text=Teams").count() == 0


@pytest.mark.worker
def test_warning_indicator_on_a_success_that_logged_a_container_failure(
    open_as, live_server, worker_process, editor, datastore, tmp_path
):
    url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    generate_bench_table(url, rows=500, table="events")
    datastore.source_url = url
    datastore.save()
    good = Container.objects.create(datastore=datastore, name="events", kind="table")
    Check.objects.create(container=good, type="not_null", field_name="user_id")
    Container.objects.create(datastore=datastore, name="broken", kind="computed",
                             query="SELECT * FROM no_such_table")
    worker_process()
    run = run_launch(user=editor, datastore=datastore, operation="scan", config={})
    wait_for(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=60,
             message="the Scan did not finish")
    run.refresh_from_db()
    assert run.status == "success" and run.has_warnings

    page = open_as(editor)
    warning = page.locator(f"#run-{run.pk}-line .warn")
    expect(warning).to_be_visible()
    expect(warning).to_have_attribute(
        "title", "Completed with warnings: the worker logged warnings or errors")
    expect(page.locator(f"#run-{run.pk}-line .badge")).to_have_text("Success")
    page.click(f"#run-{run.pk} button.expand")
    broken_row = page.locator(f"#run-{run.pk}-more tr", has_text="broken")
    expect(broken_row.locator(".badge")).to_have_text("Failure")


def test_finished_runs_stop_polling(open_as, live_server, editor, datastore):
    run = make_run(datastore, status="running", progress_total=3, progress_done=1,
                   progress_unit="Tables", logs=["working"])
    page = open_as(editor)
    polls = []
    page.on("request", lambda request: polls.append((time.monotonic(), request.url))
            if re.search(r"/activity/runs/\d+/(line|live|logs|more)/", request.url) else None)

    # Activity row: polls while running, then one final render, then silence.
    with page.expect_request(re.compile(rf"/activity/runs/{run.pk}/line/\?v=")):
        pass  # the active row polls
    Run.objects.filter(pk=run.pk).update(progress_done=2)
    expect(page.locator(f"#run-{run.pk}-line .progress-text")).to_have_text("2 / 3 Tables")
    Run.objects.filter(pk=run.pk).update(status="success", progress_done=3,
                                         finished_at=timezone.now())
    expect(page.locator(f"#run-{run.pk}-line .badge")).to_have_text("Success", timeout=10_000)
    assert_no_polls_for(page, polls, seconds=5)

    # Run detail: header and log are both frozen after their final render.
    live = make_run(datastore, status="running", progress_total=2, progress_done=0,
                    progress_unit="Tables", logs=["started"])
    with page.expect_request(re.compile(rf"/activity/runs/{live.pk}/logs/\?after=")):
        page.goto(f"{live_server.url}/activity/runs/{live.pk}/")
    from runs.logs import append_log

    append_log(live.pk, "the last line")
    Run.objects.filter(pk=live.pk).update(status="success", progress_done=2,
                                          finished_at=timezone.now())
    expect(page.locator("#run-live .badge")).to_have_text("Success", timeout=10_000)
    expect(page.locator("#log-lines")).to_contain_text("the last line", timeout=10_000)
    expect(page.locator("#log-poller")).to_contain_text("Log frozen")
    assert_no_polls_for(page, polls, seconds=5)


def assert_no_polls_for(page, polls: list, *, seconds: float) -> None:
    """Proving an absence takes watching for a while: more than two poll intervals."""
    since = time.monotonic()
    page.wait_for_timeout(seconds * 1000)  # keeps Playwright's event loop (and the log) going
    late = [url for at, url in polls if at >= since]
    assert late == [], f"polled after the terminal render: {late}"
