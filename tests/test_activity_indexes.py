"""The Activity page's queries read runs_run through an index, never a sequential scan.

A few thousand Runs (the benchmark's generator, bench/seed.py) and fresh planner statistics:
the plans PostgreSQL picks here are the ones it picks at 10^6 Runs, where a sequential scan of
runs_run would cost hundreds of milliseconds per page (see BENCHMARKS.md, "Activity page").
"""

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Level
from bench.seed import Population, seed_runs
from runs.models import Schedule
from tests.factories import DatastoreFactory, TeamFactory, UserFactory
from tests.rollup_support import assert_rollup_matches

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

RUNS = 5000


@pytest.fixture
def seeded(admin, editor, datastore):
    """RUNS Runs over a year on 12 datastores; the editor sees one of them ("warehouse")."""
    others = [DatastoreFactory(name=f"store-{i:02d}") for i in range(11)]
    stores = [*others[:4], datastore, *others[4:]]
    analysts = [UserFactory(username=f"analyst{i}") for i in range(5)]
    team = TeamFactory(name="analysts", level=Level.VIEWER)
    team.members.add(*analysts)
    team.datastores.add(*others)
    schedules = [
        Schedule.objects.create(name=f"nightly {s.name}", datastore=s, operation="scan",
                                cron="0 2 * * *")
        for s in stores
    ]
    with connection.cursor() as cursor:
        seed_runs(
            cursor, runs=RUNS, active=40, detail_every=1000,
            population=Population(
                datastore_ids=[s.pk for s in stores],
                schedule_ids=[s.pk for s in schedules],
                user_ids=[u.pk for u in (admin, editor, *analysts)],
            ),
        )
        # Statistics and the visibility map, as autovacuum keeps them on a live database.
        cursor.execute("VACUUM ANALYZE")
    # The seeding bypasses the rollup's triggers, then recounts it.
    assert_rollup_matches()
    return datastore


def _run_plans(client, url: str) -> list[tuple[str, dict]]:
    """(sql, JSON plan) of every query of the page that reads runs_run."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.startswith("SELECT") or '"runs_run"' not in sql:
                continue
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
            plan = cursor.fetchone()[0]
            plans.append((sql, plan[0]["Plan"] if isinstance(plan, list) else plan))
    return plans


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.mark.parametrize("persona", ["admin", "editor"])
def test_activity_queries_use_indexes_on_runs(client, request, seeded, persona):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    listing = reverse("activity:list")
    pages = {
        "first page": listing,
        "status filter": f"{listing}?status=failure",
        "datastore filter": f"{listing}?datastore={seeded.pk}",
        "deep page": f"{listing}?before={RUNS // 10}",
    }
    for name, url in pages.items():
        plans = _run_plans(client, url)
        # The page of Runs and the heatmap's per-day counts, at least.
        assert len(plans) >= 2, f"{name}: expected the list and heatmap queries, got {plans}"
        for sql, plan in plans:
            on_runs = [n for n in _nodes(plan) if n.get("Relation Name") == "runs_run"]
            kinds = {n["Node Type"] for n in on_runs}
            assert "Seq Scan" not in kinds, f"{name} ({persona}): Seq Scan on runs_run in\n{sql}"
            assert kinds & {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, (
                f"{name} ({persona}): runs_run read by {kinds} in\n{sql}"
            )


@pytest.mark.parametrize("persona", ["admin", "editor"])
def test_actor_filters_read_the_actor_rollup_or_count_through_their_index(
    client, request, seeded, persona
):
    """The filters on who launched the Runs read the heatmap's per-actor day rows. A viewer in
    UTC or in India (+5:30: the rows' quarter-of-day totals) counts no finished Run. With a
    status filter too, the viewer in India counts the actor's Runs through the actor's
    index, not a sequential scan, nor intersecting the actor's and the 12 weeks' bitmaps and
    reading the table (~300 ms at 10^7 Runs)."""
    user = request.getfixturevalue(persona)
    client.force_login(user)
    listing = reverse("activity:list")
    schedule = Schedule.objects.get(datastore=seeded)
    pages = {
        "by user": (f"{listing}?by=analyst1", "run_by_user_created"),
        "by schedule name": (f"{listing}?by={schedule.name}", "run_by_schedule_created"),
        "schedule": (f"{listing}?schedule={schedule.pk}", "run_by_schedule_created"),
    }
    for zone, more in (("UTC", ""), ("Asia/Kolkata", ""), ("Asia/Kolkata", "&status=success")):
        user.time_zone = zone
        user.save(update_fields=["time_zone"])
        for name, (page, index) in pages.items():
            url, where = page + more, f"{name}{more} ({persona}, {zone})"
            cache.clear()  # the heatmap's past days, as on a page's first load of the day
            with CaptureQueriesContext(connection) as captured:
                plans = _run_plans(client, url)
            rollup = any('"runs_runactordaycount"' in q["sql"] for q in captured)
            assert rollup == (not more), f"{where}: rollup read: {rollup}"
            counted_via = set()
            for sql, plan in plans:
                on_runs = [n for n in _nodes(plan) if n.get("Relation Name") == "runs_run"]
                kinds = {n["Node Type"] for n in on_runs}
                assert "Seq Scan" not in kinds, f"{where}: Seq Scan on runs_run\n{sql}"
                finished = "NOT" in sql and "'queued'" in sql  # not the live active Runs
                if "COUNT(" in sql and "created_at" in sql and finished:
                    counted_via |= {n.get("Index Name") for n in _nodes(plan)}
            if not more:
                assert not counted_via, f"{where}: counted finished Runs"
            else:
                assert index in counted_via, (
                    f"{where}: the Runs counted via {counted_via}, not {index}"
                )
