"""Reads of checks, anomalies and the datastore pages, for the UI and the API alike.

Lists are keyset pages (``assay.paging``) over the rows the user may see; each filter leads
one of the indexes declared on the models, which end in ``id`` so a page walks them in order.
Every function issues a fixed number of queries, whatever the number of rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Max, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.http import Http404

from accounts.models import Level, Role, User
from accounts.permissions import datastore_level, datastore_levels, visible_datastore_ids
from assay.paging import Page, keyset_page
from datastores.models import (
    OPEN_ANOMALY_STATUSES,
    Anomaly,
    AnomalyEvent,
    Check,
    CheckEvaluation,
    Container,
    Datastore,
    FieldProfile,
)
from runs.models import Operation, RunContainer, RunStatus
from runs.policy import anomaly_actions, can_see_source_values, can_write_check, check_actions

PAGE_SIZE = 25
RECENT_EVALUATIONS = 8


def _visible(
    rows: QuerySet, user: User, stores: list[int] | None = None, datastore: int | None = None
) -> QuerySet:
    """Rows on datastores the user can see. ``stores``: the ids, when already loaded.

    ``datastore``: the list's datastore filter. When it is one of ``stores`` the filter alone
    says it all, and leaving the id list out lets the planner walk the filter's index.
    """
    if user.role == Role.ADMIN or (stores is not None and datastore in stores):
        return rows
    if stores is not None:
        return rows.filter(datastore_id__in=stores)
    return rows.filter(datastore_id__in=visible_datastore_ids(user))


def _one(rows: QuerySet, column: str, value) -> QuerySet:
    return rows if value in (None, "") else rows.filter(**{column: value})


# -- checks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckFilters:
    datastore: int | None = None
    container: int | None = None
    field: str = ""
    type: str = ""
    status: str = ""
    origin: str = ""

    def apply(self, rows: QuerySet[Check]) -> QuerySet[Check]:
        rows = _one(rows, "datastore_id", self.datastore)
        rows = _one(rows, "container_id", self.container)
        rows = _one(rows, "field_name", self.field)
        rows = _one(rows, "type", self.type)
        rows = _one(rows, "status", self.status)
        return _one(rows, "origin", self.origin)


def check_page(
    user: User,
    filters: CheckFilters,
    *,
    before: int | None,
    limit: int = PAGE_SIZE,
    stores: list[int] | None = None,
) -> Page:
    rows = filters.apply(_visible(Check.objects.select_related("container", "datastore"), user,
                                  stores, filters.datastore))
    page = keyset_page(rows, before=before, limit=limit)
    attach_check_access(user, page.items)
    return page


def attach_check_access(user: User, checks: list[Check]) -> None:
    """``level``, ``actions``, ``can_edit`` and ``shows_values`` on each check (one query)."""
    levels = datastore_levels(user, {c.datastore_id for c in checks}) if checks else {}
    for check in checks:
        level = levels.get(check.datastore_id)
        _check_access(check, level)


def _check_access(check: Check, level: Level | None) -> None:
    check.level = level
    check.actions = check_actions(check.status, level)
    check.can_edit = check.origin == "authored" and can_write_check(level, check.status)
    check.shows_values = can_see_source_values(level)


def recent_evaluations(checks: list[Check], *, per_check: int = RECENT_EVALUATIONS) -> None:
    """The last ``per_check`` evaluations of each check, oldest first, as ``check.recent``.

    One query. On PostgreSQL a LATERAL join reads one short index range per check
    (``evaluation_check_id``, newest first), so its cost does not grow with a check's history;
    elsewhere (SQLite has no LATERAL) the evaluations are numbered per check by a window.
    """
    for check in checks:
        check.recent = []
    if not checks:
        return
    by_id = {check.pk: check for check in checks}
    if connection.vendor == "postgresql":
        rows = CheckEvaluation.objects.raw(
            f"SELECT e.* FROM unnest(%s::bigint[]) AS c(id) CROSS JOIN LATERAL ("
            f"SELECT * FROM {CheckEvaluation._meta.db_table} WHERE check_rule_id = c.id "
            f"ORDER BY id DESC LIMIT {int(per_check)}) AS e",
            [list(by_id)],
        )
    else:
        rows = (
            CheckEvaluation.objects.filter(check_rule_id__in=by_id)
            .annotate(n=Window(RowNumber(), partition_by="check_rule_id", order_by="-id"))
            .filter(n__lte=per_check)
        )
    for evaluation in sorted(rows, key=lambda e: (e.check_rule_id, e.pk)):
        by_id[evaluation.check_rule_id].recent.append(evaluation)


def visible_check(user: User, check_id: int) -> Check:
    check = Check.objects.select_related("container", "datastore", "created_by").filter(
        pk=check_id
    ).first()
    level = datastore_level(user, check.datastore_id) if check else None
    if check is None or level is None:
        raise Http404("Check not found.")
    _check_access(check, level)
    return check


def check_evaluations(check: Check, *, limit: int = 30) -> list[CheckEvaluation]:
    return list(check.evaluations.order_by("-id")[:limit])


# -- anomalies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnomalyFilters:
    status: str = ""
    datastore: int | None = None
    container: int | None = None
    check_type: str = ""
    check: int | None = None
    found_after: dt.datetime | None = None  # inclusive
    found_before: dt.datetime | None = None  # exclusive

    @property
    def dated(self) -> bool:
        return bool(self.found_after or self.found_before)

    def apply(self, rows: QuerySet[Anomaly]) -> QuerySet[Anomaly]:
        rows = _one(rows, "status", self.status)
        rows = _one(rows, "datastore_id", self.datastore)
        rows = _one(rows, "container_id", self.container)
        rows = _one(rows, "check_type", self.check_type)
        rows = _one(rows, "check_rule_id", self.check)
        if self.found_after:
            rows = rows.filter(created_at__gte=self.found_after)
        if self.found_before:
            rows = rows.filter(created_at__lt=self.found_before)
        return rows


# A list row never shows examples: deferring them keeps a page of 25 small.
ANOMALY_LIST_FIELDS = (
    "id", "status", "datastore_id", "container_id", "check_rule_id", "check_type",
    "field_name", "failed_count", "description", "times_seen", "created_at", "last_seen_at",
    "run_id", "last_run_id", "resolved_at", "container__id", "container__name",
    "datastore__id", "datastore__name",
)


def anomaly_page(
    user: User,
    filters: AnomalyFilters,
    *,
    before: int | None,
    limit: int = PAGE_SIZE,
    stores: list[int] | None = None,
) -> Page:
    rows = _visible(
        Anomaly.objects.select_related("container", "datastore").only(*ANOMALY_LIST_FIELDS),
        user,
        stores,
        filters.datastore,
    )
    page = keyset_page(filters.apply(rows), before=before, limit=limit, dated=filters.dated)
    attach_anomaly_access(user, page.items)
    return page


def attach_anomaly_access(user: User, anomalies: list[Anomaly]) -> None:
    levels = datastore_levels(user, {a.datastore_id for a in anomalies}) if anomalies else {}
    for anomaly in anomalies:
        _anomaly_access(anomaly, levels.get(anomaly.datastore_id))


def _anomaly_access(anomaly: Anomaly, level: Level | None) -> None:
    anomaly.level = level
    anomaly.actions = anomaly_actions(anomaly.status, level)
    anomaly.shows_values = can_see_source_values(level)


def visible_anomaly(user: User, anomaly_id: int, *, examples: bool = True) -> Anomaly:
    rows = Anomaly.objects.select_related("container", "datastore", "check_rule")
    if not examples:
        rows = rows.defer("examples")
    anomaly = rows.filter(pk=anomaly_id).first()
    level = datastore_level(user, anomaly.datastore_id) if anomaly else None
    if anomaly is None or level is None:
        raise Http404("Anomaly not found.")
    _anomaly_access(anomaly, level)
    return anomaly


def anomaly_events(anomaly: Anomaly) -> list[AnomalyEvent]:
    return list(anomaly.events.order_by("id"))


def runs_present(run_ids) -> set[int]:
    """Which of these Runs still exist (anomalies keep the id of a deleted Run)."""
    from runs.models import Run

    ids = {i for i in run_ids if i}
    return set(Run.objects.filter(pk__in=ids).values_list("pk", flat=True)) if ids else set()


def example_columns(examples: list) -> list[str]:
    """Column names of example records, in first-seen order, for a table."""
    columns: dict[str, None] = {}
    for row in examples or []:
        if isinstance(row, dict):
            columns.update(dict.fromkeys(row))
    return list(columns)


# -- datastore and container pages ---------------------------------------------------------------
def visible_datastore(user: User, datastore_id: int) -> tuple[Datastore, Level]:
    datastore = Datastore.objects.filter(pk=datastore_id).first()
    level = datastore_level(user, datastore_id) if datastore else None
    if datastore is None or level is None:
        raise Http404("Datastore not found.")
    return datastore, level


def datastore_overview(datastore: Datastore) -> list[Container]:
    """Containers with row count, last Profile and Scan, open anomalies, checks by status.

    Five grouped queries, whatever the number of containers.
    """
    containers = list(
        Container.objects.filter(datastore=datastore)
        .annotate(
            rows=Max("fields__profile__record_count"),
            profiled_at=Max("fields__profile__profiled_at"),
        )
        .order_by("name")
    )
    open_counts = dict(
        Anomaly.objects.filter(datastore=datastore, status__in=OPEN_ANOMALY_STATUSES)
        .values("container_id").annotate(n=Count("id")).values_list("container_id", "n")
    )  # fmt: skip
    check_counts: dict[int, dict[str, int]] = defaultdict(dict)
    for row in (
        Check.objects.filter(datastore=datastore)
        .values("container_id", "status").annotate(n=Count("id")).order_by()
    ):  # fmt: skip
        check_counts[row["container_id"]][row["status"]] = row["n"]
    last = last_runs([c.pk for c in containers])
    for container in containers:
        container.open_anomalies = open_counts.get(container.pk, 0)
        container.check_counts = check_counts.get(container.pk, {})
        container.last_profile = last.get((container.pk, Operation.PROFILE))
        container.last_scan = last.get((container.pk, Operation.SCAN))
    return containers


def last_runs(container_ids: list[int]) -> dict[tuple[int, str], RunContainer]:
    """The newest finished Profile and Scan unit of each container (two queries)."""
    if not container_ids:
        return {}
    newest = (
        RunContainer.objects.filter(
            container_id__in=container_ids,
            run__operation__in=(Operation.PROFILE, Operation.SCAN),
            status=RunStatus.SUCCESS,
        )
        .values("container_id", "run__operation")
        .annotate(last=Max("id"))
        .order_by()
    )
    ids = [row["last"] for row in newest]
    units = RunContainer.objects.filter(pk__in=ids).select_related("run")
    return {(unit.container_id, unit.run.operation): unit for unit in units}


def visible_container(user: User, datastore_id: int, container_id: int) -> tuple[Container, Level]:
    container = (
        Container.objects.select_related("datastore")
        .filter(pk=container_id, datastore_id=datastore_id)
        .first()
    )
    level = datastore_level(user, datastore_id) if container else None
    if container is None or level is None:
        raise Http404("Container not found.")
    return container, level


def container_fields(container: Container) -> list:
    """Fields with their latest profile (``field.stats``: None when never profiled)."""
    fields = list(container.fields.order_by("position"))
    profiles = {
        p.field_id: p for p in FieldProfile.objects.filter(field__container=container)
    }
    for field in fields:
        profile = profiles.get(field.pk)
        field.stats = profile.stats if profile else None
        field.profiled_at = profile.profiled_at if profile else None
    return fields


def container_runs(container: Container, *, limit: int = 10) -> list[RunContainer]:
    return list(
        RunContainer.objects.filter(container=container)
        .select_related("run")
        .order_by("-id")[:limit]
    )


def failed_checks_by_unit(run_id: int) -> dict[str, list[CheckEvaluation]]:
    """The Run's failed checks with their anomaly, by container name (Results tab links)."""
    rows = (
        CheckEvaluation.objects.filter(run_id=run_id)
        .filter(Q(failed_count__gt=0) | Q(failed_count=None))
        .select_related("check_rule__container")
        .order_by("id")
    )
    found: dict[str, list[CheckEvaluation]] = defaultdict(list)
    for row in rows:
        found[row.check_rule.container.name].append(row)
    return dict(found)
