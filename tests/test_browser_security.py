"""In a real browser: the Content-Security-Policy holds on every page with nothing broken,
live polling still works (and pauses while the tab is hidden), the API docs page works with
no outside network, and the datastore form refuses an attack URL as a person sees it."""

import os
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from accounts.models import Level, Role
from datastores.demo_source import generate_demo_source
from datastores.models import Datastore
from datastores.url_policy import UNIFORM_REFUSAL
from tests.factories import TeamFactory, UserFactory
from tests.test_browser import browser, open_as  # noqa: F401 -- shared fixtures
from tests.ui_support import make_run

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

# Collects the page's CSP violations (an init script runs before the page's own code).
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
    window.cspViolations.push(event.violatedDirective + ' ' + event.blockedURI);
});
"""
SHOTS = os.environ.get("ASSAY_SCREENSHOTS")  # a folder: save screenshots there to look at


def violations(page) -> list[str]:
    return page.evaluate("window.cspViolations")


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_pages_work_under_the_content_security_policy(open_as, live_server, admin,  # noqa: F811
                                                      datastore):
    running = make_run(datastore, status="running", progress_total=4, progress_done=1,
                       progress_unit="Tables")
    done = make_run(datastore, status="success", progress_total=4, progress_done=4,
                    progress_unit="Tables")
    page = open_as(admin)
    page.context.add_init_script(WATCH_CSP)
    header = page.goto(f"{live_server.url}/activity/").headers["content-security-policy"]
    assert "script-src 'self'" in header and "'unsafe-inline'" not in header
    assert "'unsafe-eval'" not in header
    # The progress bar is drawn by a class, not an inline style the policy would drop.
    done_width = page.locator(f"#run-{done.pk}-line .bar span").evaluate(
        "(el) => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect()"
        ".width")
    assert done_width == pytest.approx(1.0, abs=0.01)
    # Live rows poll while visible...
    with page.expect_request(f"**/activity/runs/{running.pk}/line/**", timeout=10_000):
        pass
    # ...and pause while the tab is hidden.
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
    }""")
    polls = []
    page.on("request", lambda request: "/line/" in request.url and polls.append(request.url))
    page.wait_for_timeout(5_000)
    assert polls == []
    page.evaluate("() => { delete document.visibilityState; }")
    with page.expect_request(f"**/activity/runs/{running.pk}/line/**", timeout=10_000):
        pass
    shot(page, "activity-csp")
    for path in (f"/activity/runs/{running.pk}/", "/datastores/", "/datastores/new/",
                 f"/datastores/{datastore.pk}/edit/", "/teams/", "/api/v1/docs"):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        assert violations(page) == [], path
    # The rows expand through htmx and assay.js under the policy too.
    page.goto(f"{live_server.url}/activity/")
    page.click(f"#run-{done.pk} button.expand")
    expect(page.locator(f"#run-{done.pk}-more")).to_contain_text("Configuration")
    assert violations(page) == []


def test_the_api_docs_page_works_offline(browser, live_server):  # noqa: F811
    context = browser.new_context()
    outside = []

    def only_this_server(route):
        if urlparse(route.request.url).netloc != urlparse(live_server.url).netloc:
            outside.append(route.request.url)
            return route.abort()
        return route.continue_()

    context.route("**/*", only_this_server)
    page = context.new_page()
    page.goto(f"{live_server.url}/api/v1/docs")
    expect(page.locator(".swagger-ui .title")).to_contain_text("Assay API", timeout=20_000)
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert page.locator(".opblock").count() > 10
    assert outside == []
    shot(page, "api-docs")
    context.close()


def test_a_manager_adds_a_datastore_and_an_attack_url_is_refused(open_as, live_server,  # noqa: F811
                                                                  tmp_path, settings):
    sources = tmp_path / "sources"
    sources.mkdir()
    generate_demo_source(f"sqlite:///{sources / 'shop.sqlite3'}", rows=20)
    settings.DATASTORE_FILE_DIRS = [str(sources)]
    manager = UserFactory(username="manager", role=Role.MANAGER)
    TeamFactory(name="analysts", level=Level.EDITOR).members.add(manager)
    page = open_as(manager)
    page.click("text=Datastores")
    page.click("text=Add datastore")
    page.fill("#id_name", "loot")
    page.fill("#id_source_url", f"sqlite:///file:{tmp_path / 'x.db'}?mode=rwc&uri=true")
    page.click("button:has-text('Add datastore')")
    expect(page.locator(".field-error")).to_have_text(UNIFORM_REFUSAL)
    shot(page, "datastore-form-refused")
    assert not (tmp_path / "x.db").exists() and not Datastore.objects.exists()
    page.fill("#id_name", "shop")
    page.fill("#id_source_url", f"sqlite:///{sources / 'shop.sqlite3'}")
    page.check("text=analysts")
    page.click("button:has-text('Add datastore')")
    expect(page.locator(".messages")).to_contain_text("Datastore shop added.")
    row = page.locator("tr", has_text="shop")
    expect(row).to_contain_text("sqlite")
    row.get_by_role("link", name="Edit").click()
    expect(page.locator("#id_source_url")).to_have_value(f"sqlite:///{sources / 'shop.sqlite3'}")
    page.click("button:has-text('Test connection')")
    expect(page.locator(".messages")).to_contain_text("Connected to the source.")
    shot(page, "datastore-form-edit")
