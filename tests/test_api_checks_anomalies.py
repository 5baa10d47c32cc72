"""REST API of checks and anomalies: lists, keyset pages, filters, writes and their errors."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from datastores.models import Anomaly, AnomalyStatus, Check, CheckStatus, Container, Field
from tests.api_support import bearer, orders_container
from tests.factories import DatastoreFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]
STATUSES = [AnomalyStatus.ACTIVE, AnomalyStatus.ACKNOWLEDGED, AnomalyStatus.RESOLVED]


def post(client, path, body=None):
    return client.post(path, json.dumps(body or {}), content_type="application/json")


def walk(client, path, **params):
    """Every item of a list, page by page; the pages' ids."""
    items, cursor, pages = [], None, 0
    while True:
        response = client.get(path, {**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.content
        page = response.json()
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            return items, pages


@pytest.fixture
def many(datastore):
    container, checks = orders_container(datastore)
    other = Container.objects.create(datastore=datastore, name="items", kind="table")
    now = timezone.now()
    anomalies = []
    for i in range(23):
        check = Check.objects.create(container=other if i % 2 else container,
                                     type="not_null" if i % 3 else "unique", field_name=f"f{i}")
        anomaly = Anomaly.objects.create(
            container=check.container, check_rule=check, check_type=check.type,
            field_name=check.field_name, failed_count=i + 1,
            status=STATUSES[i % 3],
        )
        Anomaly.objects.filter(pk=anomaly.pk).update(created_at=now - dt.timedelta(days=23 - i))
        anomalies.append(anomaly)
    hidden = DatastoreFactory(name="hidden")
    secret = Container.objects.create(datastore=hidden, name="secret", kind="table")
    Anomaly.objects.create(container=secret, failed_count=1, check_type="not_null")
    return {"container": container, "other": other, "anomalies": anomalies, "checks": checks}


def test_anomaly_pages_walk_everything_newest_first_without_duplicates(viewer, many):
    items, pages = walk(bearer(viewer), "/api/v1/anomalies", limit=5)
    ids = [item["id"] for item in items]
    assert ids == sorted((a.pk for a in many["anomalies"]), reverse=True)
    assert pages == 5
    assert all(item["datastore"]["name"] == "warehouse" for item in items)


@pytest.mark.parametrize("params,expected", [
    ({"status": "acknowledged"}, lambda i, a: i % 3 == 1),
    ({"check_type": "unique"}, lambda i, a: i % 3 == 0),
    ({"container": "other"}, lambda i, a: i % 2 == 1),
    ({"status": "active", "container": "other"}, lambda i, a: i % 3 == 0 and i % 2 == 1),
    ({"found_after": "days:10"}, lambda i, a: 23 - i <= 10),
    ({"found_after": "days:10", "found_before": "days:5"}, lambda i, a: 5 < 23 - i <= 10),
])
def test_anomaly_filters(viewer, many, params, expected):
    now = timezone.now()
    query = {}
    for key, value in params.items():
        if value == "other":
            value = many["other"].pk
        elif isinstance(value, str) and value.startswith("days:"):
            value = (now - dt.timedelta(days=int(value[5:]), hours=1)).isoformat()
        query[key] = value
    items, _ = walk(bearer(viewer), "/api/v1/anomalies", limit=4, **query)
    want = [a.pk for i, a in enumerate(many["anomalies"]) if expected(i, a)]
    assert sorted(item["id"] for item in items) == sorted(want)
    assert [item["id"] for item in items] == sorted(want, reverse=True)


def test_list_errors_have_the_runs_shape(viewer, many):
    client = bearer(viewer)
    bad = client.get("/api/v1/anomalies", {"cursor": "garbage"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor"
    runs_page = client.get("/api/v1/runs", {"limit": 1})
    assert runs_page.status_code == 200
    from assay.paging import encode_cursor

    wrong_list = client.get("/api/v1/anomalies", {"cursor": encode_cursor("run", 5)})
    assert wrong_list.status_code == 400
    for params in ({"status": "exploded"}, {"limit": 0}, {"check_type": "nope"},
                   {"found_after": "yesterday"}, {"datastore": "x"}):
        response = client.get("/api/v1/anomalies", params)
        assert response.status_code == 422, params
        assert set(response.json()) >= {"detail", "code"}
    assert client.get("/api/v1/checks", {"status": "nope"}).status_code == 422


def test_check_list_filters_and_recent_results(viewer, many):
    client = bearer(viewer)
    items, _ = walk(client, "/api/v1/checks", container=many["container"].pk,
                    status="draft", limit=2)
    assert [i["id"] for i in items] == [many["checks"]["draft"].pk]
    by_field, _ = walk(client, "/api/v1/checks", field="customer", limit=50)
    assert {i["type"] for i in by_field} == {"not_null", "max_length"}
    check = many["checks"]["quantity"]
    from datastores.models import CheckEvaluation

    for run_id, failed in [(1, 0), (2, 4), (3, 0), (4, None)]:
        CheckEvaluation.objects.create(check_rule=check, run_id=run_id, failed_count=failed,
                                       error="boom" if failed is None else "",
                                       evaluated_at=timezone.now())
    got = client.get(f"/api/v1/checks/{check.pk}").json()
    assert [(r["run"], r["passed"]) for r in got["recent"]] == [
        (1, True), (2, False), (3, True), (4, None)]
    assert got["recent"][3]["error"] == "boom"


def test_create_update_and_transition_checks(author, datastore):
    container = Container.objects.create(datastore=datastore, name="t", kind="table")
    Field.objects.create(container=container, name="qty", type="integer")
    client = bearer(author)
    bad = post(client, "/api/v1/checks", {"container": container.pk, "type": "between",
                                          "field": "qty", "params": {"min": "a"}})
    assert bad.status_code == 422 and "min" in bad.json()["errors"]
    unknown_field = post(client, "/api/v1/checks", {"container": container.pk,
                                                    "type": "not_null", "field": "nope"})
    assert unknown_field.status_code == 422 and "field" in unknown_field.json()["errors"]
    made = post(client, "/api/v1/checks", {"container": container.pk, "type": "between",
                                           "field": "qty", "params": {"min": 0}})
    assert made.status_code == 201
    check = made.json()
    assert check["status"] == "draft" and check["actions"] == ["activate", "archive", "edit"]
    patched = client.patch(f"/api/v1/checks/{check['id']}", json.dumps({"params": {"max": 9}}),
                           content_type="application/json")
    assert patched.status_code == 200 and patched.json()["params"] == {"min": None, "max": 9}
    assert post(client, f"/api/v1/checks/{check['id']}/activate").json()["status"] == "active"
    again = post(client, f"/api/v1/checks/{check['id']}/activate")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    assert post(client, f"/api/v1/checks/{check['id']}/explode").status_code == 422

    inferred = Check.objects.create(container=container, type="not_null", field_name="qty",
                                    origin="inferred", status=CheckStatus.DRAFT)
    refused = client.patch(f"/api/v1/checks/{inferred.pk}", json.dumps({"params": {}}),
                           content_type="application/json")
    assert refused.status_code == 409


def test_bulk_refuses_invisible_ids_and_reports_skips(author, many):
    client = bearer(author)
    hidden = Anomaly.objects.get(container__name="secret")
    visible = [a for a in many["anomalies"] if a.status == AnomalyStatus.ACTIVE][:3]
    refused = post(client, "/api/v1/anomalies/bulk", {"action": "resolve",
                                                      "ids": [visible[0].pk, hidden.pk]})
    assert refused.status_code == 404
    assert Anomaly.objects.get(pk=visible[0].pk).status == AnomalyStatus.ACTIVE
    resolved = many["anomalies"][2]
    result = post(client, "/api/v1/anomalies/bulk", {
        "action": "acknowledge", "ids": [a.pk for a in visible] + [resolved.pk],
        "comment": "triaged"})
    assert result.status_code == 200
    body = result.json()
    assert body["changed"] == [a.pk for a in visible]
    assert list(body["skipped"]) == [str(resolved.pk)]
    history = bearer(author).get(f"/api/v1/anomalies/{visible[0].pk}").json()["history"]
    assert history[-1]["to_status"] == "acknowledged" and history[-1]["comment"] == "triaged"
    assert post(client, "/api/v1/anomalies/bulk", {"action": "resolve", "ids": []}
                ).status_code == 422
    assert post(client, "/api/v1/checks/bulk", {"action": "activate", "ids": [True]}
                ).status_code == 422


def test_apply_validates_everything_first(author, datastore):
    container, checks = orders_container(datastore)
    client = bearer(author)
    result = post(client, f"/api/v1/datastores/{datastore.pk}/checks/apply", {"checks": [
        {"container": "orders", "type": "not_null", "field": "status", "status": "active"},
        {"id": checks["draft"].pk, "container": "orders", "type": "max_length",
         "field": "customer", "params": {"length": 0}},
        {"container": "orders", "type": "nope"},
        {"container": "orders", "type": "not_null", "field": 7, "colour": "red"},
    ]})
    assert result.status_code == 422
    assert set(result.json()["errors"]) == {"1.params.length", "2.type", "3.field", "3.colour"}
    assert not Check.objects.filter(field_name="status", type="not_null").exists()
    shape = post(client, f"/api/v1/datastores/{datastore.pk}/checks/apply",
                 {"checks": ["not a mapping"]})
    assert shape.status_code == 422 and "checks.0" in shape.json()["errors"]
    missing = post(client, "/api/v1/datastores/999999/checks/apply", {"checks": []})
    assert missing.status_code == 404


def test_lists_show_the_last_eight_results_oldest_first(viewer, datastore):
    from datastores.models import CheckEvaluation

    container = Container.objects.create(datastore=datastore, name="t", kind="table")
    checks = [Check.objects.create(container=container, type="not_null", field_name=f"f{i}")
              for i in range(3)]
    for run_id in range(1, 13):
        for check in checks[:2]:
            CheckEvaluation.objects.create(check_rule=check, run_id=run_id,
                                           failed_count=run_id % 2, evaluated_at=timezone.now())
    items = {c["id"]: c for c in bearer(viewer).get("/api/v1/checks").json()["items"]}
    for check in checks[:2]:
        assert [r["run"] for r in items[check.pk]["recent"]] == list(range(5, 13))
        assert items[check.pk]["recent"][0]["evaluated_at"]
    assert items[checks[2].pk]["recent"] == []
