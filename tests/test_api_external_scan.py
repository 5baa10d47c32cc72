"""External Scan through the API: open, register results per container, finish; abort; 409/422."""

import threading

import pytest
from django.db import connection

from datastores.models import Anomaly, Check
from runs.models import Run, RunContainer, RunLogEntry
from tests.api_support import bearer, orders_container
from tests.factories import DatastoreFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


@pytest.fixture
def catalogue(datastore):
    container, checks = orders_container(datastore)
    orders_container(datastore, name="customers")
    return container, checks


@pytest.fixture
def client(editor):
    return bearer(editor)


def open_scan(client, datastore, config=None) -> dict:
    response = client.post("/api/v1/external-scans",
                           {"datastore": datastore.pk, "config": config},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def post_results(client, run_id, body):
    return client.post(f"/api/v1/external-scans/{run_id}/results", body,
                       content_type="application/json")


def orders_results(checks, **overrides) -> dict:
    return {
        "container": "orders",
        "records_scanned": 1000,
        "results": [
            {"check": checks["unique_id"].pk, "failed_count": 0},
            {"check": checks["quantity"].pk, "failed_count": 12,
             "examples": [{"id": "7", "quantity": "-3"}]},
            {"check": checks["status"].pk, "failed_count": 2,
             "examples": [{"id": "9", "status": "lost"}, {"id": "10", "status": "??"}]},
        ],
        **overrides,
    }


def test_full_flow_records_units_anomalies_metrics_and_logs(client, datastore, catalogue):
    container, checks = catalogue
    run = open_scan(client, datastore, {"containers": ["orders"], "source": "nightly pipeline"})
    assert run["operation"] == "external_scan" and run["status"] == "running"
    assert run["started_at"] is not None
    assert run["progress"] == {"done": 0, "total": 1, "unit": "Containers", "failed": 0,
                               "remaining": 1}
    assert run["config"] == {"containers": ["orders"], "source": "nightly pipeline"}
    assert run["actions"] == ["abort"]
    assert RunContainer.objects.get(run_id=run["id"]).status == "queued"

    response = post_results(client, run["id"], orders_results(checks))
    assert response.status_code == 200, response.content
    fed = response.json()
    assert fed["status"] == "running"
    assert fed["metrics"] == {"records_scanned": 1000, "anomalies_identified": 2}
    assert fed["progress"] == {"done": 1, "total": 1, "unit": "Containers", "failed": 0,
                               "remaining": 0}

    unit = RunContainer.objects.get(run_id=run["id"])
    assert (unit.status, unit.container_id) == ("success", container.pk)
    assert unit.metrics == {"records_scanned": 1000, "checks_evaluated": 3,
                            "anomalies_identified": 2}
    anomalies = {a.check_rule_id: a for a in Anomaly.objects.filter(run_id=run["id"])}
    assert set(anomalies) == {checks["quantity"].pk, checks["status"].pk}
    quantity = anomalies[checks["quantity"].pk]
    assert quantity.failed_count == 12 and quantity.container == container
    assert quantity.examples == [{"id": "7", "quantity": "-3"}]
    assert quantity.status == "active" and "quantity" in quantity.description

    finished = client.post(f"/api/v1/external-scans/{run['id']}/finish")
    assert finished.status_code == 200, finished.content
    done = finished.json()
    assert done["status"] == "success" and done["finished_at"] is not None
    assert done["has_warnings"] is False
    assert done["actions"] == ["delete"]  # no Resume, no Rerun for External Scans
    log = [line.message for line in RunLogEntry.objects.filter(run_id=run["id"])]
    assert log[-1] == "Finished: 1 containers, 1000 records scanned, 2 anomalies identified."
    assert any(message.startswith("orders: 1000 records scanned") for message in log)

    # A finished Run takes nothing more.
    assert post_results(client, run["id"], orders_results(checks)).status_code == 409
    assert client.post(f"/api/v1/external-scans/{run['id']}/finish").status_code == 409
    for action in ("resume", "rerun"):
        assert client.post(f"/api/v1/runs/{run['id']}/{action}").status_code == 409


def test_unannounced_containers_are_counted_as_they_arrive(client, datastore, catalogue):
    _, checks = catalogue
    run = open_scan(client, datastore)
    assert run["progress"]["total"] is None
    assert post_results(client, run["id"], orders_results(checks)).status_code == 200
    other = post_results(client, run["id"], {"container": "customers", "records_scanned": 5,
                                             "results": []})
    assert other.status_code == 200
    done = client.post(f"/api/v1/external-scans/{run['id']}/finish").json()
    assert done["progress"] == {"done": 2, "total": 2, "unit": "Containers", "failed": 0,
                                "remaining": 0}
    assert done["metrics"] == {"records_scanned": 1005, "anomalies_identified": 2}
    assert list(RunContainer.objects.filter(run_id=run["id"]).values_list("name", "position")) \
        == [("orders", 0), ("customers", 1)]


def test_checks_that_could_not_run_are_warnings(client, datastore, catalogue):
    _, checks = catalogue
    run = open_scan(client, datastore)
    body = {"container": "orders", "records_scanned": 3, "results": [
        {"check": checks["status"].pk, "error": "column 'status' has no known type"}]}
    assert post_results(client, run["id"], body).status_code == 200
    done = client.post(f"/api/v1/external-scans/{run['id']}/finish").json()
    assert done["status"] == "success" and done["has_warnings"] is True
    assert not Anomaly.objects.exists()
    warning = RunLogEntry.objects.get(run_id=run["id"], level="warning")
    assert "could not run" in warning.message and warning.container == "orders"


def test_announced_containers_without_results_end_as_warnings(client, datastore, catalogue):
    _, checks = catalogue
    run = open_scan(client, datastore, {"containers": ["orders", "customers"]})
    post_results(client, run["id"], orders_results(checks))
    done = client.post(f"/api/v1/external-scans/{run['id']}/finish").json()
    assert done["status"] == "success" and done["has_warnings"] is True
    assert done["progress"] == {"done": 1, "total": 2, "unit": "Containers", "failed": 0,
                                "remaining": 1}
    missing = RunContainer.objects.get(run_id=run["id"], name="customers")
    assert missing.status == "failure" and missing.error == "No results were registered."


def test_abort_lands_at_once_and_later_posts_are_409(client, datastore, catalogue):
    _, checks = catalogue
    run = open_scan(client, datastore, {"containers": ["orders"]})
    aborted = client.post(f"/api/v1/runs/{run['id']}/abort")
    assert aborted.status_code == 202
    assert aborted.json()["status"] == "aborted"
    assert aborted.json()["aborted_by"] == {"kind": "user", "name": "editor"}

    late = post_results(client, run["id"], orders_results(checks))
    assert late.status_code == 409 and late.json()["code"] == "conflict"
    assert "Aborted" in late.json()["detail"]
    assert client.post(f"/api/v1/external-scans/{run['id']}/finish").status_code == 409
    assert not Anomaly.objects.exists()
    assert RunContainer.objects.get(run_id=run["id"]).status == "queued"
    assert Run.objects.get(pk=run["id"]).metrics == {}


def test_results_twice_for_a_container_are_409(client, datastore, catalogue):
    _, checks = catalogue
    run = open_scan(client, datastore)
    assert post_results(client, run["id"], orders_results(checks)).status_code == 200
    again = post_results(client, run["id"], orders_results(checks))
    assert again.status_code == 409
    assert Anomaly.objects.count() == 2
    assert Run.objects.get(pk=run["id"]).metrics["records_scanned"] == 1000


def _bad_results(checks, other_checks):
    q = checks["quantity"].pk
    return [
        ({"container": "nope", "records_scanned": 1, "results": []}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": other_checks["quantity"].pk, "failed_count": 1}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": checks["draft"].pk, "failed_count": 1}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": checks["archived"].pk, "failed_count": 1}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": 987654, "failed_count": 1}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": q, "failed_count": 1}, {"check": q, "failed_count": 2}]},
         422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": q, "failed_count": 1, "error": "both"}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1, "results": [{"check": q}]}, 422,
         "invalid"),
        ({"container": "orders", "records_scanned": -1, "results": []}, 422, "invalid"),
        ({"container": "orders", "records_scanned": "5", "results": []}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1.5, "results": []}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": q, "failed_count": -2}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": q, "failed_count": 1, "examples": "row"}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1,
          "results": [{"check": q, "failed_count": 1, "examples": [{}] * 101}]}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1, "results": {}}, 422, "invalid"),
        ({"container": "orders", "records_scanned": 1, "results": [], "extra": 1}, 422,
         "invalid"),
        ({"container": "", "records_scanned": 1, "results": []}, 422, "invalid"),
        ({"records_scanned": 1, "results": []}, 422, "invalid"),
    ]


def test_bad_results_are_refused_and_nothing_is_stored(client, datastore, catalogue):
    _, checks = catalogue
    _, other_checks = orders_container(DatastoreFactory(name="other"), name="orders")
    run = open_scan(client, datastore)
    for body, status, code in _bad_results(checks, other_checks):
        response = post_results(client, run["id"], body)
        assert response.status_code == status, (body, response.content)
        assert response.json()["code"] == code and response.json()["detail"]
    for raw in ("{", "[]", "null", '"x"'):
        response = client.post(f"/api/v1/external-scans/{run['id']}/results", raw,
                               content_type="application/json")
        assert response.status_code in (400, 422), raw
    assert not Anomaly.objects.exists()
    assert not RunContainer.objects.filter(run_id=run["id"]).exists()
    stored = Run.objects.get(pk=run["id"])
    assert (stored.status, stored.metrics, stored.progress_done) == ("running", {}, 0)


def test_containers_announced_must_exist(client, datastore, catalogue):
    for config in ({"containers": ["orders", "ghost"]}, {"containers": ["orders", "orders"]},
                   {"containers": []}, {"color": "blue"}, {"source": 5}):
        response = client.post("/api/v1/external-scans",
                               {"datastore": datastore.pk, "config": config},
                               content_type="application/json")
        assert response.status_code == 422, config
        assert response.json()["code"] == "invalid_config"
    assert not Run.objects.exists()


def test_unannounced_container_is_refused_when_some_were_announced(client, datastore, catalogue):
    run = open_scan(client, datastore, {"containers": ["customers"]})
    response = post_results(client, run["id"], orders_results(catalogue[1]))
    assert response.status_code == 422 and "announced" in response.json()["detail"]


@pytest.mark.parametrize("persona,open_code,feed_code",
                         [("admin", 201, 200), ("editor", 201, 200), ("viewer", 403, 403),
                          ("reporter", 403, 403), ("outsider", 404, 404)])
def test_permissions(request, editor, datastore, catalogue, persona, open_code, feed_code):
    user_client = bearer(request.getfixturevalue(persona))
    response = user_client.post("/api/v1/external-scans", {"datastore": datastore.pk},
                                content_type="application/json")
    assert response.status_code == open_code
    run = open_scan(bearer(editor), datastore)
    fed = post_results(user_client, run["id"], orders_results(catalogue[1]))
    assert fed.status_code == feed_code, fed.content
    finished = user_client.post(f"/api/v1/external-scans/{run['id']}/finish")
    assert finished.status_code == feed_code
    assert Anomaly.objects.count() == (2 if feed_code == 200 else 0)


def test_results_for_a_run_that_is_not_an_external_scan_are_409(client, datastore, catalogue):
    launched = client.post("/api/v1/runs", {"operation": "sync", "datastore": datastore.pk},
                           content_type="application/json").json()
    response = post_results(client, launched["id"], orders_results(catalogue[1]))
    assert response.status_code == 409 and "not an External Scan" in response.json()["detail"]
    assert client.post(f"/api/v1/external-scans/{launched['id']}/finish").status_code == 409
    assert post_results(client, 987654, orders_results(catalogue[1])).status_code == 404


def test_check_ids_are_checked_against_the_container_not_just_existence(client, datastore,
                                                                        catalogue):
    # The customers container has its own checks with the same types: ids must match.
    customers_check = Check.objects.filter(container__name="customers", type="unique").get()
    run = open_scan(client, datastore)
    body = {"container": "orders", "records_scanned": 1,
            "results": [{"check": customers_check.pk, "failed_count": 1}]}
    response = post_results(client, run["id"], body)
    assert response.status_code == 422
    assert f"#{customers_check.pk} is not a check of orders" in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_results_racing_an_abort_are_all_or_nothing(editor, datastore):
    """Posts and an abort on separate connections: each post lands whole before the abort,
    or is refused with 409 and leaves nothing; the Run's totals always match its rows."""
    names = [f"t{index}" for index in range(8)]
    checks = {name: orders_container(datastore, name=name)[1]["quantity"].pk for name in names}
    run = open_scan(bearer(editor), datastore)
    start = threading.Barrier(len(names) + 1)
    codes: dict[str, int] = {}

    def post(name):
        client = bearer(editor)
        start.wait()
        codes[name] = post_results(client, run["id"], {
            "container": name, "records_scanned": 10,
            "results": [{"check": checks[name], "failed_count": 1}]}).status_code
        connection.close()

    def abort():
        client = bearer(editor)
        start.wait()
        codes["abort"] = client.post(f"/api/v1/runs/{run['id']}/abort").status_code
        connection.close()

    threads = [threading.Thread(target=post, args=(name,)) for name in names]
    threads.append(threading.Thread(target=abort))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert codes["abort"] == 202
    accepted = sorted(name for name in names if codes[name] == 200)
    assert all(codes[name] in (200, 409) for name in names), codes
    stored = Run.objects.get(pk=run["id"])
    assert stored.status == "aborted"
    units = RunContainer.objects.filter(run_id=run["id"])
    assert sorted(units.values_list("name", flat=True)) == accepted
    assert stored.progress_done == len(accepted)
    assert stored.metrics.get("records_scanned", 0) == 10 * len(accepted)
    assert Anomaly.objects.filter(run_id=run["id"]).count() == len(accepted)
    # Every accepted post was logged before the abort line, none after it.
    lines = list(RunLogEntry.objects.filter(run_id=run["id"]).values_list("message", flat=True))
    assert lines[-1] == "Aborted by editor."
    assert len([line for line in lines if "records scanned" in line]) == len(accepted)
