"""Reads for the web pages. Each function issues a fixed number of queries, whatever the rows."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from itertools import groupby

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Func, IntegerField, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import Http404
from django.utils import timezone

import assay.lookups  # noqa: F401 -- the "any" lookup of _sum_spans
from accounts.models import Role, User
from accounts.permissions import (
    can_see_connection,
    datastore_level,
    datastore_levels,
    may_edit_datastore,
    visible_datastore_ids,
    visible_sql,
)
from assay.paging import Page
from datastores.models import Container, Datastore
from datastores.selectors import failed_checks_by_unit
from runs import fairness, rollup
from runs.models import (
    ACTIVE_STATUSES,
    Operation,
    Run,
    RunActorDayCount,
    RunContainer,
    RunDayCount,
    RunDeletion,
    RunHourCount,
    RunLogEntry,
    RunQuarterCount,
    RunStatus,
)
from runs.policy import Action, allowed_in_state, available_actions, level_allows
from runs.selectors import RunFilters, day_start, runs_for, visible_runs
from runs.selectors import run_page as shared_run_page
from runs.services import BulkOutcome, unfinished_units

PAGE_SIZE = 25
HEATMAP_WEEKS = 12
LOG_TAIL_LINES = 20
LOG_PAGE_LINES = 500


# -- runs --------------------------------------------------------------------------------------
# The Run list itself is shared with the API: runs.selectors.


def run_page(
    user: User, filters: RunFilters, *, before: int | None, stores: list[Datastore] | None = None
) -> Page:
    """A page of the Activity list (PAGE_SIZE Runs), see ``runs.selectors.run_page``."""
    return shared_run_page(user, filters, before=before, limit=PAGE_SIZE, stores=stores)


def attach_actions(user: User, runs: list[Run]) -> None:
    """Set ``run.actions`` on every row, and whether the user may see a Promote's
    destination (``run.destination_visible``), from ONE permission query for the whole page."""
    ids = {run.datastore_id for run in runs} | {
        run.destination_datastore_id for run in runs if run.destination_datastore_id}
    levels = datastore_levels(user, ids) if runs else {}
    for run in runs:
        run.actions = available_actions(run, levels.get(run.datastore_id))
        if run.destination_datastore_id:
            run.destination_visible = run.destination_datastore_id in levels


def visible_run(user: User, run_id: int, *, detail: bool = False) -> Run:
    """The Run, or 404 when it does not exist or the user cannot see its datastore."""
    runs = runs_for(user)
    if detail:
        # Unconstrained references: a deleted original joins as None, the page says so.
        runs = runs.select_related("resumed_from", "rerun_of")
    run = runs.filter(pk=run_id).first()
    if run is None:
        raise Http404("Run not found.")
    return run


def with_actions(user: User, run: Run) -> Run:
    level = datastore_level(user, run.datastore_id)
    run.level = level
    run.actions = available_actions(run, level)
    return run


def later_runs(run: Run) -> list[Run]:
    """Runs that resumed or reran this one (links forward in the timeline)."""
    return list(
        Run.objects.filter(Q(resumed_from_id=run.pk) | Q(rerun_of_id=run.pk))
        .only("id", "status", "resumed_from_id", "rerun_of_id", "created_at")
        .order_by("id")
    )


# -- the live list ----------------------------------------------------------------------------
def newest_run_id() -> int:
    """The highest Run id there is: one index lookup, no row read. An Activity page that has
    seen it has nothing new to fetch."""
    return Run.objects.aggregate(newest=Max("id"))["newest"] or 0


def runs_after(user: User, filters: RunFilters, after: int, *, stores: list[Datastore]):
    """Runs newer than ``after`` that the filters match, newest first (one page at most)."""
    runs = filters.apply(runs_for(user, stores)).filter(pk__gt=after)
    return list(runs.order_by("-pk")[:PAGE_SIZE])


# -- bulk actions ------------------------------------------------------------------------------
BULK_LIMIT = 500  # Runs per bulk action: the action runs within one request


def bulk_runs(user: User, *, ids: list[int] | None, filters: RunFilters | None,
              stores: list[Datastore]) -> tuple[list[Run], bool]:
    """The visible Runs a bulk action names (by id, or every Run the filters match), newest
    first, and whether the BULK_LIMIT cut the list."""
    runs = runs_for(user, stores)
    if ids is not None:
        runs = runs.filter(pk__in=ids[:BULK_LIMIT])
    else:
        runs = filters.apply(runs)
    found = list(runs.order_by("-pk")[: BULK_LIMIT + 1])
    return found[:BULK_LIMIT], len(found) > BULK_LIMIT


BULK_PREVIEW = {
    Action.ABORT: ("will be aborted", BulkOutcome.ALREADY_ENDED),
    Action.DELETE: ("will be deleted", BulkOutcome.STILL_ACTIVE),
}


def bulk_plan(user: User, action: Action, runs: list[Run]) -> list[tuple[str, list[int]]]:
    """What a bulk action would do to each Run, grouped, from the policy table (no write)."""
    levels = datastore_levels(user, {run.datastore_id for run in runs}) if runs else {}
    acts, refused = BULK_PREVIEW[action]
    plan: dict[str, list[int]] = {}
    for run in runs:
        if not level_allows(levels.get(run.datastore_id)):
            outcome = BulkOutcome.NOT_ALLOWED
        elif allowed_in_state(action, status=run.status, operation=run.operation):
            outcome = acts
        else:
            outcome = refused
        plan.setdefault(outcome, []).append(run.pk)
    return list(plan.items())


def resume_preview(run: Run, names: int = 5) -> dict | None:
    """"10 of 15 tables remain: orders, ..." for Resume's confirmation."""
    units = unfinished_units(run)
    if units is None or run.progress_total is None:
        return None
    return {
        "count": len(units),
        "total": run.progress_total,
        "unit": (run.progress_unit or "units").lower(),
        "names": [unit.name for unit in units[:names]],
        "more": max(0, len(units) - names),
    }


# -- live state --------------------------------------------------------------------------------
LIVE_FIELDS = ("status", "progress_done", "progress_total", "log_lines", "abort_requested_at")


def state_version(row) -> str:
    """What the pages show that changes while a Run works, as one short comparable string.

    ``row`` is a Run or a ``values()`` dict of LIVE_FIELDS. Durations tick client-side, so
    they are not part of it.
    """
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    total = get("progress_total")
    return ":".join(
        [
            str(get("status")),
            str(get("progress_done")),
            "" if total is None else str(total),
            str(get("log_lines")),
            "1" if get("abort_requested_at") else "0",
            # Set by live_state, attach_wait_reasons (runs.fairness) for queued Runs.
            (row.get("wait_reason") if isinstance(row, dict) else getattr(row, "wait_reason", ""))
            or "",
        ]
    )


def live_state(user: User, run_id: int) -> dict | None:
    """The Run's live fields in one indexed query (visibility is a subquery of the same SQL).

    Plain SQL: this answers every poll of every open page, and building the ORM query with
    its permission subqueries cost more than running it.
    """
    visible, params = visible_sql(user, "r.datastore_id")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(f'r.{name}' for name in LIVE_FIELDS)}"
            f" FROM {Run._meta.db_table} r WHERE r.id = %s AND {visible}",
            [run_id, *params],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    state = dict(zip(LIVE_FIELDS, row, strict=True))
    if state["status"] == RunStatus.QUEUED:
        # Its place in line moves while its own row stays the same.
        state["wait_reason"] = fairness.wait_reasons([run_id]).get(run_id, "")
    return state


# -- logs --------------------------------------------------------------------------------------
def log_after(run_id: int, after: int, *, limit: int = LOG_PAGE_LINES) -> list[RunLogEntry]:
    return list(RunLogEntry.objects.filter(run_id=run_id, id__gt=after).order_by("id")[:limit])


def log_tail(run_id: int, *, lines: int = LOG_TAIL_LINES, run_level: bool = False):
    entries = RunLogEntry.objects.filter(run_id=run_id)
    if run_level:
        entries = entries.filter(container="")
    return list(reversed(entries.order_by("-id")[:lines]))


# -- per-container results ---------------------------------------------------------------------
def unit_results(run: Run) -> list[RunContainer]:
    """Per-container rows with their own log lines attached as ``unit.log`` and, for scans,
    the checks that failed or could not run as ``unit.failed_checks`` (three queries)."""
    units = list(RunContainer.objects.filter(run_id=run.pk).order_by("position"))
    if not units:
        return units
    lines = (
        RunLogEntry.objects.filter(run_id=run.pk)
        .exclude(container="")
        .order_by("container", "id")
    )
    by_container = {name: list(group) for name, group in groupby(lines, lambda e: e.container)}
    failed = (
        failed_checks_by_unit(run.pk)
        if run.operation in (Operation.SCAN, Operation.EXTERNAL_SCAN)
        else {}
    )
    for unit in units:
        unit.log = by_container.get(unit.name, [])
        unit.failed_checks = failed.get(unit.name, [])
    return units


# -- heatmap -----------------------------------------------------------------------------------
@dataclass
class HeatDay:
    day: dt.date
    count: int
    level: int  # 0..4, for the colour scale
    in_future: bool


def heatmap(
    user: User,
    filters: RunFilters,
    *,
    stores: list[Datastore] | None = None,
    today: dt.date | None = None,
):
    """Runs per day over the last HEATMAP_WEEKS weeks (the viewer's days), as week columns.

    Finished Runs come from the rollup (``_finished_per_day``); active Runs are
    counted live. A finished Run is
    immutable (a database trigger enforces it) and Runs are only ever created "now", so the
    past days' counts are also cached, keyed by everything that could change them: the
    filters, the visible datastores, the day, the newest Run deletion, and the ids of past
    days' Runs that are still active (when one finishes, the key changes). Three small indexed
    queries on a hit.
    """
    zone = timezone.get_current_timezone()  # the viewer's days
    today = today or timezone.localdate()
    # Columns are Monday..Sunday weeks; the last column holds today.
    first = today - dt.timedelta(days=today.weekday() + 7 * (HEATMAP_WEEKS - 1))
    today_start = day_start(today, zone)
    filters = filters.resolved()  # names as ids: part of the cache key
    if stores is None:  # the visible datastores are part of the key too
        stores = list(visible_datastores(user))
    runs = filters.apply(visible_runs(user, stores), dates=False)

    # Past days' active Runs, whatever the filters: when one finishes it may join the
    # filtered count (a status filter, say), so their ids are part of the cache key.
    still_active = list(
        Run.objects.filter(created_at__gte=day_start(first, zone), created_at__lt=today_start,
                           status__in=ACTIVE_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )  # fmt: skip
    # Active Runs are counted live (a few hundred at most); finished ones from the rollup,
    # today's too (a day's 24 hours of rows, complete to the last Run that ended).
    live = Q(created_at__gte=today_start, status__in=ACTIVE_STATUSES)
    if still_active:
        live |= Q(pk__in=still_active)
    counts = _per_day(runs.filter(live), zone)
    tomorrow = today + dt.timedelta(days=1)
    for day, n in _finished_per_day(user, filters, stores, runs, today, tomorrow, zone).items():
        counts[day] = counts.get(day, 0) + n

    key = _heatmap_key(user, filters, stores, still_active, today, zone)
    closed = cache.get(key)
    if closed is None:
        closed = _finished_per_day(user, filters, stores, runs, first, today, zone)
        cache.set(key, closed, HEATMAP_CACHE_SECONDS)
    for day, n in closed.items():
        counts[day] = counts.get(day, 0) + n

    peak = max(counts.values(), default=0)
    weeks = []
    for w in range(HEATMAP_WEEKS):
        week = []
        for d in range(7):
            day = first + dt.timedelta(days=7 * w + d)
            n = counts.get(day, 0)
            level = 0 if n == 0 else min(4, 1 + (4 * n - 1) // max(peak, 1))
            week.append(HeatDay(day, n, level, day > today))
        weeks.append(week)
    selected = selected_day(filters, zone)
    return {"weeks": weeks, "total": sum(counts.values()), "selected": selected}


def selected_day(filters: RunFilters, zone: dt.tzinfo = dt.UTC) -> dt.date | None:
    """The one day the filters select (a heatmap cell), if they select exactly one."""
    start, end = filters.created_after, filters.created_before
    if not (start and end):
        return None
    day = start.astimezone(zone).date()
    if start == day_start(day, zone) and end == day_start(day + dt.timedelta(days=1), zone):
        return day
    return None


def _finished_per_day(
    user: User,
    filters: RunFilters,
    stores: list[Datastore],
    runs: QuerySet[Run],
    first: dt.date,
    end: dt.date,
    zone: dt.tzinfo,
) -> dict[dt.date, int]:
    """Finished Runs per local day from ``first`` to the day before ``end``, from the rollup
    (runs.rollup: per UTC day; per UTC hour and quarter hour for the viewers whose days start
    at another time; per UTC day and actor for the "by" and schedule filters).

    ``runs`` is the visible Runs under the filters (no dates). It is counted instead for one
    Run id, for days that would start off a quarter hour (no zone's do today), and for the
    "by" and schedule filters outside UTC together with an operation, status or trigger
    filter: the actor rows have no hours, only quarter-of-day totals, and counting one
    actor's Runs (an index-only scan of its own index) is quicker than counting those of the
    85 part days, each its own range.
    """
    n_days = (end - first).days
    starts = [day_start(first + dt.timedelta(days=i), zone) for i in range(n_days + 1)]
    finished = runs.exclude(status__in=ACTIVE_STATUSES)
    off_quarter = any(start.astimezone(dt.UTC).minute % 15 or start.second for start in starts)
    actors = _actor_rows(filters)
    off_midnight = any(start != _utc_midnight(start) for start in starts)
    every = not (filters.operations or filters.statuses or filters.trigger)
    if (filters.run_id is not None or off_quarter
            or (actors is not None and off_midnight and not every)):
        return _per_day(finished.filter(created_at__gte=starts[0], created_at__lt=starts[-1]),
                        zone)
    columns = rollup.columns_for(filters.operations, filters.statuses, filters.trigger)
    if not columns:  # e.g. only active statuses: none of those are finished
        return {}
    total = F("n") if every else _plus(columns)

    def rows_of(model, where: Q) -> QuerySet:
        rows = model.objects.filter(where)
        if user.role != Role.ADMIN:  # as visible_runs: an admin sees every datastore's Runs
            rows = rows.filter(datastore_id__in=[store.pk for store in stores])
        if filters.datastores:
            rows = rows.filter(datastore_id__in=filters.datastores)
        if actors is not None:
            rows = rows.filter(actors)
        return rows

    def sums(model, period: str, where: Q) -> dict:
        return {row[period]: row["total"]
                for row in rows_of(model, where).values(period).annotate(total=Sum(total))
                .order_by()}  # fmt: skip

    # C(t), the finished Runs from the first UTC day's start to t (a quarter hour), is whole
    # UTC days plus the part of t's own UTC day before t. A local day is C(its end) - C(its
    # start).
    day_range = Q(day__gte=starts[0].astimezone(dt.UTC).date(),
                  day__lte=starts[-1].astimezone(dt.UTC).date())
    if every and off_midnight:
        # All Runs (or all of the actor's): the day (or actor) rows' quarter-of-day totals
        # hold the parts too, in the same rows, summed by the database up to each quarter a
        # day starts at (one or two: DST).
        quarter = {start: _quarter_of_day(start) for start in starts}
        before = {f"before_{k}": Sum(_plus(rollup.QUARTER_OF_DAY_COLUMNS[:k]))
                  for k in set(quarter.values()) if k}
        model = RunDayCount if actors is None else RunActorDayCount
        by_day = {row["day"]: row for row in rows_of(model, day_range).values("day")
                  .annotate(total=Sum("n"), **before).order_by()}
        days = {day: row["total"] for day, row in by_day.items()}
        parts = {start: by_day[day][f"before_{k}"] for start, k in quarter.items()
                 if k and (day := start.astimezone(dt.UTC).date()) in by_day}
    elif actors is None:
        days = sums(RunDayCount, "day", day_range)
        parts = _part_days(sums, starts, days)
    else:
        days, parts = sums(RunActorDayCount, "day", day_range), {}

    def until(start: dt.datetime) -> int:
        utc_day = start.astimezone(dt.UTC).date()
        return sum(n for day, n in days.items() if day < utc_day) + parts.get(start, 0)

    cumulative = [until(start) for start in starts]
    counts = {first + dt.timedelta(days=i): cumulative[i + 1] - cumulative[i]
              for i in range(n_days)}
    return {day: n for day, n in counts.items() if n}


def _actor_rows(filters: RunFilters) -> Q | None:
    """The RunActorDayCount rows of the "by" and schedule filters (None without them): the
    same Runs as ``RunFilters.apply`` picks, by the keys the rollup stores."""
    if filters.schedule_id is None and not filters.triggered_by:
        return None
    rows = Q()
    if filters.schedule_id is not None:
        rows &= Q(schedule_key=filters.schedule_id)
    if filters.triggered_by:
        by = filters.resolved()
        rows &= Q(user_key__in=by.by_user_ids) | Q(schedule_key__in=by.by_schedule_ids)
    return rows


def _utc_midnight(moment: dt.datetime) -> dt.datetime:
    return _hour_of(moment).replace(hour=0)


def _plus(columns: list[str]) -> Func:
    """``(a + b + c ...)``, flat: the ORM's ``F(a) + F(b) + ...`` nests a parenthesis per
    term, and SQLite's parser gives up ("parser stack overflow") past about 90 of them."""
    return Func(*(F(column) for column in columns), function="", arg_joiner=" + ",
                output_field=IntegerField())


def _quarter_of_day(moment: dt.datetime) -> int:
    """The index (0..95) of the UTC quarter hour of the day holding ``moment``."""
    utc = moment.astimezone(dt.UTC)
    return utc.hour * 4 + utc.minute // 15


def _part_days(sums, starts: list[dt.datetime], days: dict) -> dict:
    """For each start, the finished Runs from its UTC midnight to it, from the fewest rows:
    the hours from that midnight, or the day minus the hours to the next one, up to the hour
    before the start (adding its quarters up to the start) or the hour after it (taking away
    its quarters from the start). For +5:30, 18:30 UTC: the day minus 19:00-24:00, minus the
    quarters 18:30 and 18:45 (7 periods instead of 20)."""
    plans = {start: _part_plan(start) for start in starts}
    hours = _sum_spans(sums, RunHourCount, "hour",
                       [plan.hours for plan in plans.values()], HOUR)
    quarters = _sum_spans(sums, RunQuarterCount, "quarter",
                          [plan.quarters for plan in plans.values()], QUARTER)
    parts = {}
    for start, plan in plans.items():
        n = _in_span(hours, *plan.hours, HOUR)
        if not plan.from_midnight:
            n = days.get(_utc_midnight(start).date(), 0) - n
        parts[start] = n + plan.quarter_sign * _in_span(quarters, *plan.quarters, QUARTER)
    return parts


@dataclass(frozen=True)
class _PartPlan:
    hours: tuple[dt.datetime, dt.datetime]  # a span of whole hours
    from_midnight: bool  # the hours are the part itself (else the day minus them)
    quarters: tuple[dt.datetime, dt.datetime]  # a span of quarters within one hour
    quarter_sign: int  # +1: the quarters are added; -1: taken away


def _part_plan(start: dt.datetime) -> _PartPlan:
    midnight, floor = _utc_midnight(start), _hour_of(start)
    ceiling = floor if floor == start else floor + HOUR
    plans = []
    for edge, quarters, sign in ((floor, (floor, start), 1), (ceiling, (start, ceiling), -1)):
        plans.append(_PartPlan((midnight, edge), True, quarters, sign))
        plans.append(_PartPlan((edge, midnight + DAY), False, quarters, sign))
    return min(plans, key=lambda plan: (plan.hours[1] - plan.hours[0]) / HOUR
               + (plan.quarters[1] - plan.quarters[0]) / QUARTER)


DAY, HOUR, QUARTER = dt.timedelta(days=1), dt.timedelta(hours=1), dt.timedelta(minutes=15)


def _sum_spans(sums, model, period: str, spans: list, step: dt.timedelta) -> dict:
    """The rollup's totals for every period of the (begin, end) spans, in one query (none
    without spans). One list of periods (``any``: a single array parameter on PostgreSQL): an
    index probe each, and quicker to build than 85 OR-ed ranges."""
    periods = sorted({begin + i * step
                      for begin, end in spans for i in range((end - begin) // step)})
    if not periods:
        return {}
    return sums(model, period, Q(**{f"{period}__any": periods}))


def _in_span(totals: dict, begin: dt.datetime, end: dt.datetime, step: dt.timedelta) -> int:
    return sum(totals.get(begin + i * step, 0) for i in range((end - begin) // step))


def _hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of the UTC hour holding ``moment``."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _per_day(runs: QuerySet[Run], zone: dt.tzinfo) -> dict[dt.date, int]:
    days = runs.annotate(day=TruncDate("created_at", tzinfo=zone)).values("day")
    return {row["day"]: row["n"] for row in days.annotate(n=Count("id")).order_by()}


# A day at most: the key names the day, so an entry is never read after its day anyway.
HEATMAP_CACHE_SECONDS = 24 * 3600


def _heatmap_key(
    user: User,
    filters: RunFilters,
    stores: list[Datastore],
    active_ids: list[int],
    today: dt.date,
    zone: dt.tzinfo,
) -> str:
    deleted = RunDeletion.objects.aggregate(last=Max("id"))["last"]
    parts = [
        today.isoformat(),  # the past days are the 12 weeks before it
        str(zone),  # whose days
        repr(filters.undated()),  # the heatmap ignores dates
        # Whose Runs: the visible datastores (a deleted one takes its Runs along).
        ",".join(str(s.pk) for s in stores),
        str(deleted),
        ",".join(map(str, active_ids)),
    ]
    return "heatmap:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


# -- datastores --------------------------------------------------------------------------------
def visible_datastores(user: User) -> QuerySet[Datastore]:
    ids = visible_datastore_ids(user)
    stores = Datastore.objects.all() if ids is None else Datastore.objects.filter(pk__in=ids)
    return stores.order_by("name")


def datastore_cards(user: User) -> list[Datastore]:
    """Visible datastores with container count, Run count and the viewer's level."""
    stores = list(
        visible_datastores(user).annotate(
            containers_count=Count("containers", distinct=True),
        )
    )
    levels = datastore_levels(user, [s.pk for s in stores]) if stores else {}
    for store in stores:
        store.level = levels.get(store.pk)
        store.can_launch = level_allows(store.level)
        # Host, path and user are for Editors and admins; Reporters and Viewers see the kind.
        store.connection = store.display_url if can_see_connection(user, store.level) else ""
        store.can_edit = may_edit_datastore(user, store.level)
    return stores


def catalogue(datastore: Datastore) -> list[str]:
    """Names of the datastore's catalogued containers, for the Launch form's choices."""
    return list(datastore.containers.order_by("name").values_list("name", flat=True))


def container_names(datastores: list[Datastore]) -> list[tuple[str, str]]:
    """(datastore name, container name) pairs, to suggest destination containers."""
    if not datastores:
        return []
    return list(
        Container.objects.filter(datastore__in=datastores)
        .order_by("datastore__name", "name")
        .values_list("datastore__name", "name")
    )


def editable_datastores(user: User) -> list[Datastore]:
    stores = list(visible_datastores(user))
    levels = datastore_levels(user, [s.pk for s in stores]) if stores else {}
    return [s for s in stores if level_allows(levels.get(s.pk))]
