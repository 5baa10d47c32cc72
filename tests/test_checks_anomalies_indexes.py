"""The check and anomaly lists read their tables through an index, never a sequential scan.

Tens of thousands of rows from the benchmark's generator (bench/checks_anomalies.py) and fresh
planner statistics: the plans PostgreSQL picks here are the ones it picks at 10^6 anomalies,
where a sequential scan would cost far more than a page may (BENCHMARKS.md).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Level
from bench.checks_anomalies import seed_rows
from datastores.models import Container
from tests.factories import DatastoreFactory, TeamFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TABLES = ("datastores_anomaly", "datastores_check", "datastores_checkevaluation")


@pytest.fixture
def seeded(admin, editor, datastore):
    """20,000 anomalies and 4,000 checks on 12 datastores; the editor sees "warehouse"."""
    stores = [DatastoreFactory(name=f"store-{i:02d}") for i in range(11)]
    stores.insert(5, datastore)
    TeamFactory(name="others", level=Level.VIEWER).datastores.add(*stores)
    containers = Container.objects.bulk_create(
        Container(datastore=s, name=f"table_{j}", kind="table") for s in stores for j in range(20)
    )
    with connection.cursor() as cursor:
        seed_rows(cursor, checks=4000, anomalies=20000, container_ids=[c.pk for c in containers])
        cursor.execute("VACUUM ANALYZE")
    return datastore, containers[5 * 20 + 3]


def _plans(client, url: str) -> list[tuple[str, dict]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if sql.startswith("SELECT") and any(f'"{t}"' in sql for t in TABLES):
                cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
                plan = cursor.fetchone()[0]
                plans.append((sql, plan[0]["Plan"] if isinstance(plan, list) else plan))
    return plans


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("persona", ["admin", "editor"])
def test_list_queries_use_indexes(client, request, seeded, persona):
    datastore, container = seeded
    client.force_login(request.getfixturevalue(persona))
    pages = {
        "anomalies": "/anomalies/",
        "anomalies, status": "/anomalies/?status=active",
        "anomalies, datastore": f"/anomalies/?datastore={datastore.pk}",
        "anomalies, container": f"/anomalies/?datastore={datastore.pk}"
                                f"&container={container.pk}&status=active",
        "anomalies, type": "/anomalies/?check_type=unique&status=acknowledged",
        "anomalies, deep": "/anomalies/?before=2000",
        "checks": "/checks/",
        "checks, status": "/checks/?status=draft",
        "checks, container": f"/checks/?datastore={datastore.pk}&container={container.pk}"
                             "&status=draft",
        "checks, deep": "/checks/?before=400",
        "container page": f"/datastores/{datastore.pk}/containers/{container.pk}/",
        "datastore page": f"/datastores/{datastore.pk}/",
    }
    for name, url in pages.items():
        plans = _plans(client, url)
        assert plans, f"{name}: no query on checks or anomalies?"
        for sql, plan in plans:
            on_ours = [n for n in _nodes(plan) if n.get("Relation Name") in TABLES]
            kinds = {n["Node Type"] for n in on_ours}
            assert "Seq Scan" not in kinds, f"{name} ({persona}): Seq Scan in\n{sql}"
