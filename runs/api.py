"""REST API for Runs, their logs, External Scans and schedules (DESIGN §6).

Thin: every read checks visibility (an invisible Run is a 404, exactly like an unknown one),
every write goes through a service that asks ``runs.policy``.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import StrictBool, StrictInt, model_validator

from accounts.models import Level, User
from accounts.permissions import datastore_level, datastore_levels, visible_datastore_ids
from assay.api_common import ERRORS, MAX_ID, BodyId, Id, PageQuery, PathId, Strict, utc_filter
from assay.paging import api_page, decode_cursor, encode_cursor
from datastores.models import Datastore
from runs import fairness, services
from runs.errors import InvalidInput, NotFound
from runs.external_scan import (
    CheckOutcome,
    external_scan_finish,
    external_scan_open,
    external_scan_results,
)
from runs.logs import log_download_response
from runs.models import (
    FiringOutcome,
    Operation,
    Run,
    RunLogEntry,
    RunStatus,
    Schedule,
    ScheduleFiring,
    Via,
)
from runs.policy import Action, available_actions
from runs.schedules import schedule_create, schedule_delete
from runs.selectors import RunFilters, run_page

router = Router(tags=["runs"])



# -- schemas -----------------------------------------------------------------------------------
class DatastoreRef(Schema):
    id: int
    name: str


class TriggeredBy(Schema):
    kind: Literal["user", "schedule", "system"]
    name: str
    via: Literal["web", "api", "schedule"]


class AbortedBy(Schema):
    kind: Literal["user", "system"]
    name: str


class Progress(Schema):
    done: int
    total: int | None
    unit: str
    failed: int = Field(description="units among done that failed")
    remaining: int | None = Field(description="units a Resume would do; null: never planned")


class RunOut(Schema):
    id: int
    operation: Operation
    status: RunStatus
    datastore: DatastoreRef
    triggered_by: TriggeredBy
    aborted_by: AbortedBy | None
    abort_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    progress: Progress
    metrics: dict[str, Any]
    has_warnings: bool
    config: dict[str, Any]
    resumed_from: int | None
    rerun_of: int | None
    error: str | None
    wait_reason: str | None = Field(
        description='Queued Runs: why and where it waits ("2nd in line for Demo warehouse", '
        '"waiting for a worker: 14 Runs ahead").'
    )
    actions: list[Action] = Field(description="The actions the caller may take now.")


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None


class RunQuery(Schema):
    status: list[RunStatus] = Field(default_factory=list)
    operation: list[Operation] = Field(default_factory=list)
    datastore: list[Id] = Field(default_factory=list)
    created_after: datetime | None = None
    created_before: datetime | None = None
    cursor: str | None = Field(None, max_length=100)
    limit: int = Field(50, ge=1, le=100)


class RunLaunch(Strict):
    operation: Operation
    datastore: BodyId
    config: dict[str, Any] | None = None
    destination_datastore: BodyId | None = Field(None, description="Promote only.")


class LogLine(Schema):
    id: int
    time: datetime
    level: str
    container: str
    message: str


class LogPage(Schema):
    items: list[LogLine]
    next_cursor: int | None = Field(
        description="Pass as `after` to read on; null once the Run is terminal and read to "
        "the end."
    )
    frozen: bool = Field(description="The Run is terminal: its log will never grow again.")


class ExternalScanOpen(Strict):
    datastore: BodyId
    config: dict[str, Any] | None = Field(
        None, description='{"containers": [names] (optional), "source": "free text"}'
    )


NonNegative = Annotated[StrictInt, Field(ge=0, le=MAX_ID)]


class CheckResultIn(Strict):
    check: BodyId = Field(description="The check's id.")
    failed_count: NonNegative | None = None
    error: str | None = Field(None, max_length=1000, description="Why the check could not run.")
    examples: list[dict[str, Any]] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _count_or_error(self):
        if (self.failed_count is None) == (self.error is None):
            raise ValueError("give either failed_count or error")
        return self


class ContainerResultsIn(Strict):
    container: str = Field(min_length=1, max_length=255)
    records_scanned: NonNegative
    results: list[CheckResultIn] = Field(default_factory=list, max_length=1000)


class ScheduleIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    datastore: BodyId
    operation: Operation
    cron: str = Field(min_length=1, max_length=100, description="5 fields, UTC")
    config: dict[str, Any] | None = None
    destination_datastore: BodyId | None = None
    enabled: StrictBool = True


class ScheduleOut(Schema):
    id: int
    name: str
    datastore: DatastoreRef
    destination_datastore: DatastoreRef | None = Field(
        description="Promote only; null too when you cannot see it."
    )
    operation: Operation
    cron: str
    config: dict[str, Any]
    enabled: bool
    disabled_reason: str | None = Field(description="Why the schedule turned itself off.")
    owner: str | None = Field(description="Every firing launches as this user.")
    created_at: datetime
    last_fired_at: datetime | None
    next_fire_at: datetime | None


class ScheduleList(Schema):
    items: list[ScheduleOut]
    next_cursor: str | None


class FiringOut(Schema):
    id: int
    due_at: datetime
    fired_at: datetime
    outcome: FiringOutcome
    reason: str | None
    run: int | None


class FiringList(Schema):
    items: list[FiringOut]


# -- serialisation -----------------------------------------------------------------------------
def run_json(run: Run, level: Level | None) -> dict[str, Any]:
    """The Run as the API shows it; ``run`` must come from ``Run.objects.for_list()``."""
    return {
        "id": run.pk,
        "operation": run.operation,
        "status": run.status,
        "datastore": {"id": run.datastore_id, "name": run.datastore.name},
        "triggered_by": {
            "kind": run.triggered_by_kind,
            "name": run.triggered_by_name,
            "via": run.triggered_via,
        },
        "aborted_by": {"kind": run.aborted_by_kind, "name": run.aborted_by_name}
        if run.aborted_by_kind
        else None,
        "abort_requested": run.abort_requested_at is not None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": run.duration_s,
        "progress": {
            "done": run.progress_done,
            "total": run.progress_total,
            "unit": run.progress_unit,
            "failed": run.progress_failed,
            "remaining": run.units_remaining,
        },
        "metrics": run.metrics,
        "has_warnings": run.has_warnings,
        "config": run.config,
        "resumed_from": run.resumed_from_id,
        "rerun_of": run.rerun_of_id,
        "error": run.error or None,
        "wait_reason": _wait_reason(run),
        "actions": available_actions(run, level),
    }


def _wait_reason(run: Run) -> str | None:
    if not hasattr(run, "wait_reason"):  # a single Run; lists attach theirs in one query
        fairness.attach_wait_reasons([run])
    return run.wait_reason or None


def _user(request: HttpRequest) -> User:
    return request.auth  # set by accounts.api_auth.BearerToken


def _run_for(user: User, run_id: int) -> tuple[Run, Level]:
    """The Run and the caller's level on it; unknown and invisible are the same 404."""
    run = Run.objects.for_list().filter(pk=run_id).first()
    level = datastore_level(user, run.datastore_id) if run is not None else None
    if run is None or level is None:
        raise NotFound("Run not found.")
    return run, level


def _shown(user: User, run: Run) -> dict[str, Any]:
    fresh = Run.objects.for_list().get(pk=run.pk)
    return run_json(fresh, datastore_level(user, fresh.datastore_id))


def datastore_or_404(datastore_id: int | None, what: str = "Datastore") -> Datastore | None:
    """Unknown ids are 404 like invisible ones (services raise the same NotFound for those)."""
    if datastore_id is None:
        return None
    datastore = Datastore.objects.filter(pk=datastore_id).first()
    if datastore is None:
        raise NotFound(f"{what} not found.")
    return datastore


def destination_or_404(operation: str, datastore_id: int | None) -> Datastore | None:
    services.refuse_destination_unless_promote(operation, datastore_id is not None)
    return datastore_or_404(datastore_id, "Destination datastore")


# -- runs --------------------------------------------------------------------------------------
@router.get("/runs", response={200: RunPage, **ERRORS}, summary="List Runs, newest first")
def list_runs(request: HttpRequest, filters: Query[RunQuery]):
    user = _user(request)
    page = run_page(
        user,
        RunFilters(
            datastores=tuple(filters.datastore),
            operations=tuple(filters.operation),
            statuses=tuple(filters.status),
            created_after=utc_filter(filters.created_after, "created_after"),
            created_before=utc_filter(filters.created_before, "created_before"),
        ),
        before=decode_cursor("run", filters.cursor) if filters.cursor else None,
        limit=filters.limit,
    )
    levels = datastore_levels(user, {run.datastore_id for run in page.items})
    fairness.attach_wait_reasons(page.items)
    return {
        "items": [run_json(run, levels.get(run.datastore_id)) for run in page.items],
        "next_cursor": encode_cursor("run", page.next_before) if page.next_before else None,
    }


@router.post("/runs", response={201: RunOut, **ERRORS}, summary="Launch a Run")
def launch_run(request: HttpRequest, body: RunLaunch):
    if body.operation == Operation.EXTERNAL_SCAN:
        raise InvalidInput(
            "Open External Scans with POST /external-scans.",
            errors={"operation": ["Use POST /external-scans."]},
        )
    user = _user(request)
    run = services.run_launch(
        user=user,
        datastore=datastore_or_404(body.datastore),
        operation=body.operation,
        config=body.config,
        via=Via.API,
        destination=destination_or_404(body.operation, body.destination_datastore),
    )
    return Status(201, _shown(user, run))


@router.get("/runs/{run_id}", response={200: RunOut, **ERRORS}, summary="One Run")
def get_run(request: HttpRequest, run_id: PathId):
    run, level = _run_for(_user(request), run_id)
    return run_json(run, level)


@router.get("/runs/{run_id}/logs", response={200: LogPage, **ERRORS}, summary="Log lines")
def run_logs(
    request: HttpRequest,
    run_id: PathId,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
):
    run, _ = _run_for(_user(request), run_id)
    # Status is read before the lines: a terminal Run gets no more lines (a DB trigger), so a
    # short page read after seeing "terminal" really is the end of the log.
    frozen = run.is_terminal
    lines = list(
        RunLogEntry.objects.filter(run_id=run.pk, pk__gt=after).order_by("pk")[:limit]
    )
    finished = frozen and len(lines) < limit
    return {
        "items": [
            {
                "id": line.pk,
                "time": line.created_at,
                "level": line.level,
                "container": line.container,
                "message": line.message,
            }
            for line in lines
        ],
        "next_cursor": None if finished else (lines[-1].pk if lines else after),
        "frozen": frozen,
    }


@router.get(
    "/runs/{run_id}/log.txt",
    response={200: None, **ERRORS},
    summary="The whole log as a text file, streamed",
)
def run_log_text(request: HttpRequest, run_id: PathId):
    run, _ = _run_for(_user(request), run_id)
    return log_download_response(run.pk)


@router.post("/runs/{run_id}/abort", response={202: RunOut, **ERRORS}, summary="Abort")
def abort_run(request: HttpRequest, run_id: PathId):
    user = _user(request)
    run, _ = _run_for(user, run_id)
    return Status(202, _shown(user, services.run_abort(run=run, user=user)))


@router.post("/runs/{run_id}/resume", response={201: RunOut, **ERRORS}, summary="Resume")
def resume_run(request: HttpRequest, run_id: PathId):
    user = _user(request)
    run, _ = _run_for(user, run_id)
    return Status(201, _shown(user, services.run_resume(run=run, user=user, via=Via.API)))


@router.post("/runs/{run_id}/rerun", response={201: RunOut, **ERRORS}, summary="Rerun")
def rerun_run(request: HttpRequest, run_id: PathId):
    user = _user(request)
    run, _ = _run_for(user, run_id)
    return Status(201, _shown(user, services.run_rerun(run=run, user=user, via=Via.API)))


@router.delete("/runs/{run_id}", response={204: None, **ERRORS}, summary="Delete")
def delete_run(request: HttpRequest, run_id: PathId):
    user = _user(request)
    run, _ = _run_for(user, run_id)
    services.run_delete(run=run, user=user)
    return Status(204, None)


# -- external scans ----------------------------------------------------------------------------
@router.post(
    "/external-scans",
    response={201: RunOut, **ERRORS},
    tags=["external scans"],
    summary="Open an External Scan Run",
)
def open_external_scan(request: HttpRequest, body: ExternalScanOpen):
    user = _user(request)
    run = external_scan_open(
        user=user, datastore=datastore_or_404(body.datastore), config=body.config
    )
    return Status(201, _shown(user, run))


@router.post(
    "/external-scans/{run_id}/results",
    response={200: RunOut, **ERRORS},
    tags=["external scans"],
    summary="Register one container's results",
)
def external_scan_add_results(request: HttpRequest, run_id: PathId, body: ContainerResultsIn):
    user = _user(request)
    run, _ = _run_for(user, run_id)
    run = external_scan_results(
        run=run,
        user=user,
        container=body.container,
        records_scanned=body.records_scanned,
        results=[
            CheckOutcome(
                check_id=result.check,
                failed_count=result.failed_count,
                error=result.error,
                examples=result.examples,
            )
            for result in body.results
        ],
    )
    return _shown(user, run)


@router.post(
    "/external-scans/{run_id}/finish",
    response={200: RunOut, **ERRORS},
    tags=["external scans"],
    summary="Close an External Scan Run",
)
def finish_external_scan(request: HttpRequest, run_id: PathId):
    user = _user(request)
    run, _ = _run_for(user, run_id)
    return _shown(user, external_scan_finish(run=run, user=user))


# -- schedules ---------------------------------------------------------------------------------
def schedule_json(schedule: Schedule, visible: set[int] | None) -> dict[str, Any]:
    """``visible``: ids of the datastores the caller sees (None: all). Promote's destination
    is shown only to those who see it."""
    destination = schedule.destination_datastore
    if destination is not None and visible is not None and destination.pk not in visible:
        destination = None
    return {
        "id": schedule.pk,
        "name": schedule.name,
        "datastore": {"id": schedule.datastore_id, "name": schedule.datastore.name},
        "destination_datastore": {"id": destination.pk, "name": destination.name}
        if destination
        else None,
        "operation": schedule.operation,
        "cron": schedule.cron,
        "config": schedule.config,
        "enabled": schedule.enabled,
        "disabled_reason": schedule.disabled_reason or None,
        "owner": schedule.created_by.username if schedule.created_by else None,
        "created_at": schedule.created_at,
        "last_fired_at": schedule.last_fired_at,
        "next_fire_at": schedule.next_fire_at,
    }


class ScheduleFilters(PageQuery):
    datastore: list[Id] = Field(default_factory=list)


@router.get("/schedules", response={200: ScheduleList, **ERRORS}, tags=["schedules"])
def list_schedules(request: HttpRequest, filters: Query[ScheduleFilters]):
    schedules = Schedule.objects.select_related(
        "datastore", "destination_datastore", "created_by"
    )
    visible = visible_datastore_ids(_user(request))
    if visible is not None:
        schedules = schedules.filter(datastore_id__in=visible)
    if filters.datastore:
        schedules = schedules.filter(datastore_id__in=filters.datastore)
    schedules, next_cursor = api_page(
        schedules, kind="schedule", cursor=filters.cursor, limit=filters.limit
    )
    levels = datastore_levels(
        _user(request), {s.destination_datastore_id for s in schedules} - {None}
    )
    seen = None if visible is None else set(levels)
    return {"items": [schedule_json(s, seen) for s in schedules], "next_cursor": next_cursor}


@router.post("/schedules", response={201: ScheduleOut, **ERRORS}, tags=["schedules"])
def create_schedule(request: HttpRequest, body: ScheduleIn):
    schedule = schedule_create(
        user=_user(request),
        name=body.name,
        datastore=datastore_or_404(body.datastore),
        operation=body.operation,
        cron=body.cron,
        config=body.config,
        destination=destination_or_404(body.operation, body.destination_datastore),
        enabled=body.enabled,
    )
    return Status(201, schedule_json(schedule, None))  # the creator may edit both


def _schedule_for(user: User, schedule_id: int) -> Schedule:
    schedule = Schedule.objects.select_related("datastore").filter(pk=schedule_id).first()
    if schedule is None or datastore_level(user, schedule.datastore_id) is None:
        raise NotFound("Schedule not found.")
    return schedule


@router.delete(
    "/schedules/{schedule_id}", response={204: None, **ERRORS}, tags=["schedules"]
)
def delete_schedule(request: HttpRequest, schedule_id: PathId):
    user = _user(request)
    schedule_delete(schedule=_schedule_for(user, schedule_id), user=user)
    return Status(204, None)


@router.get(
    "/schedules/{schedule_id}/firings",
    response={200: FiringList, **ERRORS},
    tags=["schedules"],
    summary="What the latest firings did (newest first)",
)
def schedule_firings(
    request: HttpRequest,
    schedule_id: PathId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
):
    schedule = _schedule_for(_user(request), schedule_id)
    firings = ScheduleFiring.objects.filter(schedule=schedule).order_by("-pk")[:limit]
    return {
        "items": [
            {
                "id": firing.pk,
                "due_at": firing.due_at,
                "fired_at": firing.fired_at,
                "outcome": firing.outcome,
                "reason": firing.reason or None,
                "run": firing.run_id,
            }
            for firing in firings
        ]
    }

