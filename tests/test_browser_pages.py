"""Every page as each persona in a real browser: no sideways scrolling from 360 px to 1440 px,
no serious or critical accessibility violation (axe-core, from its npm package), a keyboard-only
path through Activity, the confirmation dialog, and the live list.

The pages are one list (``PAGES``): a page added to Assay joins every check here by adding
its path and the personas that see it.
"""

import datetime as dt
import os
import re
import time
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from datastores.models import Anomaly, Check, Container
from runs.models import Run
from tests.conftest import ROOT
from tests.databases import run_now, sync_catalogue
from tests.factories import DatastoreFactory, TeamFactory
from tests.test_browser import browser, open_as  # noqa: F401 -- fixtures
from tests.ui_support import make_run

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

WIDTHS = (360, 768, 1024, 1440)
SHOT_WIDTHS = (390, 1440)
LONG_NAME = "quarterly_revenue_reconciliation_" * 3 + "eu_west"  # 106 characters
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

# (path, personas that see it). Placeholders come from the ``site`` fixture.
PAGES = [
    ("/activity/", ("admin", "editor", "viewer")),
    ("/activity/?status=exploded&date_from=2026-05-02&date_to=2026-05-01", ("editor",)),
    ("/datastores/{ds}/activity/", ("editor", "viewer")),
    ("/activity/runs/{running}/", ("admin", "editor", "viewer")),
    ("/activity/runs/{scan}/", ("editor", "viewer")),
    ("/activity/runs/{aborted}/", ("editor",)),
    ("/activity/runs/{running}/abort/", ("editor",)),
    ("/activity/runs/{aborted}/resume/", ("editor",)),
    ("/datastores/", ("admin", "editor", "viewer")),
    ("/datastores/{ds}/", ("editor", "viewer")),
    ("/datastores/{ds}/containers/{container}/", ("editor", "viewer")),
    ("/datastores/{ds}/launch/scan/", ("editor",)),
    ("/datastores/{long}/launch/profile/", ("admin",)),
    ("/datastores/{ds}/launch/promote/", ("editor",)),
    ("/datastores/new/", ("admin",)),
    ("/datastores/{ds}/edit/", ("admin",)),
    ("/checks/", ("editor", "viewer")),
    ("/checks/{check}/", ("editor", "viewer")),
    ("/anomalies/", ("editor", "viewer")),
    ("/anomalies/{anomaly}/", ("editor", "viewer")),
    ("/teams/", ("admin",)),
    ("/teams/{team}/", ("admin",)),
    ("/preferences/", ("viewer",)),
    ("/account/", ("admin", "viewer")),
    ("/users/", ("admin",)),
    ("/users/{editor}/", ("admin",)),
    ("/audit/", ("admin",)),
    ("/schedules/", ("admin", "editor")),
    ("/schedules/new/", ("editor",)),
    ("/datastores/{ds}/access/", ("admin",)),
    ("/datastores/{long}/delete/", ("admin",)),
    ("/datastores/{ds}/notifications/", ("admin", "editor")),
    ("/datastores/{ds}/notifications/deliveries/", ("admin",)),
    ("/activity/runs/999999/", ("viewer",)),  # the 404 page
]


def pages_for(persona: str, site: dict) -> list[str]:
    return [path.format(**site) for path, who in PAGES if persona in who]


@pytest.fixture
def site(datastore, editor, viewer, admin, demo_source_url):
    """A datastore with a catalogue, checks, anomalies and Runs in every state, plus a second
    datastore and a team with 100-character names."""
    datastore.source_url = demo_source_url
    datastore.save()
    sync_catalogue(editor, datastore)
    run_now(editor, datastore, "profile", {"infer_as_draft": False, "inference_level": 3})
    scan = run_now(editor, datastore, "scan", {})
    running = make_run(datastore, status="running", user=editor, progress_total=15,
                       progress_done=4, progress_unit="Tables", logs=["working"])
    aborted = make_run(datastore, status="aborted", user=editor, progress_total=15,
                       progress_done=5, progress_unit="Tables",
                       units=[(f"table_{i:02d}", "success" if i < 5 else "queued", {})
                              for i in range(15)])
    make_run(datastore, status="queued", user=editor)
    make_run(datastore, status="failure", operation="sync", error="cannot connect: " + "x" * 200,
             created_at=timezone.now() - dt.timedelta(days=400))
    check = Check.objects.filter(container__datastore=datastore).order_by("pk")[0]
    Anomaly.objects.create(
        container=check.container, datastore=datastore, check_rule=check, check_type=check.type,
        field_name=check.field_name, run_id=scan.pk, last_run_id=scan.pk, failed_count=3,
        examples=[{"id": 1, "note": LONG_NAME}], description="3 rows fail " + LONG_NAME,
    )
    long = DatastoreFactory(name=LONG_NAME[:100])
    team = TeamFactory(name=("team " + LONG_NAME)[:100])
    team.members.add(editor)
    team.datastores.add(long)
    make_run(long, status="success", user=editor, operation="sync")
    return {
        "ds": datastore.pk, "long": long.pk, "scan": scan.pk, "running": running.pk,
        "aborted": aborted.pk, "team": team.pk, "editor": editor.pk,
        "container": Container.objects.filter(datastore=datastore).order_by("pk")[0].pk,
        "check": Check.objects.filter(container__datastore=datastore).order_by("pk")[0].pk,
        "anomaly": Anomaly.objects.order_by("pk")[0].pk,
    }


@pytest.fixture
def log_in(open_as):  # noqa: F811
    return open_as


def overflow(page) -> int:
    """How far the page reaches past the window's width (0: no sideways scrolling)."""
    return page.evaluate(
        "() => document.documentElement.scrollWidth - window.innerWidth")


def test_no_page_scrolls_sideways_from_360_to_1440_px(log_in, live_server, site, admin, editor,
                                                      viewer):
    shots = os.environ.get("ASSAY_SCREENSHOTS")
    users = {"admin": admin, "editor": editor, "viewer": viewer}
    wide = []
    for persona, user in users.items():
        for width in WIDTHS:
            page = log_in(user, width)
            for path in pages_for(persona, site):
                page.goto(f"{live_server.url}{path}")
                page.wait_for_load_state("load")
                if overflow(page) > 0:
                    wide.append((persona, width, path, overflow(page)))
            # Fragments in place: an expanded Activity row, the user menu, the dialog.
            page.goto(f"{live_server.url}/activity/")
            page.click(f"#run-{site['aborted']} button.expand")
            expect(page.locator(f"#run-{site['aborted']}-more")).to_contain_text("Configuration")
            page.click(".usermenu summary")
            logout = page.locator(".usermenu button:has-text('Log out')")
            expect(logout).to_be_visible()
            box = logout.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (persona, width)
            if overflow(page) > 0:
                wide.append((persona, width, "/activity/ expanded, menu open", overflow(page)))
    assert wide == [], f"pages wider than the window: {wide}"

    if shots:  # the screenshots of docs/screenshots/: ASSAY_SCREENSHOTS=docs/screenshots
        for width in SHOT_WIDTHS:
            for persona, user in (("editor", editor), ("admin", admin)):
                page = log_in(user, width)
                for path, who in PAGES:
                    if persona not in who or (persona == "admin" and "editor" in who):
                        continue
                    page.goto(f"{live_server.url}{path.format(**site)}")
                    page.wait_for_load_state("load")
                    page.screenshot(path=str(Path(shots) / f"{_slug(path)}-{width}.png"),
                                    full_page=True)


def _slug(path: str) -> str:
    name = re.sub(r"\{(\w+)\}", r"\1", path.split("?")[0]).strip("/").replace("/", "-")
    name = re.sub(r"\d+", "n", name) or "home"
    return name + ("-odd-filters" if "?" in path else "")


def test_no_serious_accessibility_violations_on_any_page(log_in, live_server, site, admin,
                                                        editor, viewer):
    assert AXE.exists(), "axe-core is missing: run `npm ci` (scripts/test does)"
    users = {"admin": admin, "editor": editor, "viewer": viewer}
    source = AXE.read_text()
    found = []
    for persona, user in users.items():
        # axe is injected as a script; the pages' CSP would (rightly) refuse it.
        page = log_in(user, 1280, bypass_csp=True)
        for path in pages_for(persona, site) + ["/activity/#expanded"]:
            page.goto(f"{live_server.url}{path}")
            page.wait_for_load_state("load")
            if path.endswith("#expanded"):
                page.click(f"#run-{site['aborted']} button.expand")
                expect(page.locator(f"#run-{site['aborted']}-more")).to_contain_text("Summary")
            page.add_script_tag(content=source)
            results = page.evaluate("""async () => {
                const result = await axe.run(document, {resultTypes: ['violations']});
                return result.violations
                    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                    .map((v) => v.id + ': ' + v.nodes.slice(0, 3).map((n) => n.target.join(' '))
                                                      .join(' | '));
            }""")
            found += [(persona, path, violation) for violation in results]
    assert found == [], "\n".join(map(str, found))


def test_keyboard_only_from_activity_to_an_aborted_run(log_in, live_server, datastore, editor):
    for _ in range(3):
        make_run(datastore, status="success")
    run = make_run(datastore, status="queued", user=editor)
    page = log_in(editor)
    page.goto(f"{live_server.url}/activity/")
    presses = 0

    def press(key: str) -> None:
        nonlocal presses
        presses += 1
        page.keyboard.press(key)

    # Skip link, into the list, past the row's toggle (and its bulk checkbox) to the Run's link.
    while presses < 10 and not page.evaluate(
            f"() => document.activeElement.matches('#run-{run.pk} a.run-id')"):
        press("Tab")
        if page.evaluate("() => document.activeElement.matches('a.skip[href=\"#runs\"]')"):
            press("Enter")
    assert page.evaluate(f"() => document.activeElement.matches('#run-{run.pk} a.run-id')"), \
        f"the first Run was not reached in {presses} presses"
    # The focused element is visibly outlined.
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", "")
    press("Enter")
    page.wait_for_url(f"{live_server.url}/activity/runs/{run.pk}/")
    for _ in range(30):  # Tab to the Abort button
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.matches('button.act-abort')"):
            break
    page.keyboard.press("Enter")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("partial results are kept and the Run lands on Aborted")
    assert page.evaluate("() => document.activeElement.id") == "confirm-dialog-yes"
    page.keyboard.press("Enter")
    expect(page.locator("#run-live .badge")).to_have_text("Aborted")
    assert Run.objects.get(pk=run.pk).status == "aborted"


def test_heatmap_is_one_tab_stop_with_arrow_keys(log_in, live_server, datastore, editor):
    make_run(datastore, status="success")
    page = log_in(editor)
    grid = page.locator("[role=grid]")
    assert grid.locator("a[tabindex='0']").count() == 1
    assert grid.locator("a[tabindex='-1']").count() >= 77
    today = grid.locator("a[tabindex='0']")
    today.focus()
    before = today.get_attribute("aria-label")
    page.keyboard.press("ArrowLeft")  # a week earlier
    moved = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert moved != before and moved.endswith(
        (dt.date.fromisoformat(before[-10:]) - dt.timedelta(days=7)).isoformat())
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"date_from="))
    expect(page.locator(".heat-title")).to_contain_text("all days")


def test_dialog_carries_the_confirmation_pages_explanation(log_in, live_server, datastore,
                                                          editor):
    run = make_run(datastore, status="aborted", user=editor, progress_total=15, progress_done=5,
                   progress_unit="Tables",
                   units=[(f"orders_{i:02d}", "success" if i < 5 else "queued", {})
                          for i in range(15)])
    page = log_in(editor)
    page.click(f"#run-{run.pk}-line button.act-delete")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Anomalies, profiles, checks and written tables stay.")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert Run.objects.filter(pk=run.pk).exists()
    page.click(f"#run-{run.pk}-line button.act-resume")
    expect(dialog).to_contain_text("10 of 15 tables remain: orders_05, orders_06")
    expect(page.locator("#confirm-dialog-yes")).to_have_text("Resume")
    page.click("#confirm-dialog-yes")
    page.wait_for_url(re.compile(r"/activity/runs/\d+/$"))
    assert Run.objects.filter(resumed_from=run).count() == 1


def test_a_viewers_open_activity_shows_a_new_run_without_reload(log_in, live_server, datastore,
                                                                editor, viewer):
    Container.objects.create(datastore=datastore, name="orders", kind="table")
    make_run(datastore, status="success")
    watcher = log_in(viewer)
    watcher.evaluate("() => { window.sameDocument = true; }")
    launcher = log_in(editor)
    launcher.goto(f"{live_server.url}/datastores/{datastore.pk}/launch/sync/")
    launcher.click("button:has-text('Launch Sync')")
    launcher.wait_for_url(re.compile(r"/activity/runs/\d+/$"))
    launched = int(re.search(r"/runs/(\d+)/$", launcher.url).group(1))
    started = time.monotonic()
    expect(watcher.locator("#run-rows .run").first).to_have_attribute(
        "id", f"run-{launched}", timeout=3_000)
    assert time.monotonic() - started <= 3.0
    assert watcher.evaluate("() => window.sameDocument") is True  # no reload


def test_bulk_abort_in_the_browser(log_in, live_server, datastore, editor):
    queued = [make_run(datastore, status="queued") for _ in range(3)]
    finished = make_run(datastore, status="success")
    page = log_in(editor)
    page.check("#select-matching")
    page.click("button:has-text('Abort selected')")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("3 will be aborted")
    expect(dialog).to_contain_text("1 already finished")
    page.click("#confirm-dialog-yes")
    expect(page.locator(".messages")).to_contain_text("Abort: 3 aborted, 1 already finished.")
    assert {r.status for r in Run.objects.filter(pk__in=[r.pk for r in queued])} == {"aborted"}
    assert Run.objects.get(pk=finished.pk).status == "success"
