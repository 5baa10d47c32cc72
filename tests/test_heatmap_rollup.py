"""The heatmap's hourly rollup (runs.rollup): kept equal to the Runs by database triggers
whatever writes them, and the heatmap read from it shows what counting the Runs shows."""

import datetime as dt
import random
import re
import threading
import zoneinfo

import pytest
from django.core.cache import cache
from django.db import connection, connections
from django.db.models import Q
from django.test import override_settings
from django.utils import timezone

from accounts.models import Level
from runs import services
from runs.models import (
    TERMINAL_STATUSES,
    ActorKind,
    Run,
    RunHourCount,
    RunStatus,
    Schedule,
    Via,
)
from runs.policy import Action
from runs.retention import apply_retention
from tests.factories import DatastoreFactory, TeamFactory, UserFactory
from tests.rollup_support import assert_rollup_matches
from tests.ui_support import client_for, make_run

pytestmark = [pytest.mark.both_backends]

UTC = dt.UTC


@pytest.mark.django_db
def test_rollup_follows_launch_finish_abort_delete_bulk_and_retention(datastore, editor):
    other = DatastoreFactory(name="other")
    old = timezone.now() - dt.timedelta(days=40)
    assert_rollup_matches(0)
    # Launched: active Runs are not in the rollup.
    launched = [services.run_launch(user=editor, datastore=datastore, operation="sync")
                for _ in range(3)]
    assert_rollup_matches(0)
    # Finished by the transition every ending goes through.
    assert services.transition(launched[0].pk, where=Q(), to=RunStatus.SUCCESS)
    assert services.transition(launched[1].pk, where=Q(), to=RunStatus.FAILURE)
    assert_rollup_matches(2)
    # A queued Run aborted by a user lands Aborted at once.
    services.run_abort(run=launched[2], user=editor)
    assert Run.objects.get(pk=launched[2].pk).status == RunStatus.ABORTED
    assert_rollup_matches(3)
    # Runs of other hours, datastores, operations and trigger kinds.
    for i, status in enumerate(["success", "failure", "aborted", "running", "queued"] * 3):
        make_run(datastore if i % 2 else other, status=status,
                 operation=["scan", "profile", "promote"][i % 3],
                 user=editor if i % 3 else None, created_at=old + dt.timedelta(minutes=37 * i),
                 destination_datastore=other if i % 3 == 2 else None)
    assert_rollup_matches(12)
    # Delete, and a bulk Delete (one refused: still active).
    services.run_delete(run=Run.objects.get(pk=launched[0].pk), user=editor)
    assert_rollup_matches(11)
    mine = list(Run.objects.filter(datastore=datastore).order_by("pk")[:6])
    outcome = services.run_bulk(user=editor, action=Action.DELETE, runs=mine)
    assert outcome["deleted"] and outcome["still active (not deleted)"]
    assert_rollup_matches(11 - len(outcome["deleted"]))
    # Retention deletes the old finished Runs in batches.
    with override_settings(RUN_RETENTION_DAYS=30, RUN_RETENTION_BATCH_SIZE=2):
        assert apply_retention()["deleted"] > 0
    assert not Run.objects.filter(created_at__lt=old + dt.timedelta(days=1),
                                  status__in=TERMINAL_STATUSES).exists()
    assert_rollup_matches()
    # A plain bulk DELETE, as a script or the shell would do it.
    Run.objects.filter(status__in=TERMINAL_STATUSES).delete()
    assert_rollup_matches(0)


@pytest.mark.django_db
def test_soft_deleted_datastore_keeps_its_counts(datastore, admin):
    from datastores.services import datastore_delete

    run = make_run(datastore, status="success")
    datastore_delete(user=admin, datastore=datastore)
    assert Run.objects.filter(pk=run.pk).exists()
    assert_rollup_matches(1)


@pytest.mark.django_db
def test_refill_recounts_every_row(datastore):
    from runs import rollup

    for i in range(5):
        make_run(datastore, status=["success", "failure"][i % 2],
                 created_at=timezone.now() - dt.timedelta(hours=5 * i))
    RunHourCount.objects.update(n=99)
    with connection.cursor() as cursor:
        rollup.refill(cursor, connection.vendor)
    assert_rollup_matches(5)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_finishes_all_land(datastore):
    """Workers finishing Runs of the same hour and datastore at once: every count lands."""
    runs = [make_run(datastore, status="running") for _ in range(16)]
    start = threading.Barrier(4)
    errors = []

    def finish(mine):
        try:
            start.wait(timeout=30)
            for run in mine:
                services.transition(run.pk, where=Q(), to=RunStatus.SUCCESS)
        except Exception as exc:  # reported below, with the assertion
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=finish, args=(runs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert Run.objects.filter(status=RunStatus.SUCCESS).count() == 16
    assert_rollup_matches(16)


# -- the heatmap a user sees -------------------------------------------------------------------
ZONES = [
    "UTC",
    "Asia/Kolkata",  # +5:30: midnight at 18:30 UTC
    "Asia/Kathmandu",  # +5:45
    "America/St_Johns",  # -3:30 / -2:30 (DST)
    "America/New_York",
    "Europe/Paris",  # +1 / +2: midnight at 23:00 UTC, the day row's first 92 quarters
    "Pacific/Chatham",  # +12:45 / +13:45 (DST)
    "Australia/Lord_Howe",  # +10:30 / +11 (a half-hour DST)
]
FILTERS = [
    {},
    {"status": "failure"},
    {"operation": "scan"},
    {"status": "failure", "operation": "scan"},
    {"trigger": "user"},
    {"trigger": "schedule"},
    {"status": "running"},
    # The actor filters: from the per-actor day rows (their quarter-of-day totals off UTC);
    # with other filters too, counted from the Runs off UTC.
    {"by": "alice"},  # a user's name
    {"by": "alice", "status": "failure"},
    {"by": "NIGHT"},  # a schedule's name
    {"schedule": "SCHEDULE"},  # one schedule
    {"schedule": "SCHEDULE", "operation": "scan", "status": "success"},
    {"datastore": "DATASTORE"},
    {"datastore": "DATASTORE", "status": "success", "trigger": "schedule"},
]


def heat_cells(html: str) -> dict[str, int]:
    cells = re.findall(r'aria-label="(\d+) Runs? on (\d{4}-\d\d-\d\d)"', html)
    assert len(cells) > 11 * 7, html  # the days after today are blank
    return {day: int(n) for n, day in cells}


def expected_cells(runs, zone, matches) -> dict[str, int]:
    """Runs per local day over the 12 weeks, counted in Python from the Runs themselves."""
    today = timezone.now().astimezone(zone).date()
    first = today - dt.timedelta(days=today.weekday() + 7 * 11)
    cells = {(first + dt.timedelta(days=i)).isoformat(): 0
             for i in range((today - first).days + 1)}
    for run in runs:
        day = run.created_at.astimezone(zone).date()
        if first <= day <= today and matches(run):
            cells[day.isoformat()] += 1
    return cells


def _matches(filters, alice, schedule, datastore):
    def match(run):
        return all([
            "status" not in filters or run.status == filters["status"],
            "operation" not in filters or run.operation == filters["operation"],
            "trigger" not in filters or run.triggered_by_kind == filters["trigger"],
            "by" not in filters or (run.triggered_by_user_id == alice.pk
                                    if filters["by"] == "alice" else
                                    run.triggered_by_kind == "schedule"
                                    and run.schedule_id == schedule.pk),
            "schedule" not in filters or run.schedule_id == schedule.pk,
            "datastore" not in filters or run.datastore_id == datastore.pk,
        ])
    return match


def scheduled_run(schedule, status, created):
    """A schedule's Run, written while it runs and then ended, as a firing's is."""
    run = Run.objects.create(
        operation="scan", status="running", datastore=schedule.datastore,
        triggered_by_kind=ActorKind.SCHEDULE, triggered_via=Via.SCHEDULE, schedule=schedule,
    )
    ended = {} if status == "running" else {"status": status, "finished_at": created}
    if status == "aborted":
        ended["aborted_by_kind"] = ActorKind.SYSTEM
    Run.objects.filter(pk=run.pk).update(created_at=created, started_at=created, **ended)


@pytest.mark.django_db
def test_heatmap_counts_equal_the_runs_for_zones_filters_and_an_editor(datastore, editor, admin):
    other = DatastoreFactory(name="not-the-editors")
    alice = UserFactory(username="alice")
    team = TeamFactory(name="alice-team", level=Level.EDITOR)
    team.members.add(alice)
    team.datastores.add(datastore, other)
    schedule = Schedule.objects.create(name="Nightly", datastore=datastore, operation="scan",
                                       cron="0 2 * * *", created_by=editor)
    rnd = random.Random(7)
    now = timezone.now()
    # Runs around every zone's midnight (18:10..18:50 UTC and so on) over 13 weeks, today's,
    # and past days' Runs still running.
    for i in range(160):
        hours_ago = rnd.uniform(0, 13 * 7 * 24) if i % 8 else rnd.uniform(0, 30)
        created = now - dt.timedelta(hours=hours_ago)
        if i % 3 == 0:
            created = created.replace(minute=rnd.choice([5, 10, 20, 29, 31, 40, 44, 46, 55]))
            created = min(created, now)
        status = rnd.choice(["success"] * 4 + ["failure", "aborted", "running"])
        store = datastore if i % 3 else other
        if i % 5 == 2 and store == datastore:
            scheduled_run(schedule, status, created)
        else:
            make_run(store, status=status, operation=rnd.choice(["scan", "sync"]),
                     user=alice if i % 5 == 0 else (editor if i % 5 == 1 else None),
                     created_at=created)
    runs = list(Run.objects.all())
    assert_rollup_matches()
    for zone_name in ZONES:
        zone = zoneinfo.ZoneInfo(zone_name)
        for user in (admin, editor):
            user.time_zone = zone_name
            user.save(update_fields=["time_zone"])
            client = client_for(user)
            seen = [r for r in runs if user == admin or r.datastore_id == datastore.pk]
            for filters in FILTERS:
                ids = {"SCHEDULE": schedule.pk, "DATASTORE": datastore.pk}
                params = {k: ids.get(v, v) for k, v in filters.items()}
                cache.clear()  # the first load of the day: past days from the rollup
                html = client.get("/activity/", params).content.decode()
                want = expected_cells(seen, zone, _matches(filters, alice, schedule, datastore))
                where = f"{zone_name}, {user.username}, {filters}"
                assert heat_cells(html) == want, where
                total = sum(want.values())
                assert f"<strong>{total}</strong> Run{'' if total == 1 else 's'} in 12 weeks" \
                    in html, where
                # Warm: the same cells from the cache.
                assert heat_cells(client.get("/activity/", params).content.decode()) == want


@pytest.mark.django_db(transaction=True)
def test_migration_0012_fills_the_actor_quarters_and_reverses(datastore, editor):
    """Migrating from 0011 with finished Runs there: the actor rows get their quarter-of-day
    totals from the Runs; migrating back drops them, and 0011's triggers count on."""
    from django.db.migrations.executor import MigrationExecutor

    before = [("runs", "0011_run_actor_and_quarter_of_day_counts")]
    after = [("runs", "0012_run_actor_quarter_of_day_counts")]

    def migrate(target):
        MigrationExecutor(connection).migrate(target)

    def actor_columns():
        with connection.cursor() as cursor:
            return {column.name for column in
                    connection.introspection.get_table_description(cursor,
                                                                   "runs_runactordaycount")}

    def actor_total():
        with connection.cursor() as cursor:
            cursor.execute("SELECT COALESCE(SUM(n), 0) FROM runs_runactordaycount")
            return cursor.fetchone()[0]

    schedule = Schedule.objects.create(name="Nightly", datastore=datastore, operation="scan",
                                       cron="0 2 * * *", created_by=editor)
    start = timezone.now().replace(hour=17, minute=5, second=0, microsecond=0) \
        - dt.timedelta(days=3)
    migrate(before)
    try:
        assert "q00" not in actor_columns()
        for i in range(24):  # across several UTC days, in many quarter hours
            created = start + dt.timedelta(minutes=97 * i)
            status = ["success", "failure", "aborted", "running"][i % 4]
            if i % 3 == 0:
                scheduled_run(schedule, status, created)
            else:
                make_run(datastore, status=status, user=editor if i % 3 == 1 else None,
                         created_at=created)
        assert actor_total() == 18  # 0011's triggers: no quarters
        migrate(after)
        assert {"q00", "q95"} <= actor_columns()
        assert_rollup_matches(18)
        migrate(before)
        assert "q00" not in actor_columns()
        make_run(datastore, status="success", user=editor, created_at=start)
        assert actor_total() == 19
    finally:
        migrate(after)
    assert_rollup_matches(19)  # recounted
    make_run(datastore, status="failure", user=editor, created_at=start)
    assert_rollup_matches(20)
