"""Checks and anomalies in a real browser, with a real worker: the five levels at work.

A drafter authors a draft check and cannot activate it; an author activates it; an editor runs
a Scan on a real worker; the anomaly appears with its example records; the author
acknowledges it; a reporter sees the anomaly and its count but no example value anywhere
(page, fragment, API, log download).

With ``ASSAY_SCREENSHOTS=<folder>`` the test also saves the pages it visits there (the
screenshots of docs/checks-anomalies.md come from it).
"""

import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from datastores.models import Anomaly, AnomalyStatus, Check, CheckStatus, Container
from runs.models import Run
from tests.api_support import token_for
from tests.databases import run_now, sync_catalogue
from tests.test_browser import browser, open_as  # noqa: F401 -- fixtures

pytestmark = [pytest.mark.browser, pytest.mark.worker]

LEAK = -4711  # a negative quantity: the example value reporters must never see
EMAIL = "leaky.customer@example.com"


def shoot(page, name: str) -> None:
    folder = os.environ.get("ASSAY_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def orders_source(datastore, tmp_path, editor) -> Container:
    url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, "
                             "email TEXT, quantity INTEGER, status TEXT)"))
        conn.execute(sa.text("INSERT INTO orders VALUES (:id, :customer, :email, :qty, :status)"),
                     [{"id": i, "customer": f"customer {i}",
                       "email": EMAIL if i % 40 == 0 else f"c{i}@example.com",
                       "qty": LEAK if i % 40 == 0 else 1 + i % 5,
                       "status": "paid"} for i in range(1, 201)])
    engine.dispose()
    datastore.source_url = url
    datastore.save()
    sync_catalogue(editor, datastore)
    return Container.objects.get(datastore=datastore, name="orders")


def csrf_post(page, url: str):
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    return page.request.post(url, headers={"X-CSRFToken": token, "Referer": url})


def test_five_levels_from_draft_check_to_acknowledged_anomaly(
    open_as, live_server, worker_process, datastore, editor, author, drafter, reporter,  # noqa: F811
    tmp_path,
):
    container = orders_source(datastore, tmp_path, editor)
    worker_process()
    base = live_server.url

    # A drafter authors a draft check from the container page.
    page = open_as(drafter)
    page.click("text=Datastores")
    page.click(f"a[href='/datastores/{datastore.pk}/']")
    expect(page.locator("h1")).to_contain_text("warehouse")
    page.click(f"a[href='/datastores/{datastore.pk}/containers/{container.pk}/']")
    page.click("summary:has-text('Add a check')")
    page.click("a:has-text('Not negative')")
    page.select_option("#id_field", "quantity")
    expect(page.locator("#id_status option")).to_have_count(1)  # drafts only
    page.click("button:has-text('Create check')")
    page.wait_for_url(re.compile(r"/checks/\d+/$"))
    check = Check.objects.get(container=container)
    assert check.status == CheckStatus.DRAFT and check.created_by == drafter
    expect(page.locator(".detail-title .badge")).to_have_text("Draft")
    expect(page.locator("button:has-text('Activate')")).to_have_count(0)
    refused = csrf_post(page, f"{base}/checks/{check.pk}/activate/")
    assert refused.status == 403
    check.refresh_from_db()
    assert check.status == CheckStatus.DRAFT
    shoot(page, "check-draft")

    # An author activates it.
    page = open_as(author)
    page.goto(f"{base}/checks/{check.pk}/")
    page.click("button:has-text('Activate')")
    expect(page.locator(".detail-title .badge")).to_have_text("Active")
    check.refresh_from_db()
    assert check.status == CheckStatus.ACTIVE

    # An editor launches a Scan; a real worker runs it.
    page = open_as(editor)
    page.goto(f"{base}/datastores/{datastore.pk}/launch/scan/")
    page.click("button:has-text('Launch Scan')")
    page.wait_for_url(re.compile(r"/activity/runs/\d+/$"))
    run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
    expect(page.locator("#run-live .badge")).to_have_text("Success", timeout=60_000)
    anomaly = Anomaly.objects.get(check_rule=check)
    assert anomaly.failed_count == 5 and anomaly.run_id == run_id
    # The Results tab links the failed check to its anomaly.
    link = page.locator(f"#results-body a[href='/anomalies/{anomaly.pk}/']")
    expect(link).to_be_visible(timeout=10_000)
    shoot(page, "run-results")
    link.click()
    expect(page.locator("h1")).to_contain_text(f"#{anomaly.pk}")
    expect(page.locator(".examples")).to_contain_text(str(LEAK))
    expect(page.locator(".examples")).to_contain_text(EMAIL)
    expect(page.locator("button:has-text('Acknowledge')")).to_be_visible()  # Editor > Author

    # The author acknowledges it, with a comment.
    page = open_as(author)
    page.goto(f"{base}/anomalies/")
    expect(page.locator(f"#anomaly-{anomaly.pk}")).to_contain_text("Active")
    shoot(page, "anomalies")
    page.click(f"#anomaly-{anomaly.pk} a:has-text('#{anomaly.pk}')")
    page.fill("#comment", "Known loader bug, fix scheduled")
    page.click("button:has-text('Acknowledge')")
    expect(page.locator(".detail-title .badge")).to_have_text("Acknowledged")
    expect(page.locator(".history")).to_contain_text("Known loader bug, fix scheduled")
    expect(page.locator(".history")).to_contain_text("by author")
    shoot(page, "anomaly")
    if os.environ.get("ASSAY_SCREENSHOTS"):
        run_now(editor, datastore, "profile", {"infer_as_draft": True})  # fields' profiles
        for name, path in [("datastore", f"/datastores/{datastore.pk}/"),
                           ("container", f"/datastores/{datastore.pk}/containers/"
                                         f"{container.pk}/"),
                           ("checks", "/checks/")]:
            page.goto(f"{base}{path}")
            shoot(page, name)
    anomaly.refresh_from_db()
    assert anomaly.status == AnomalyStatus.ACKNOWLEDGED

    # A reporter sees the anomaly and its count, never an example value.
    page = open_as(reporter)
    page.click("text=Anomalies")
    row = page.locator(f"#anomaly-{anomaly.pk}")
    expect(row).to_contain_text("Acknowledged")
    expect(row.locator("td.num")).to_contain_text("5")
    row.locator("button.expand").click()  # the examples fragment, loaded by htmx
    expect(page.locator(f"#anomaly-{anomaly.pk}-more")).to_contain_text("shows the count only")
    assert str(LEAK) not in page.content() and EMAIL not in page.content()
    page.goto(f"{base}/anomalies/{anomaly.pk}/")
    expect(page.locator(".stats")).to_contain_text("5")
    expect(page.locator("#examples-title + .examples-wrap")).to_contain_text("count only")
    shoot(page, "anomaly-reporter")
    page.goto(f"{base}/datastores/{datastore.pk}/containers/{container.pk}/")
    assert str(LEAK) not in page.content() and EMAIL not in page.content()
    fragment = page.request.get(f"{base}/anomalies/{anomaly.pk}/examples/")
    assert fragment.ok and str(LEAK) not in fragment.text() and EMAIL not in fragment.text()
    log = page.request.get(f"{base}/activity/runs/{run_id}/log.txt")
    assert log.ok and "orders" in log.text()
    assert str(LEAK) not in log.text() and EMAIL not in log.text()
    token = token_for(reporter)
    for path in (f"/api/v1/anomalies/{anomaly.pk}", "/api/v1/anomalies",
                 f"/api/v1/runs/{run_id}/log.txt", f"/api/v1/checks/{check.pk}"):
        answer = page.request.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
        assert answer.ok, path
        assert str(LEAK) not in answer.text() and EMAIL not in answer.text(), path
    assert Run.objects.get(pk=run_id).status == "success"
