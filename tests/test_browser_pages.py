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
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

from datastores.models import Anomaly, Check, Container
from runs.models import Run
from tests.conftest import ROOT
from tests.databases import run_now, sync_catalogue
from tests.factories import DatastoreFactory, TeamFactory
from tests.test_browser import CHROMIUM_ARGS, PASSWORD, browser  # noqa: F401 -- fixture
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
        "aborted": aborted.pk, "team": team.pk,
        "container": Container.objects.filter(datastore=datastore).order_by("pk")[0].pk,
        "check": Check.objects.filter(container__datastore=datastore).order_by("pk")[0].pk,
        "anomaly": Anomaly.objects.order_by("pk")[0].pk,
    }


@pytest.fixture
def log_in(browser, live_server):  # noqa: F811
    """``log_in(user, width)`` -> a Page of a new context of that width, logged in."""
    contexts = []

    def log_in(user, width: int = 1280, **options):
        context = browser.new_context(viewport={"width": width, "height": 900}, **options)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/activity/")
        return page

    yield log_in
    for context in contexts:
        context.close()


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
                page.wait_for_load_state("networkidle")
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
            assert 0 <= box["x"] and box["x"] + box["width"] <= width, (persona, width)
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
                    page.wait_for_load_state("networkidle")
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
            page.wait_for_load_state("networkidle")
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
    assert found == []
