"""REST API for checks and anomalies: list, get, create, update, transition, bulk, apply.

Same shape as the Runs API: keyset pages with an opaque ``next_cursor``, ``{"detail",
"code"}`` errors, 404 for what the caller cannot see, 403 for what their level does not allow
(``runs.policy``). Reporters get counts and statuses: check parameters and descriptions,
anomaly descriptions, examples and check errors come back as ``null``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status
from pydantic import StrictBool

from accounts.models import User
from assay.api_common import ERRORS, BodyId, Id, PathId, Strict, utc_filter
from assay.paging import decode_cursor, encode_cursor
from datastores import selectors
from datastores.anomalies import anomalies_bulk_transition, anomaly_transition
from datastores.checks import (
    check_create,
    check_update,
    checks_apply,
    checks_bulk_transition,
)
from datastores.checks import check_transition as transition_check
from datastores.models import Anomaly, Check, CheckOrigin, CheckStatus, Container, Datastore
from datastores.quality import CHECK_TYPES
from runs.errors import NotFound
from runs.policy import AnomalyAction, CheckAction

router = Router(tags=["checks and anomalies"])

CheckType = Literal[CHECK_TYPES]  # type: ignore[valid-type]


# -- schemas -----------------------------------------------------------------------------------
class Ref(Schema):
    id: int
    name: str


class EvaluationOut(Schema):
    run: int
    evaluated_at: datetime
    passed: bool | None = Field(description="null when the check could not run")
    failed_count: int | None
    error: str | None = Field(description="Why it could not run (null for reporters).")
    anomaly: int | None


class CheckOut(Schema):
    id: int
    datastore: Ref
    container: Ref
    type: str
    field: str | None
    label: str = Field(description="Type and field; shown at every level.")
    params: dict[str, Any] | None = Field(description="null for reporters")
    description: str | None = Field(description="null for reporters")
    status: CheckStatus
    origin: CheckOrigin
    created_at: datetime
    updated_at: datetime
    recent: list[EvaluationOut] = Field(description="Latest evaluations, oldest first.")
    actions: list[str] = Field(description="Transitions the caller may apply now; 'edit' too.")


class CheckPage(Schema):
    items: list[CheckOut]
    next_cursor: str | None


class CheckQuery(Schema):
    datastore: Id | None = None
    container: Id | None = None
    field: str | None = Field(None, max_length=255)
    type: CheckType | None = None
    status: CheckStatus | None = None
    origin: CheckOrigin | None = None
    cursor: str | None = Field(None, max_length=100)
    limit: int = Field(50, ge=1, le=100)


class CheckIn(Strict):
    container: BodyId
    type: CheckType
    field: str | None = Field(None, max_length=255)
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = Field("", max_length=255)
    status: CheckStatus = CheckStatus.DRAFT


class CheckPatch(Strict):
    type: CheckType | None = None
    field: str | None = Field(None, max_length=255)
    params: dict[str, Any] | None = None
    description: str | None = Field(None, max_length=255)


class CheckBulk(Strict):
    action: CheckAction
    ids: list[BodyId] = Field(min_length=1, max_length=500)


class BulkOut(Schema):
    changed: list[int]
    skipped: dict[str, str] = Field(description="id -> why nothing happened")


class ApplyIn(Strict):
    checks: list[dict[str, Any]] = Field(max_length=10_000)
    dry_run: StrictBool = False


class ChangeOut(Schema):
    index: int
    kind: Literal["create", "update", "unchanged"]
    id: int | None
    container: str
    label: str
    changes: dict[str, list[Any]]


class ApplyOut(Schema):
    dry_run: bool
    changes: list[ChangeOut]


class EventOut(Schema):
    from_status: str | None
    to_status: str
    by: str
    run: int | None
    comment: str
    at: datetime


class RunLink(Schema):
    id: int
    exists: bool = Field(description="false once the Run was deleted")


class AnomalyOut(Schema):
    id: int
    status: str
    datastore: Ref
    container: Ref
    check: int | None
    check_type: str | None
    field: str | None
    label: str
    description: str | None = Field(description="null for reporters")
    failed_count: int
    times_seen: int
    found_by: RunLink | None
    last_seen_by: RunLink | None
    created_at: datetime
    last_seen_at: datetime | None
    resolved_at: datetime | None
    actions: list[str]


class AnomalyDetail(AnomalyOut):
    examples: list[dict[str, Any]] | None = Field(description="null for reporters")
    history: list[EventOut]


class AnomalyPage(Schema):
    items: list[AnomalyOut]
    next_cursor: str | None


class AnomalyQuery(Schema):
    status: Literal["active", "acknowledged", "resolved"] | None = None
    datastore: Id | None = None
    container: Id | None = None
    check_type: CheckType | None = None
    check: Id | None = None
    found_after: datetime | None = None
    found_before: datetime | None = None
    cursor: str | None = Field(None, max_length=100)
    limit: int = Field(50, ge=1, le=100)


class CommentIn(Strict):
    comment: str = Field("", max_length=1000)


class AnomalyBulk(Strict):
    action: AnomalyAction
    ids: list[BodyId] = Field(min_length=1, max_length=500)
    comment: str = Field("", max_length=1000)


# -- serialisation -----------------------------------------------------------------------------
def evaluation_json(evaluation, shows_values: bool) -> dict[str, Any]:
    return {
        "run": evaluation.run_id,
        "evaluated_at": evaluation.evaluated_at,
        "passed": None if evaluation.failed_count is None else evaluation.failed_count == 0,
        "failed_count": evaluation.failed_count,
        "error": (evaluation.error or None) if shows_values else None,
        "anomaly": evaluation.anomaly_id,
    }


def check_json(check: Check) -> dict[str, Any]:
    """``check`` carries the caller's access (``selectors.attach_check_access``)."""
    return {
        "id": check.pk,
        "datastore": {"id": check.datastore_id, "name": check.datastore.name},
        "container": {"id": check.container_id, "name": check.container.name},
        "type": check.type,
        "field": check.field_name or None,
        "label": check.label,
        "params": check.params if check.shows_values else None,
        "description": check.description if check.shows_values else None,
        "status": check.status,
        "origin": check.origin,
        "created_at": check.created_at,
        "updated_at": check.updated_at,
        "recent": [evaluation_json(e, check.shows_values) for e in getattr(check, "recent", [])],
        "actions": [a.value for a in check.actions] + (["edit"] if check.can_edit else []),
    }


def anomaly_json(anomaly: Anomaly, present: set[int], *, detail: bool = False) -> dict:
    def run(run_id):
        return {"id": run_id, "exists": run_id in present} if run_id else None

    body = {
        "id": anomaly.pk,
        "status": anomaly.status,
        "datastore": {"id": anomaly.datastore_id, "name": anomaly.datastore.name},
        "container": {"id": anomaly.container_id, "name": anomaly.container.name},
        "check": anomaly.check_rule_id,
        "check_type": anomaly.check_type or None,
        "field": anomaly.field_name or None,
        "label": anomaly.label,
        "description": anomaly.description if anomaly.shows_values else None,
        "failed_count": anomaly.failed_count,
        "times_seen": anomaly.times_seen,
        "found_by": run(anomaly.run_id),
        "last_seen_by": run(anomaly.last_run_id),
        "created_at": anomaly.created_at,
        "last_seen_at": anomaly.last_seen_at,
        "resolved_at": anomaly.resolved_at,
        "actions": [a.value for a in anomaly.actions],
    }
    if detail:
        body["examples"] = anomaly.examples if anomaly.shows_values else None
        body["history"] = [
            {
                "from_status": event.from_status or None,
                "to_status": event.to_status,
                "by": event.actor_name,
                "run": event.run_id,
                "comment": event.comment,
                "at": event.created_at,
            }
            for event in selectors.anomaly_events(anomaly)
        ]
    return body


def _user(request: HttpRequest) -> User:
    return request.auth


def _check_out(user: User, check_id: int, *, recent: int = 30) -> dict[str, Any]:
    check = selectors.visible_check(user, check_id)
    selectors.recent_evaluations([check], per_check=recent)
    return check_json(check)


def _bulk_out(result) -> dict[str, Any]:
    return {"changed": result.changed, "skipped": {str(k): v for k, v in result.skipped.items()}}


# -- checks ------------------------------------------------------------------------------------
@router.get("/checks", response={200: CheckPage, **ERRORS}, summary="List checks, newest first")
def list_checks(request: HttpRequest, filters: Query[CheckQuery]):
    user = _user(request)
    page = selectors.check_page(
        user,
        selectors.CheckFilters(
            datastore=filters.datastore,
            container=filters.container,
            field=filters.field or "",
            type=filters.type or "",
            status=filters.status or "",
            origin=filters.origin or "",
        ),
        before=decode_cursor("check", filters.cursor) if filters.cursor else None,
        limit=filters.limit,
    )
    selectors.recent_evaluations(page.items)
    return {
        "items": [check_json(check) for check in page.items],
        "next_cursor": encode_cursor("check", page.next_before) if page.next_before else None,
    }


@router.post("/checks", response={201: CheckOut, **ERRORS}, summary="Author a check")
def create_check(request: HttpRequest, body: CheckIn):
    user = _user(request)
    container = Container.objects.select_related("datastore").filter(pk=body.container).first()
    if container is None:
        raise NotFound("Container not found.")
    check = check_create(
        user=user, container=container, type=body.type, field_name=body.field,
        params=body.params, description=body.description, status=body.status,
    )
    return Status(201, _check_out(user, check.pk))


@router.post("/checks/bulk", response={200: BulkOut, **ERRORS},
             summary="Activate, archive or return many checks to draft")  # fmt: skip
def bulk_checks(request: HttpRequest, body: CheckBulk):
    return _bulk_out(checks_bulk_transition(user=_user(request), ids=body.ids, action=body.action))


@router.get("/checks/{check_id}", response={200: CheckOut, **ERRORS}, summary="One check")
def get_check(request: HttpRequest, check_id: PathId):
    return _check_out(_user(request), check_id)


@router.patch("/checks/{check_id}", response={200: CheckOut, **ERRORS},
              summary="Edit an authored check")  # fmt: skip
def update_check(request: HttpRequest, check_id: PathId, body: CheckPatch):
    user = _user(request)
    check = selectors.visible_check(user, check_id)
    given = body.model_fields_set
    check_update(
        user=user,
        check=check,
        type=body.type if "type" in given else None,
        field_name=body.field if "field" in given else check.field_name,
        params=body.params if "params" in given else check.params,
        description=body.description if "description" in given else check.description,
    )
    return _check_out(user, check_id)


@router.post("/checks/{check_id}/{action}", response={200: CheckOut, **ERRORS},
             summary="activate, archive or draft")  # fmt: skip
def transition_one_check(request: HttpRequest, check_id: PathId, action: CheckAction):
    user = _user(request)
    check = selectors.visible_check(user, check_id)
    transition_check(user=user, check=check, action=action)
    return _check_out(user, check_id)


@router.post("/datastores/{datastore_id}/checks/apply", response={200: ApplyOut, **ERRORS},
             summary="Make the datastore's checks match a file")  # fmt: skip
def apply_checks(request: HttpRequest, datastore_id: PathId, body: ApplyIn):
    datastore = Datastore.objects.filter(pk=datastore_id).first()
    if datastore is None:
        raise NotFound("Datastore not found.")
    changes = checks_apply(
        user=_user(request), datastore=datastore, entries=body.checks, dry_run=body.dry_run
    )
    return {
        "dry_run": body.dry_run,
        "changes": [
            {
                "index": c.index,
                "kind": c.kind,
                "id": c.check_id,
                "container": c.container,
                "label": c.label,
                "changes": c.changes,
            }
            for c in changes
        ],
    }


# -- anomalies ---------------------------------------------------------------------------------
@router.get("/anomalies", response={200: AnomalyPage, **ERRORS},
            summary="List anomalies, newest first")  # fmt: skip
def list_anomalies(request: HttpRequest, filters: Query[AnomalyQuery]):
    page = selectors.anomaly_page(
        _user(request),
        selectors.AnomalyFilters(
            status=filters.status or "",
            datastore=filters.datastore,
            container=filters.container,
            check_type=filters.check_type or "",
            check=filters.check,
            found_after=utc_filter(filters.found_after, "found_after"),
            found_before=utc_filter(filters.found_before, "found_before"),
        ),
        before=decode_cursor("anomaly", filters.cursor) if filters.cursor else None,
        limit=filters.limit,
    )
    present = selectors.runs_present(
        [a.run_id for a in page.items] + [a.last_run_id for a in page.items]
    )
    return {
        "items": [anomaly_json(a, present) for a in page.items],
        "next_cursor": encode_cursor("anomaly", page.next_before) if page.next_before else None,
    }


@router.post("/anomalies/bulk", response={200: BulkOut, **ERRORS},
             summary="Acknowledge, resolve or reopen many anomalies")  # fmt: skip
def bulk_anomalies(request: HttpRequest, body: AnomalyBulk):
    return _bulk_out(
        anomalies_bulk_transition(
            user=_user(request), ids=body.ids, action=body.action, comment=body.comment
        )
    )


def _anomaly_out(user: User, anomaly_id: int) -> dict[str, Any]:
    anomaly = selectors.visible_anomaly(user, anomaly_id)
    present = selectors.runs_present([anomaly.run_id, anomaly.last_run_id])
    return anomaly_json(anomaly, present, detail=True)


@router.get("/anomalies/{anomaly_id}", response={200: AnomalyDetail, **ERRORS},
            summary="One anomaly, with examples and history")  # fmt: skip
def get_anomaly(request: HttpRequest, anomaly_id: PathId):
    return _anomaly_out(_user(request), anomaly_id)


@router.post("/anomalies/{anomaly_id}/{action}", response={200: AnomalyDetail, **ERRORS},
             summary="acknowledge, resolve or reopen")  # fmt: skip
def transition_anomaly(
    request: HttpRequest, anomaly_id: PathId, action: AnomalyAction, body: CommentIn | None = None
):
    user = _user(request)
    anomaly = selectors.visible_anomaly(user, anomaly_id, examples=False)
    anomaly_transition(
        user=user, anomaly=anomaly, action=action, comment=body.comment if body else ""
    )
    return _anomaly_out(user, anomaly_id)
