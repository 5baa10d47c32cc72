"""Administration in a real browser: users and deactivation, API tokens with the CLI,
datastores made by a manager and Synced by a real worker, schedules fired by a real beat.

With ``ASSAY_SCREENSHOTS=<folder>`` the tests also save the pages they visit there (the
screenshots of docs/administration.md come from it).
"""

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import expect

from accounts.models import Level, Role, Team, User
from runs.models import ActorKind, Run, Schedule
from tests.conftest import ROOT, wait_for
from tests.factories import TeamFactory, UserFactory
from tests.test_browser import browser, open_as  # noqa: F401 -- fixtures

pytestmark = pytest.mark.browser

ASSAY_CLI = Path(sys.executable).parent / "assay"


def shoot(page, name: str) -> None:
    folder = os.environ.get("ASSAY_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def cli(live_server, token: str, *args) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    return subprocess.run(
        [str(ASSAY_CLI), *args, "--url", live_server.url, "--token", token],
        capture_output=True, text=True, env=environment, timeout=60,
    )


def shop_source(tmp_path) -> str:
    path = tmp_path / "shop.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT)")
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    return str(path)


def test_admin_creates_a_user_who_launches_then_deactivates_them(
    open_as, live_server, admin, datastore  # noqa: F811
):
    page = open_as(admin)
    page.click("nav.mainnav >> text=Users")
    page.fill("#id_username", "grace")
    page.fill("#id_email", "grace@example.com")
    page.fill("#id_password", "grace-initial-pw-7")
    page.click("button:has-text('Create user')")
    expect(page.locator("h1")).to_contain_text("grace")
    shoot(page, "user")

    page.click("nav.mainnav >> text=Teams")
    page.fill("#id_name", "Loaders")
    page.select_option("#id_level", str(Level.EDITOR))
    page.click("button:has-text('Create team')")
    page.select_option("#id_user", label="grace")
    page.click("button:has-text('Add member')")
    page.check("label:has-text('warehouse') >> xpath=preceding-sibling::input")
    page.click("button:has-text('Save datastores')")
    expect(page.locator(".messages")).to_contain_text("Datastores of Loaders saved")

    grace = open_as(User.objects.get(username="grace"), password="grace-initial-pw-7")
    grace.click("nav.mainnav >> text=Datastores")
    expect(grace.locator("summary:has-text('Launch')")).to_be_visible()
    key = grace_token(grace)
    assert cli(live_server, key, "runs", "list").returncode == 0

    page.goto(f"{live_server.url}/users/")
    page.click("a:has-text('grace')")
    expect(page.locator("main")).to_contain_text("Effective access")
    expect(page.locator("main")).to_contain_text("Loaders")
    page.click("button:has-text('Deactivate')")
    page.click("#confirm-dialog-yes")  # the page's confirmation dialog
    expect(page.locator(".messages")).to_contain_text("grace deactivated")
    expect(page.locator("h1")).to_contain_text("Deactivated")

    # At once: her open page's next request goes to the login page, her token gets 401.
    grace.reload()
    expect(grace).to_have_url(re.compile(r"/login/"))
    result = cli(live_server, key, "runs", "list")
    assert result.returncode == 1 and "revoked" in result.stderr, result.stderr


def grace_token(page) -> str:
    page.click("details.usermenu summary")
    page.click("text=Profile and API tokens")
    page.fill("#id_name", "laptop")
    page.click("button:has-text('Create token')")
    return page.locator("#new-key").input_value()


def test_a_user_makes_a_token_uses_it_with_the_cli_and_revokes_it(
    open_as, live_server, editor, datastore  # noqa: F811
):
    page = open_as(editor)
    page.click("details.usermenu summary")
    page.click("text=Profile and API tokens")
    page.fill("#id_name", "ci pipeline")
    page.click("button:has-text('Create token')")
    key = page.locator("#new-key").input_value()
    assert key.startswith("assay_")
    expect(page.locator("table")).to_contain_text("ci pipeline")
    shoot(page, "profile-token")

    listed = cli(live_server, key, "runs", "list")
    assert listed.returncode == 0, listed.stderr

    page.goto(f"{live_server.url}/account/")  # the key is shown once only
    assert key not in page.content()
    page.click("#token-{} button:has-text('Revoke')".format(
        editor.api_tokens.get(name="ci pipeline").pk))
    expect(page.locator("#confirm-dialog")).to_contain_text("Whatever uses it gets 401")
    page.click("#confirm-dialog-yes")
    expect(page.locator(".messages")).to_contain_text("revoked")

    refused = cli(live_server, key, "runs", "list")
    assert refused.returncode == 1
    assert "was revoked; create a new one. (HTTP 401, token_refused)" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.worker
def test_a_manager_adds_tests_and_syncs_a_datastore_a_viewer_never_sees_its_connection(
    open_as, live_server, worker_process, tmp_path  # noqa: F811
):
    # Committed tests start from empty tables: the Public team of the migrations is gone.
    Team.objects.get_or_create(is_public=True, defaults={"name": "Public", "level": Level.VIEWER})
    manager = UserFactory(username="manager", role=Role.MANAGER)
    analytics = TeamFactory(name="analytics", level=Level.EDITOR)
    analytics.members.add(manager)
    viewer = UserFactory(username="vera")
    path = shop_source(tmp_path)
    worker_process()

    page = open_as(manager)
    page.click("nav.mainnav >> text=Datastores")
    page.click("text=Add datastore")
    page.fill("#id_name", "shop")
    page.fill("#id_source_url", f"sqlite:///{path}")
    page.check("label:has-text('analytics') >> xpath=preceding-sibling::input")
    page.check("label:has-text('Public') >> xpath=preceding-sibling::input")
    page.click("button:has-text('Add datastore')")
    expect(page.locator(".messages")).to_contain_text("Datastore shop added")

    page.locator("tr", has_text="shop").get_by_role("link", name="Edit", exact=True).click()
    shoot(page, "datastore-edit")
    page.click("button:has-text('Test connection')")
    expect(page.locator(".messages")).to_contain_text("Connected to the source.")
    page.click("nav.mainnav >> text=Datastores")
    page.click("tr:has-text('shop') >> summary:has-text('Launch')")
    page.locator("tr", has_text="shop").get_by_role("link", name="Sync", exact=True).click()
    page.click("button:has-text('Launch Sync')")
    page.wait_for_url(re.compile(r"/activity/runs/\d+/$"))
    expect(page.locator("#run-live .badge")).to_have_text("Success", timeout=60_000)

    seen = open_as(viewer)
    seen.click("nav.mainnav >> text=Datastores")
    expect(seen.locator("tr:has-text('shop')")).to_contain_text("Editors only")
    store_id = Run.objects.get().datastore_id
    for url in ("/datastores/", f"/datastores/{store_id}/", "/activity/",
                f"/activity/runs/{Run.objects.get().pk}/"):
        seen.goto(f"{live_server.url}{url}")
        assert path not in seen.content() and str(tmp_path) not in seen.content(), url
    expect(seen.locator("main")).to_contain_text("shop")
    response = seen.goto(f"{live_server.url}/datastores/{store_id}/edit/")
    assert response.status == 403


@pytest.mark.worker
def test_a_schedule_made_in_the_browser_fires_and_its_runs_outlive_it(
    open_as, live_server, worker_process, editor, datastore, tmp_path  # noqa: F811
):
    datastore.source_url = f"sqlite:///{shop_source(tmp_path)}"
    datastore.save()
    page = open_as(editor)
    page.click("nav.mainnav >> text=Schedules")
    page.click("text=New schedule")
    page.fill("#id_name", "every minute")
    page.select_option("#id_datastore", label="warehouse")
    page.select_option("#id_operation", "sync")
    page.fill("#id_cron", "* * * * *")
    expect(page.locator("#cron-preview")).to_contain_text("Every minute (UTC)")
    expect(page.locator("#cron-preview li")).to_have_count(5)
    shoot(page, "schedule-form")
    page.click("button:has-text('Create schedule')")
    expect(page.locator(".messages")).to_contain_text("Schedule every minute saved")
    schedule = Schedule.objects.get()

    worker = worker_process(env={"RUN_SCHEDULE_INTERVAL": "1"})
    # As the Procfile runs them: beat, and the housekeeping worker that fires schedules.
    helpers = [start_celery(worker, tmp_path, "beat", "-s", str(tmp_path / "beat-schedule")),
               start_celery(worker, tmp_path, "worker", "-Q", "housekeeping", "-c", "1",
                            "--pool", "solo", "-n", f"housekeeping-{os.getpid()}@%h")]
    try:
        run = wait_for(lambda: Run.objects.filter(schedule=schedule).first(), timeout=90,
                       message="the schedule did not fire")
        wait_for(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=60,
                 message="the scheduled Sync did not finish")
    finally:
        for process in helpers:
            process.terminate()
            process.wait(timeout=20)
    assert run.triggered_by_kind == ActorKind.SCHEDULE

    page.goto(f"{live_server.url}/schedules/")
    expect(page.locator(f"#schedule-{schedule.pk}")).to_contain_text(f"Run #{run.pk}")
    shoot(page, "schedules")
    page.click(f"#schedule-{schedule.pk} >> text=Runs")
    expect(page.locator(f"#run-{run.pk}-line")).to_contain_text("every minute")

    page.goto(f"{live_server.url}/schedules/")
    page.click(f"#schedule-{schedule.pk} >> button:has-text('Delete')")
    page.click("#confirm-dialog-yes")
    expect(page.locator(".messages")).to_contain_text("Its Runs stay")
    page.goto(f"{live_server.url}/activity/runs/{run.pk}/")
    expect(page.locator("main")).to_contain_text(f"Schedule #{schedule.pk} (deleted)")
    expect(page.locator("#run-live .badge")).to_have_text("Success")


def start_celery(worker, tmp_path, command: str, *args: str) -> subprocess.Popen:
    """Another celery process (``beat``, a worker on another queue) on the worker's database
    and broker; its output goes to ``<command>.log`` in the test's folder."""
    log = open(tmp_path / f"{command}.log", "ab")  # noqa: SIM115 -- the process owns it
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "assay", command, "-l", "INFO", *args],
        cwd=ROOT, env=worker.env, stdout=log, stderr=subprocess.STDOUT,
    )


def test_the_audit_log_shows_what_admins_did(open_as, live_server, admin, datastore):  # noqa: F811
    client = Client()
    client.force_login(admin)
    client.post("/teams/", {"name": "Auditors", "level": Level.REPORTER})
    page = open_as(admin)
    page.click("nav.mainnav >> text=Audit")
    expect(page.locator("tbody tr").first).to_contain_text("Team created")
    expect(page.locator("tbody tr").first).to_contain_text("level: Reporter")
    page.select_option("#id_action", ["team.created"])
    page.click("button:has-text('Filter')")
    expect(page.locator("tbody")).to_contain_text("Auditors")
    shoot(page, "audit")
    with page.expect_download() as download:
        page.click("text=Export CSV")
    assert "Auditors" in Path(download.value.path()).read_text()
