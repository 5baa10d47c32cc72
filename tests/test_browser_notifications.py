"""In a real browser: an editor adds a notification rule from the datastore page, sees it listed
without its secret, and a hostile webhook URL refused in the form; no CSP violation."""

import os

import pytest
from playwright.sync_api import expect

from notifications.models import NotificationRule
from notifications.webhook_url import UNIFORM_REFUSAL
from tests.ops_support import Receiver
from tests.test_browser import browser, open_as  # noqa: F401 -- shared fixtures
from tests.test_browser_security import WATCH_CSP, shot, violations

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser
SECRET = "browser-signing-secret-123"


def test_editor_manages_notification_rules(open_as, live_server, editor, datastore):  # noqa: F811
    hook = Receiver([200])
    try:
        page = open_as(editor)
        page.context.add_init_script(WATCH_CSP)
        page.goto(f"{live_server.url}/datastores/{datastore.pk}/")
        page.get_by_role("link", name="Notifications").click()
        heading = page.get_by_role("heading", name=f"Notifications of {datastore.name}")
        expect(heading).to_be_visible()
        expect(page.get_by_text("No notification rules yet.")).to_be_visible()

        page.fill("#id_name", "night shift")
        page.get_by_label("Failure").check()
        page.get_by_label("New anomalies").check()
        page.fill("#id_webhook_url", "file:///etc/passwd")
        page.fill("#id_webhook_secret", SECRET)
        page.get_by_role("button", name="Add rule").click()
        expect(page.get_by_text(UNIFORM_REFUSAL)).to_be_visible()
        assert page.input_value("#id_webhook_secret") == ""  # never sent back
        assert not NotificationRule.objects.exists()

        page.fill("#id_webhook_url", hook.url)
        page.fill("#id_webhook_secret", SECRET)
        page.select_option("#id_payload_format", "slack")
        page.get_by_role("button", name="Add rule").click()
        expect(page.get_by_text("Notification rule night shift added.")).to_be_visible()
        row = page.get_by_role("row", name="night shift")
        expect(row).to_contain_text("Failure, New anomalies")
        expect(row).to_contain_text("Slack-compatible")
        assert SECRET not in page.content()
        assert violations(page) == []
        shot(page, "notifications")

        row.get_by_role("button", name="Delete").click()
        expect(page.get_by_text("Notification rule night shift deleted.")).to_be_visible()
        expect(page.get_by_text("No notification rules yet.")).to_be_visible()
    finally:
        hook.stop()
