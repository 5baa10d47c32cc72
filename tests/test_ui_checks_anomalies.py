"""The datastore, container, check and anomaly pages; what each level sees and may do there."""

import re

import pytest
import sqlalchemy as sa

from datastores.checks import check_create
from datastores.models import Anomaly, AnomalyStatus, Check, CheckStatus, Container
from tests.api_support import bearer
from tests.databases import run_now, sync_catalogue
from tests.ui_support import client_for, csrf_token

SECRET = "secret-4711@example.com"  # an example record's value
TOP = "TOPVALUE-99"  # a profile top value
PARAM = "PARAM-VALUE"  # a check parameter


@pytest.fixture
def scanned(datastore, editor, tmp_path):
    """A source with defects, profiled and scanned: checks, evaluations, anomalies, logs."""
    url = f"sqlite:///{tmp_path / 'people.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, "
                             "kind TEXT, age INTEGER)"))
        rows = [{"id": i, "email": SECRET if i % 5 == 0 else f"p{i}@example.com",
                 "kind": TOP if i % 2 else "other", "age": -i if i % 7 == 0 else 30 + i % 40}
                for i in range(1, 61)]
        conn.execute(sa.text("INSERT INTO people VALUES (:id, :email, :kind, :age)"), rows)
    engine.dispose()
    datastore.source_url = url
    datastore.save()
    sync_catalogue(editor, datastore)
    profile = run_now(editor, datastore, "profile", {"infer_as_draft": False})
    assert profile.status == "success"
    people = Container.objects.get(datastore=datastore, name="people")
    for check_type, field, params in [("unique", "email", {}),
                                      ("expected_values", "kind", {"values": [PARAM]})]:
        check_create(user=editor, container=people, type=check_type, field_name=field,
                     params=params, status=CheckStatus.ACTIVE)
    scan = run_now(editor, datastore, "scan", {})
    assert scan.status == "success"
    anomaly = Anomaly.objects.get(check_rule__type="unique", check_rule__field_name="email")
    assert any(SECRET in str(row) for row in anomaly.examples)
    return {"container": people, "scan": scan, "profile": profile, "anomaly": anomaly}


def pages(datastore, scanned) -> list[str]:
    container, anomaly, scan = scanned["container"], scanned["anomaly"], scanned["scan"]
    check = anomaly.check_rule
    return [
        f"/datastores/{datastore.pk}/",
        f"/datastores/{datastore.pk}/containers/{container.pk}/",
        "/checks/", f"/checks/?datastore={datastore.pk}&container={container.pk}",
        f"/checks/{check.pk}/",
        "/anomalies/", f"/anomalies/{anomaly.pk}/", f"/anomalies/{anomaly.pk}/examples/",
        f"/activity/runs/{scan.pk}/", f"/activity/runs/{scan.pk}/more/",
        f"/activity/runs/{scan.pk}/log.txt", f"/activity/runs/{scanned['profile'].pk}/log.txt",
        f"/activity/runs/{scan.pk}/logs/?after=0",
    ]


def api_paths(datastore, scanned) -> list[str]:
    anomaly, scan = scanned["anomaly"], scanned["scan"]
    return [
        "/api/v1/anomalies", f"/api/v1/anomalies/{anomaly.pk}", "/api/v1/checks",
        f"/api/v1/checks/{anomaly.check_rule_id}", f"/api/v1/datastores/{datastore.pk}/containers",
        f"/api/v1/runs/{scan.pk}", f"/api/v1/runs/{scan.pk}/logs",
        f"/api/v1/runs/{scan.pk}/log.txt",
    ]


def body(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.both_backends
def test_reporters_see_counts_and_statuses_but_no_source_values(datastore, reporter, viewer,
                                                                scanned):
    reporter_client, viewer_client = client_for(reporter), client_for(viewer)
    shown_to_viewer = ""
    for url in pages(datastore, scanned):
        seen = reporter_client.get(url)
        assert seen.status_code == 200, url
        text = body(seen)
        for value in (SECRET, TOP, PARAM):
            assert value not in text, f"{value} on {url}"
        shown_to_viewer += body(viewer_client.get(url))
    # The same pages show them to a viewer: the reporter's were not empty by accident.
    for value in (SECRET, TOP, PARAM):
        assert value in shown_to_viewer, value

    anomaly = scanned["anomaly"]
    page = body(reporter_client.get(f"/anomalies/{anomaly.pk}/"))
    assert f"{anomaly.failed_count}" in page and "Active" in page
    assert "your level (Reporter) shows the count only" in page

    for path in api_paths(datastore, scanned):
        response = bearer(reporter).get(path)
        assert response.status_code == 200, path
        text = body(response)
        for value in (SECRET, TOP, PARAM):
            assert value not in text, f"{value} in {path}"
    detail = bearer(reporter).get(f"/api/v1/anomalies/{anomaly.pk}").json()
    assert detail["examples"] is None and detail["failed_count"] == anomaly.failed_count
    assert bearer(viewer).get(f"/api/v1/anomalies/{anomaly.pk}").json()["examples"]


@pytest.mark.django_db(transaction=True)
def test_container_page_shows_profiles_checks_anomalies_and_runs(datastore, viewer, scanned):
    container = scanned["container"]
    html = client_for(viewer).get(f"/datastores/{datastore.pk}/containers/{container.pk}/")
    text = html.content.decode()
    assert TOP in text  # top values
    assert "email: unique" in text and "kind: expected values" in text
    assert f"#{scanned['anomaly'].pk}" in text
    assert f"#{scanned['scan'].pk}" in text and f"#{scanned['profile'].pk}" in text
    overview = client_for(viewer).get(f"/datastores/{datastore.pk}/").content.decode()
    assert re.search(r">\s*60\s*<", overview)  # rows, from the profile


@pytest.mark.django_db(transaction=True)
def test_run_results_link_failed_checks_to_their_anomalies(datastore, viewer, scanned):
    html = client_for(viewer).get(f"/activity/runs/{scanned['scan'].pk}/").content.decode()
    anomaly = scanned["anomaly"]
    assert f'href="/anomalies/{anomaly.pk}/"' in html
    assert f"{anomaly.failed_count} failed" in html


@pytest.mark.django_db
def test_drafter_authors_a_draft_with_field_errors_from_the_engine(datastore, drafter):
    container = Container.objects.create(datastore=datastore, name="orders", kind="table")
    container.fields.create(name="qty", type="integer", position=0)
    client = client_for(drafter, csrf=True)
    url = f"/datastores/{datastore.pk}/containers/{container.pk}/checks/new/"
    picker = client.get(url).content.decode()
    assert "?type=between" in picker
    token = csrf_token(client, f"{url}?type=between")
    form = client.get(f"{url}?type=between").content.decode()
    assert 'name="min"' in form and 'name="max"' in form
    assert 'value="active"' not in form  # a drafter writes drafts only

    bad = client.post(url, {"csrfmiddlewaretoken": token, "type": "between", "field": "qty",
                            "min": "9", "max": "1", "status": "draft"})
    assert bad.status_code == 422
    assert "is greater than" in bad.content.decode()
    assert not Check.objects.exists()

    made = client.post(url, {"csrfmiddlewaretoken": token, "type": "between", "field": "qty",
                             "min": "0", "max": "5", "status": "draft"})
    check = Check.objects.get()
    assert made.status_code == 302 and made["Location"] == f"/checks/{check.pk}/"
    assert check.status == CheckStatus.DRAFT and check.params == {"min": 0, "max": 5}
    assert check.created_by == drafter
    # The drafter may edit it, not activate it: no button, and a direct POST is refused.
    page = client.get(f"/checks/{check.pk}/").content.decode()
    assert "Edit" in page and "Activate" not in page
    refused = client.post(f"/checks/{check.pk}/activate/", {"csrfmiddlewaretoken": token})
    assert refused.status_code == 403
    edited = client.post(f"/checks/{check.pk}/edit/", {"csrfmiddlewaretoken": token,
                                                         "field": "qty", "min": "1", "max": ""})
    assert edited.status_code == 302
    check.refresh_from_db()
    assert check.params == {"min": 1, "max": None}


@pytest.mark.django_db
def test_bulk_activation_of_inferred_drafts(datastore, author, drafter):
    container = Container.objects.create(datastore=datastore, name="orders", kind="table")
    drafts = [Check.objects.create(container=container, type="not_null", field_name=f"f{i}",
                                   status=CheckStatus.DRAFT, origin="inferred")
              for i in range(20)]
    listing = f"/checks/?datastore={datastore.pk}&container={container.pk}&status=draft"
    client = client_for(author, csrf=True)
    html = client.get(listing).content.decode()
    assert html.count('name="ids"') == 20 and 'value="activate"' in html
    token = csrf_token(client, listing)
    response = client.post("/checks/bulk/", {"csrfmiddlewaretoken": token, "action": "activate",
                                             "ids": [c.pk for c in drafts], "next": listing})
    assert response.status_code == 302 and response["Location"] == listing
    assert not Check.objects.filter(status=CheckStatus.DRAFT).exists()
    assert "20 checks updated." in client.get(listing).content.decode()

    # A drafter's list offers no bulk actions, and a direct bulk POST changes nothing.
    drafter_client = client_for(drafter)
    assert 'name="ids"' not in drafter_client.get("/checks/").content.decode()
    assert drafter_client.post("/checks/bulk/", {"action": "archive",
                                                 "ids": [drafts[0].pk]}).status_code == 403
    assert Check.objects.filter(status=CheckStatus.ACTIVE).count() == 20


@pytest.mark.django_db
def test_anomaly_actions_with_comments_and_history(datastore, author, reporter):
    container = Container.objects.create(datastore=datastore, name="orders", kind="table")
    check = Check.objects.create(container=container, type="not_null", field_name="a")
    anomaly = Anomaly.objects.create(container=container, check_rule=check, failed_count=4,
                                     check_type="not_null", field_name="a", run_id=99999)
    client = client_for(author, csrf=True)
    page = client.get(f"/anomalies/{anomaly.pk}/").content.decode()
    assert "Run #99999" in page and "(Run deleted)" in page
    token = csrf_token(client, f"/anomalies/{anomaly.pk}/")
    client.post(f"/anomalies/{anomaly.pk}/acknowledge/",
                {"csrfmiddlewaretoken": token, "comment": "<b>looking</b> into it"})
    anomaly.refresh_from_db()
    assert anomaly.status == AnomalyStatus.ACKNOWLEDGED
    page = client.get(f"/anomalies/{anomaly.pk}/").content.decode()
    assert "Active → Acknowledged" in page and "by author" in page
    assert "&lt;b&gt;looking&lt;/b&gt; into it" in page  # escaped, never markup
    # A second acknowledge is reported, not applied twice.
    client.post(f"/anomalies/{anomaly.pk}/acknowledge/", {"csrfmiddlewaretoken": token})
    assert "does not apply" in client.get("/anomalies/").content.decode()
    assert anomaly.events.count() == 1
    # Reporters see the list without buttons; their POST is refused.
    listing = client_for(reporter).get("/anomalies/").content.decode()
    assert f"#{anomaly.pk}" in listing and 'name="ids"' not in listing
    assert client_for(reporter).post(f"/anomalies/{anomaly.pk}/resolve/").status_code == 403


@pytest.mark.django_db
def test_pages_of_invisible_objects_are_404(datastore, outsider):
    container = Container.objects.create(datastore=datastore, name="orders", kind="table")
    check = Check.objects.create(container=container, type="not_null", field_name="a")
    anomaly = Anomaly.objects.create(container=container, check_rule=check, failed_count=1)
    client = client_for(outsider)
    for url in [f"/datastores/{datastore.pk}/", f"/datastores/{datastore.pk}/containers/"
                f"{container.pk}/", f"/checks/{check.pk}/", f"/anomalies/{anomaly.pk}/",
                f"/anomalies/{anomaly.pk}/examples/", f"/checks/{check.pk}/edit/"]:
        assert client.get(url).status_code == 404, url
    assert client.post(f"/anomalies/{anomaly.pk}/resolve/").status_code == 404
    assert client.post("/checks/bulk/", {"action": "archive", "ids": [check.pk]}).status_code == 404
    assert f"#{check.pk}" not in client.get("/checks/").content.decode()
    assert client.get("/anomalies/?status=exploded&found_from=never").status_code == 200
