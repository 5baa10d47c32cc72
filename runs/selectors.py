"""The one Run list: visibility, filters and keyset pages, for the Activity page and the API."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from django.db.models import Q, QuerySet

from accounts.models import Role, User
from assay.paging import Page, keyset_page
from datastores.models import Datastore
from runs.models import ActorKind, Run, Schedule


def runs_for(
    user: User, stores: list[Datastore] | None = None, *, prefetch: bool = True
) -> QuerySet[Run]:
    """The Runs the user may see, with what a row shows loaded (without the abort users and
    Promote destinations when not ``prefetch``: see ``load_references``).

    ``stores``, the user's visible datastores when the caller has loaded them already, turns
    the permission subquery into a literal id list, which PostgreSQL plans faster.
    """
    return visible_runs(user, stores).for_list(prefetch=prefetch)


def load_references(runs: list[Run], stores: list[Datastore] | None = None) -> None:
    """What ``prefetch_related`` would load for ``Run.objects.for_list()``, in fewer queries.

    The users who requested or carried out an abort come in one query (not one per field);
    a Promote's destination is taken from ``stores`` (loaded already) when it is one of them.
    """
    people = {id_ for run in runs
              for id_ in (run.aborted_by_user_id, run.abort_requested_by_id) if id_}
    users = {user.pk: user for user in User.objects.filter(pk__in=people)} if people else {}
    known = {store.pk: store for store in stores or ()}
    missing = {run.destination_datastore_id for run in runs
               if run.destination_datastore_id and run.destination_datastore_id not in known}
    if missing:  # deleted, or not visible to this user: the row still needs its name
        known |= {store.pk: store for store in Datastore.all_objects.filter(pk__in=missing)}
    for run in runs:
        run.aborted_by_user = users.get(run.aborted_by_user_id)
        run.abort_requested_by = users.get(run.abort_requested_by_id)
        run.destination_datastore = known.get(run.destination_datastore_id)


def visible_runs(user: User, stores: list[Datastore] | None = None) -> QuerySet[Run]:
    if stores is None or user.role == Role.ADMIN:
        return Run.objects.visible_to(user)
    return Run.objects.filter(datastore_id__in=[store.pk for store in stores])


@dataclass(frozen=True)
class RunFilters:
    """Every filter of a Run list. Empty tuples and None mean "any"."""

    datastores: tuple[int, ...] = ()
    operations: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    trigger: str = ""  # user / schedule / system
    triggered_by: str = ""  # user name or schedule name
    created_after: dt.datetime | None = None  # inclusive
    created_before: dt.datetime | None = None  # exclusive
    run_id: int | None = None
    schedule_id: int | None = None  # the Runs one schedule launched (it may be deleted)
    # ``triggered_by`` resolved to user and schedule ids (see ``resolved``).
    by_user_ids: tuple[int, ...] | None = None
    by_schedule_ids: tuple[int, ...] | None = None

    @property
    def dated(self) -> bool:
        return bool(self.created_after or self.created_before)

    def undated(self) -> RunFilters:
        return replace(self, created_after=None, created_before=None)

    def resolved(self) -> RunFilters:
        """The same filters with the name in ``triggered_by`` turned into ids.

        Users and schedules are small tables; matching their names first lets the Runs
        query use its indexes on ``triggered_by_user_id`` and ``schedule_id`` instead of
        testing every Run's joined names. Two queries, once per request.
        """
        if not self.triggered_by or self.by_user_ids is not None:
            return self
        name = self.triggered_by
        users = User.objects.filter(
            Q(username__icontains=name)
            | Q(first_name__icontains=name)
            | Q(last_name__icontains=name)
        )
        schedules = Schedule.objects.filter(name__icontains=name)
        return replace(
            self,
            by_user_ids=tuple(users.order_by("pk").values_list("pk", flat=True)),
            by_schedule_ids=tuple(schedules.order_by("pk").values_list("pk", flat=True)),
        )

    def apply(self, runs: QuerySet[Run], *, dates: bool = True) -> QuerySet[Run]:
        if self.run_id is not None:
            runs = runs.filter(pk=self.run_id)
        runs = _any_of(runs, "datastore_id", self.datastores)
        runs = _any_of(runs, "operation", self.operations)
        runs = _any_of(runs, "status", self.statuses)
        if self.schedule_id is not None:
            runs = runs.filter(triggered_by_kind=ActorKind.SCHEDULE, schedule_id=self.schedule_id)
        if self.trigger:
            runs = runs.filter(triggered_by_kind=self.trigger)
        if self.triggered_by:
            by = self.resolved()
            if not (by.by_user_ids or by.by_schedule_ids):
                return runs.none()
            runs = runs.filter(
                Q(triggered_by_user_id__in=by.by_user_ids)
                | Q(triggered_by_kind=ActorKind.SCHEDULE, schedule_id__in=by.by_schedule_ids)
            )
        if dates:
            if self.created_after:
                runs = runs.filter(created_at__gte=self.created_after)
            if self.created_before:
                runs = runs.filter(created_at__lt=self.created_before)
        return runs


def _any_of(rows: QuerySet, column: str, values: tuple) -> QuerySet:
    # One value as "=": the planner uses a composite index's order for it, not for IN.
    if len(values) == 1:
        return rows.filter(**{column: values[0]})
    if values:
        return rows.filter(**{f"{column}__in": values})
    return rows


def day_start(day: dt.date, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
    """The first instant of ``day`` in ``zone`` (the viewer's, on the pages; UTC in the API)."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=zone)


def run_page(
    user: User,
    filters: RunFilters,
    *,
    before: int | None,
    limit: int,
    stores: list[Datastore] | None = None,
) -> Page:
    """Newest first, keyset-paginated: one query, no OFFSET, no COUNT.

    ``before`` is the id of the last Run of the previous page (see ``assay.paging``).
    """
    runs = filters.apply(runs_for(user, stores, prefetch=False))
    page = keyset_page(runs, before=before, limit=limit, dated=filters.dated)
    load_references(page.items, stores)
    return page
