"""The Activity page: visibility, filters, keyset pagination, heatmap, rows, polling, queries."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Level, Team
from runs import services
from runs.logs import append_log
from runs.models import Run, Schedule
from tests.factories import DatastoreFactory, TeamFactory, UserFactory
from tests.ui_support import client_for, make_run, run_ids

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

WARNING_TITLE = "Completed with warnings: the worker logged warnings or errors"


def page(client, url="/activity/", **params):
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


# -- access ------------------------------------------------------------------------------------
def test_login_required(client):
    response = client.get("/activity/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_login_page_logs_a_demo_user_in(client, editor):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "editor", "password": "pw-for-tests-1"})
    assert response.status_code == 302 and response["Location"] == "/activity/"
    assert "Log out" in page(client)


def test_runs_of_invisible_datastores_are_hidden(datastore, viewer, outsider, admin):
    other = DatastoreFactory(name="secret")
    mine = make_run(datastore)
    theirs = make_run(other)
    assert run_ids(page(client_for(viewer))) == [mine.pk]
    assert run_ids(page(client_for(outsider))) == []
    assert run_ids(page(client_for(admin))) == [theirs.pk, mine.pk]
    # The per-datastore page of a datastore one cannot see does not exist for them.
    assert client_for(viewer).get(f"/datastores/{other.pk}/activity/").status_code == 404
    assert run_ids(page(client_for(admin), f"/datastores/{other.pk}/activity/")) == [theirs.pk]


def test_public_team_grants_visibility(datastore, outsider, public_team):
    run = make_run(datastore)
    public_team.datastores.add(datastore)
    assert run_ids(page(client_for(outsider))) == [run.pk]


# -- rows --------------------------------------------------------------------------------------
def test_editor_sees_only_the_available_actions_viewer_sees_none(datastore, editor, viewer):
    running = make_run(datastore, status="running", progress_total=14, progress_done=4,
                       progress_unit="Tables")
    aborted = make_run(datastore, status="aborted", operation="sync", user=editor)
    html = page(client_for(editor))
    assert f"/activity/runs/{running.pk}/abort/" in html
    assert f"/activity/runs/{running.pk}/delete/" not in html
    # Sync cannot be resumed: only Rerun and Delete on the aborted Sync.
    assert f"/activity/runs/{aborted.pk}/rerun/" in html
    assert f"/activity/runs/{aborted.pk}/delete/" in html
    assert f"/activity/runs/{aborted.pk}/resume/" not in html
    viewer_html = page(client_for(viewer))
    assert run_ids(viewer_html) == [aborted.pk, running.pk]
    assert not re.search(r"/activity/runs/\d+/(abort|resume|rerun|delete)/", viewer_html)


def test_row_shows_badge_progress_duration_and_actors(datastore, editor):
    queued = make_run(datastore, status="queued", user=editor)
    running = make_run(datastore, status="running", user=editor, progress_total=14,
                       progress_done=4, progress_unit="Tables")
    aborted = make_run(datastore, status="aborted", user=editor, progress_total=14,
                       progress_done=6, progress_unit="Tables")
    html = page(client_for(editor))
    rows = {int(i): body for i, body in re.findall(
        r'<div class="run" id="run-(\d+)">(.*?)<div class="run-more"', html, re.S)}
    assert '<span class="badge badge-queued">Queued</span>' in rows[queued.pk]
    assert "progressbar" not in rows[queued.pk]  # hidden while queued
    assert '<span class="badge badge-running">Running</span>' in rows[running.pk]
    assert "4 / 14 Tables" in rows[running.pk]
    assert "data-live-duration" in rows[running.pk]  # ticks client-side while active
    assert 'hx-trigger="every 2s"' in rows[running.pk]
    assert '<span class="badge badge-aborted">Aborted</span>' in rows[aborted.pk]
    assert "6 / 14 Tables" in rows[aborted.pk] and "frozen" in rows[aborted.pk]
    assert "Aborted by" in rows[aborted.pk] and "editor" in rows[aborted.pk]
    assert "hx-trigger" not in rows[aborted.pk]  # finished rows do not poll
    assert "data-live-duration" not in rows[aborted.pk]
    assert "42s" in rows[aborted.pk]


def test_warning_indicator_only_on_success_with_warnings(datastore, editor):
    warned = make_run(datastore, logs=["orders: no such column|warning"])
    clean = make_run(datastore, logs=["all good"])
    failed = make_run(datastore, status="failure", logs=["boom|error"])
    assert warned.has_warnings and failed.has_warnings and not clean.has_warnings
    html = page(client_for(editor))
    rows = {int(i): body for i, body in re.findall(
        r'<div class="run" id="run-(\d+)">(.*?)<div class="run-more"', html, re.S)}
    assert WARNING_TITLE in rows[warned.pk]
    assert WARNING_TITLE not in rows[clean.pk]
    assert WARNING_TITLE not in rows[failed.pk]


def test_aborting_is_shown_while_the_worker_stops(datastore, editor):
    run = make_run(datastore, status="running", abort_requested_at=timezone.now(),
                   abort_requested_by=editor)
    html = page(client_for(editor))
    assert 'class="aborting" title="Abort requested by editor">Aborting…' in html
    # A requested abort is not offered again.
    assert f"/activity/runs/{run.pk}/abort/" not in html


def test_row_expands_in_place(datastore, editor):
    run = make_run(
        datastore, status="success", operation="scan",
        logs=["Scan started.", "orders: 3 checks evaluated"],
        units=[("orders", "success", {"records_scanned": 300}),
               ("customers", "failure", {})],
        metrics={"records_scanned": 300, "anomalies_identified": 2},
        config={"containers": ["orders", "customers"], "incremental": False},
    )
    html = page(client_for(editor), f"/activity/runs/{run.pk}/more/")
    assert "<html" not in html  # a fragment
    assert "Records scanned" in html and "300" in html
    assert "Anomalies identified" in html
    assert "Incremental" in html and "orders, customers" in html
    assert "Scan started." in html
    assert '<th scope="row">customers</th>' in html
    assert '<span class="badge badge-failure">Failure</span>' in html


# -- filters -----------------------------------------------------------------------------------
def test_filters(datastore, admin, editor):
    other = DatastoreFactory(name="lake")
    schedule = Schedule.objects.create(name="nightly", datastore=datastore, operation="sync",
                                       cron="0 3 * * *")
    today = timezone.now()
    a = make_run(datastore, operation="scan", status="success", user=editor)
    b = make_run(datastore, operation="profile", status="failure", user=admin,
                 created_at=today - dt.timedelta(days=3))
    c = make_run(other, operation="scan", status="aborted")
    d = make_run(other, operation="sync", status="success",
                 created_at=today - dt.timedelta(days=10))
    d_sched = make_run(other, operation="sync", status="running")
    Run.objects.filter(pk=d_sched.pk).update(triggered_by_kind="schedule", schedule=schedule,
                                             triggered_by_user=None)
    client = client_for(admin)
    assert run_ids(page(client, operation="scan")) == [c.pk, a.pk]
    assert run_ids(page(client, status="failure")) == [b.pk]
    assert run_ids(page(client, datastore=other.pk)) == [d_sched.pk, d.pk, c.pk]
    assert run_ids(page(client, trigger="system")) == [d.pk, c.pk]
    assert run_ids(page(client, trigger="schedule")) == [d_sched.pk]
    assert run_ids(page(client, by="edit")) == [a.pk]
    assert run_ids(page(client, by="nightly")) == [d_sched.pk]
    day = (today - dt.timedelta(days=3)).date().isoformat()
    assert run_ids(page(client, date_from=day, date_to=day)) == [b.pk]
    since = (today - dt.timedelta(days=5)).date().isoformat()
    # Dated pages are ordered by creation time (b was backdated three days).
    assert run_ids(page(client, date_from=since)) == [d_sched.pk, c.pk, a.pk, b.pk]
    assert run_ids(page(client, by="nobody-has-this-name")) == []
    assert run_ids(page(client, run=b.pk)) == [b.pk]
    assert run_ids(page(client, operation="scan", datastore=datastore.pk)) == [a.pk]
    assert run_ids(page(client, f"/datastores/{datastore.pk}/activity/", status="success")) == [
        a.pk
    ]


def test_bad_filter_values_are_reported_not_crashed(datastore, editor):
    run = make_run(datastore)
    html = page(client_for(editor), status="exploded", date_from="yesterday", run="abc",
                datastore="99999", before="-3")
    assert "Select a valid choice" in html and "Enter a valid date" in html
    assert run_ids(html) == [run.pk]  # invalid filters are ignored, not applied


# -- pagination --------------------------------------------------------------------------------
def test_keyset_pagination_without_offset_or_count(datastore, editor):
    runs = [make_run(datastore) for _ in range(30)]
    newest_first = [r.pk for r in reversed(runs)]
    client = client_for(editor)
    with CaptureQueriesContext(connection) as queries:
        first = page(client)
    assert run_ids(first) == newest_first[:25]
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    assert "OFFSET" not in sql
    # The only COUNTs are the heatmap's: bounded by creation time (12 weeks grouped per day,
    # or today), never a full count of the list.
    counts = [q["sql"].upper() for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all('"CREATED_AT" >=' in q for q in counts)
    match = re.search(r'href="\?before=(\d+)"', first)
    assert match and int(match.group(1)) == newest_first[24]
    second = page(client, before=match.group(1))
    assert run_ids(second) == newest_first[25:]
    assert "Older Runs" not in second  # last page: no "Older" link
    assert "Newest" in second
    # A Run launched meanwhile does not shift the older page (no OFFSET drift).
    make_run(datastore)
    assert run_ids(page(client, before=match.group(1))) == newest_first[25:]


def test_pagination_keeps_filters(datastore, editor):
    for _ in range(27):
        make_run(datastore, operation="profile")
    make_run(datastore, operation="scan")
    html = page(client_for(editor), operation="profile")
    assert re.search(r'href="\?operation=profile&amp;before=\d+"', html)


# -- heatmap -----------------------------------------------------------------------------------
def test_heatmap_counts_runs_per_day_and_links_to_the_day(datastore, editor):
    now = timezone.now()
    two_days_ago = now - dt.timedelta(days=2)
    for _ in range(3):
        make_run(datastore, created_at=two_days_ago)
    make_run(datastore, created_at=now)
    make_run(datastore, created_at=now - dt.timedelta(days=200))  # outside the 12 weeks
    html = page(client_for(editor))
    day = two_days_ago.date().isoformat()
    assert f'aria-label="3 Runs on {day}"' in html
    assert f'aria-label="1 Run on {now.date().isoformat()}"' in html
    assert "<strong>4</strong> Runs in 12 weeks" in html
    link = re.search(rf'href="(\?date_from={day}&amp;date_to={day})"', html)
    assert link
    filtered = page(client_for(editor), date_from=day, date_to=day)
    assert len(run_ids(filtered)) == 3
    assert "heat-cell l4 selected" in filtered
    # A day keeps the other filters and starts from the newest page again.
    other_filters = page(client_for(editor), status="success", before=10**9, date_from=day)
    assert f'href="?status=success&amp;date_from={day}&amp;date_to={day}"' in other_filters


def test_heatmap_follows_finishing_deleted_and_new_runs(datastore, editor):
    """Past days' counts are cached; whatever changes them must show at once."""
    now = timezone.now()
    day = (now - dt.timedelta(days=2)).date().isoformat()
    running = make_run(datastore, status="running", created_at=now - dt.timedelta(days=2))
    done = make_run(datastore, status="failure", created_at=now - dt.timedelta(days=2))
    client = client_for(editor)

    def heat(**filters) -> str:
        html = page(client, **filters)
        return re.search(rf'aria-label="(\d+) Runs? on {day}"', html).group(1)

    assert (heat(), heat(status="failure")) == ("2", "1")
    # A past day's active Run finishes: it joins the status filter's count.
    Run.objects.filter(pk=running.pk).update(status="failure", finished_at=now)
    assert (heat(), heat(status="failure")) == ("2", "2")
    # A Run is deleted: it leaves both.
    services.run_delete(run=done, user=editor)
    assert (heat(), heat(status="failure")) == ("1", "1")
    # A Run launched today shows on today's cell.
    make_run(datastore, status="running")
    assert f'aria-label="1 Run on {now.date().isoformat()}"' in page(client)


def test_heatmap_follows_the_viewers_teams(datastore, viewer):
    day = (timezone.now() - dt.timedelta(days=3)).date().isoformat()
    other = DatastoreFactory(name="other")
    make_run(other, created_at=timezone.now() - dt.timedelta(days=3))
    client = client_for(viewer)
    assert f'aria-label="0 Runs on {day}"' in page(client)
    team = TeamFactory(name="late-joiners", level=Level.VIEWER)
    team.members.add(viewer)
    team.datastores.add(other)
    assert f'aria-label="1 Run on {day}"' in page(client)


# -- query counts ------------------------------------------------------------------------------
def _mixed_runs(datastore, n, users):
    statuses = ["queued", "running", "success", "failure", "aborted"]
    for i in range(n):
        make_run(datastore, status=statuses[i % 5], user=users[i % len(users)],
                 operation=["scan", "profile", "sync"][i % 3],
                 logs=["warn|warning"] if i % 4 == 0 else (),
                 abort_requested_at=timezone.now() if statuses[i % 5] == "running" else None,
                 abort_requested_by=users[0] if statuses[i % 5] == "running" else None)


@pytest.mark.parametrize("n", [5, 40])
def test_activity_page_query_count_is_constant(datastore, editor, n, django_assert_num_queries):
    other = DatastoreFactory(name="second")
    team = TeamFactory(name="second-team", level=Level.VIEWER)
    team.members.add(editor)
    team.datastores.add(other)
    users = [editor, UserFactory(username="someone"), None]
    _mixed_runs(datastore, n, users)
    _mixed_runs(other, n, users)
    client = client_for(editor)
    page(client)  # warm-up: connection set-up, and the heatmap's past days get cached
    # session, user, datastores, runs page, the users who requested / did aborts (one query
    # for both), permission levels; heatmap: past days' active Runs, the active Runs count,
    # today's finished Runs (rollup), newest deletion (past days' counts come from the cache);
    # the wait reasons of the queued Runs shown, when there are any (runs.fairness).
    queued_shown = Run.objects.filter(status="queued").exists()
    with django_assert_num_queries(10 + queued_shown):
        html = page(client)
    assert len(run_ids(html)) == min(2 * n, 25)


@pytest.mark.parametrize("n", [1, 30])
def test_row_poll_query_count_is_constant(datastore, editor, n, django_assert_num_queries):
    runs = [make_run(datastore, status="running", progress_total=n, progress_done=0)
            for _ in range(n)]
    client = client_for(editor)
    version = _v(runs[-1])
    client.get(f"/activity/runs/{runs[-1].pk}/line/", {"v": version})  # warm-up
    # session, user, live state (unchanged: 204)
    with django_assert_num_queries(3):
        assert client.get(f"/activity/runs/{runs[-1].pk}/line/", {"v": version}).status_code == 204
    # changed: session, user, live state, the row, permission level
    with django_assert_num_queries(5):
        assert client.get(f"/activity/runs/{runs[-1].pk}/line/", {"v": "old"}).status_code == 200



def test_promote_rows_name_their_destinations_without_a_query_each(datastore, editor):
    """A Promote's destination is named to those who may see it, "another datastore" to the
    others, from the page's one permission query however many Promotes it shows."""
    shared = DatastoreFactory(name="shared-lake")
    editor.teams.get().datastores.add(shared)
    secret = DatastoreFactory(name="secret-lake")
    client = client_for(editor)

    def promotes(count: int) -> None:
        for i in range(count):
            make_run(datastore, operation="promote", user=editor,
                     destination_datastore=shared if i % 2 else secret)

    promotes(2)
    page(client)  # warm-up
    with CaptureQueriesContext(connection) as few:
        page(client)
    promotes(10)
    page(client)
    with CaptureQueriesContext(connection) as many:
        html = page(client)
    assert len(many.captured_queries) == len(few.captured_queries)
    assert html.count(f"{datastore.name} → shared-lake") == 6
    assert html.count(f"{datastore.name} → another datastore") == 6
    assert "secret-lake" not in html


# -- live updates ------------------------------------------------------------------------------
def _v(run: Run) -> str:
    from activity.selectors import state_version

    run.refresh_from_db()
    return state_version(run)


def test_row_poll_204_while_unchanged_then_final_fragment(datastore, editor):
    run = make_run(datastore, status="running", progress_total=5, progress_done=1,
                   progress_unit="Tables")
    client = client_for(editor)
    html = page(client)
    version = re.search(rf'/activity/runs/{run.pk}/line/\?v=([^"]+)"', html).group(1)
    unchanged = client.get(f"/activity/runs/{run.pk}/line/", {"v": version})
    assert unchanged.status_code == 204 and unchanged.content == b""

    Run.objects.filter(pk=run.pk).update(progress_done=2)
    changed = client.get(f"/activity/runs/{run.pk}/line/", {"v": version})
    body = changed.content.decode()
    assert changed.status_code == 200 and "2 / 5 Tables" in body
    # The redrawn line keeps the row's select box for the bulk actions.
    select = f'name="run" value="{run.pk}" form="bulk-form"'
    assert select in html and select in body
    assert "<html" not in body and 'hx-trigger="every 2s' in body
    new_version = re.search(r'\?v=([^"]+)"', body).group(1)
    assert new_version != version

    append_log(run.pk, "a new line")  # the log counter is part of the version too
    assert client.get(f"/activity/runs/{run.pk}/line/", {"v": new_version}).status_code == 200

    Run.objects.filter(pk=run.pk).update(status="success", finished_at=timezone.now(),
                                         progress_done=5)
    final = client.get(f"/activity/runs/{run.pk}/line/", {"v": new_version}).content.decode()
    assert '<span class="badge badge-success">Success</span>' in final
    assert "hx-trigger" not in final and "/line/?v=" not in final  # no polling attributes
    assert f"/activity/runs/{run.pk}/rerun/" in final  # terminal actions appear


@pytest.mark.both_backends
def test_polls_answer_exactly_who_may_see_the_run(datastore, outsider, viewer, admin):
    run = make_run(datastore, status="running")
    elsewhere = DatastoreFactory(name="elsewhere")
    other_team = TeamFactory(name="other", level=Level.EDITOR)
    other_team.members.add(outsider)
    other_team.datastores.add(elsewhere)
    hidden = make_run(elsewhere, status="running")
    urls = ("line", "more", "live", "logs")
    for url in urls:
        assert client_for(outsider).get(f"/activity/runs/{run.pk}/{url}/").status_code == 404
        assert client_for(outsider).get(f"/activity/runs/{hidden.pk}/{url}/").status_code == 200
        assert client_for(viewer).get(f"/activity/runs/{run.pk}/{url}/").status_code == 200
        assert client_for(viewer).get(f"/activity/runs/{hidden.pk}/{url}/").status_code == 404
        assert client_for(admin).get(f"/activity/runs/{hidden.pk}/{url}/").status_code == 200
    # The Public team's datastores are everybody's, without a membership row.
    Team.objects.get(is_public=True).datastores.add(datastore)
    for url in urls:
        assert client_for(outsider).get(f"/activity/runs/{run.pk}/{url}/").status_code == 200
