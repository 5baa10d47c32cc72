"""REST API for the catalogue: datastores and their containers (with fields and active checks).

Datastore URLs carry credentials: passwords are write-only (accepted, never returned). Editors
and admins see the URL without its password (``connection``); Reporters and Viewers only the
name and the kind (``dialect``).
"""

from datetime import datetime
from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from accounts.models import Level
from accounts.permissions import (
    can_see_connection,
    datastore_level,
    datastore_levels,
    visible_datastore_ids,
)
from assay.api_common import ERRORS, BodyId, PageQuery, PathId, Strict
from assay.paging import api_page
from datastores.anomalies import check_spec
from datastores.models import (
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_RUN_LIMIT,
    MAX_CONNECTION_LIMIT,
    MAX_RUN_LIMIT,
    Check,
    CheckStatus,
    Container,
    Datastore,
)
from datastores.quality import describe
from datastores.services import (
    datastore_create,
    datastore_test_connection,
    datastore_update,
)
from runs.errors import NotFound
from runs.policy import can_see_source_values

router = Router(tags=["datastores"])


class DatastoreOut(Schema):
    id: int
    name: str
    dialect: str
    has_enrichment: bool
    enrichment_prefix: str
    created_at: datetime
    permission: str | None = Field(description="The caller's level on it: reporter ... editor.")
    connection: str | None = Field(
        description="The source URL without its password; only for Editors and admins."
    )
    enrichment_connection: str | None = Field(
        description="The enrichment URL without its password; only for Editors and admins."
    )
    run_limit: int = Field(description="Runs of this datastore running at once; more wait.")
    connection_limit: int = Field(description="Source connections one Run may hold at once.")


class DatastoreList(Schema):
    items: list[DatastoreOut]
    next_cursor: str | None


class DatastoreIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    source_url: str = Field(min_length=1, max_length=2000, description="SQLAlchemy URL")
    password: str | None = Field(
        None, max_length=1000, description="Write-only; or give it in the URL."
    )
    enrichment_url: str = Field("", max_length=2000)
    enrichment_password: str | None = Field(None, max_length=1000, description="Write-only.")
    enrichment_prefix: str = Field("assay", max_length=40)
    teams: list[BodyId] = Field(default_factory=list, max_length=100, description="Team ids")
    run_limit: int = Field(DEFAULT_RUN_LIMIT, ge=1, le=MAX_RUN_LIMIT)
    connection_limit: int = Field(DEFAULT_CONNECTION_LIMIT, ge=1, le=MAX_CONNECTION_LIMIT)


class DatastoreUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=100)
    source_url: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="Without a password, the stored one is kept while host, port and user "
        "stay the same.",
    )
    password: str | None = Field(
        None, max_length=1000, description='Write-only. Left out: kept; "": removed.'
    )
    enrichment_url: str | None = Field(None, max_length=2000, description='"": unlink.')
    enrichment_password: str | None = Field(None, max_length=1000, description="Write-only.")
    enrichment_prefix: str | None = Field(None, max_length=40)
    run_limit: int | None = Field(None, ge=1, le=MAX_RUN_LIMIT)
    connection_limit: int | None = Field(None, ge=1, le=MAX_CONNECTION_LIMIT)


class ConnectionTest(Schema):
    detail: str


class FieldOut(Schema):
    name: str
    type: str
    nullable: bool
    position: int


class CheckOut(Schema):
    id: int
    type: str
    field: str | None
    params: dict[str, Any] | None = Field(description="null for reporters")
    description: str | None = Field(description="null for reporters")


class ContainerOut(Schema):
    id: int
    name: str
    kind: str
    fields: list[FieldOut]
    checks: list[CheckOut] = Field(description="Active checks only.")


class ContainerList(Schema):
    items: list[ContainerOut]
    next_cursor: str | None


class ContainerFilters(PageQuery):
    name: str | None = Field(None, max_length=255, description="Only the container so named.")


def datastore_json(user, datastore: Datastore, level: Level | None) -> dict[str, Any]:
    shown = can_see_connection(user, level)
    return {
        "id": datastore.pk,
        "name": datastore.name,
        "dialect": datastore.dialect,
        "has_enrichment": bool(datastore.enrichment_url),
        "enrichment_prefix": datastore.enrichment_prefix,
        "created_at": datastore.created_at,
        "permission": level.name.lower() if level is not None else None,
        "connection": datastore.display_url if shown else None,
        "enrichment_connection": datastore.display_enrichment_url or None if shown else None,
        "run_limit": datastore.run_limit,
        "connection_limit": datastore.connection_limit,
    }


@router.get("/datastores", response={200: DatastoreList, **ERRORS},
            summary="List datastores, newest first, a page at a time")
def list_datastores(request: HttpRequest, filters: Query[PageQuery]):
    user = request.auth
    datastores = Datastore.objects.all()
    visible = visible_datastore_ids(user)
    if visible is not None:
        datastores = datastores.filter(pk__in=visible)
    datastores, next_cursor = api_page(
        datastores, kind="datastore", cursor=filters.cursor, limit=filters.limit
    )
    levels = datastore_levels(user, [d.pk for d in datastores])
    return {
        "items": [datastore_json(user, d, levels.get(d.pk)) for d in datastores],
        "next_cursor": next_cursor,
    }


@router.post("/datastores", response={201: DatastoreOut, **ERRORS})
def create_datastore(request: HttpRequest, body: DatastoreIn):
    user = request.auth
    datastore = datastore_create(
        user=user,
        name=body.name,
        source_url=body.source_url,
        enrichment_url=body.enrichment_url,
        enrichment_prefix=body.enrichment_prefix,
        team_ids=body.teams,
        password=body.password,
        enrichment_password=body.enrichment_password,
        run_limit=body.run_limit,
        connection_limit=body.connection_limit,
    )
    return Status(201, datastore_json(user, datastore, datastore_level(user, datastore.pk)))


def _visible(user, datastore_id: int) -> tuple[Datastore, Level]:
    datastore = Datastore.objects.filter(pk=datastore_id).first()
    level = datastore_level(user, datastore_id) if datastore is not None else None
    if datastore is None or level is None:
        raise NotFound("Datastore not found.")
    return datastore, level


@router.get("/datastores/{datastore_id}", response={200: DatastoreOut, **ERRORS})
def get_datastore(request: HttpRequest, datastore_id: PathId):
    datastore, level = _visible(request.auth, datastore_id)
    return datastore_json(request.auth, datastore, level)


@router.patch("/datastores/{datastore_id}", response={200: DatastoreOut, **ERRORS})
def update_datastore(request: HttpRequest, datastore_id: PathId, body: DatastoreUpdate):
    user = request.auth
    datastore, _ = _visible(user, datastore_id)
    datastore = datastore_update(user=user, datastore=datastore, **body.model_dump(
        exclude_unset=True
    ))
    return datastore_json(user, datastore, datastore_level(user, datastore.pk))


@router.post(
    "/datastores/{datastore_id}/test-connection",
    response={200: ConnectionTest, **ERRORS},
    summary="Connect to the datastore now",
)
def test_datastore_connection(request: HttpRequest, datastore_id: PathId):
    datastore, _ = _visible(request.auth, datastore_id)
    return {"detail": datastore_test_connection(user=request.auth, datastore=datastore)}


@router.get("/datastores/{datastore_id}/containers", response={200: ContainerList, **ERRORS})
def list_containers(
    request: HttpRequest,
    datastore_id: PathId,
    filters: Query[ContainerFilters],
):
    level = datastore_level(request.auth, datastore_id)
    if level is None:
        raise NotFound("Datastore not found.")
    # Parameters of inferred checks are profile values (top values, min/max).
    values = can_see_source_values(level)
    containers = Container.objects.filter(datastore_id=datastore_id).prefetch_related(
        "fields",
        Prefetch(
            "checks",
            queryset=Check.objects.filter(status=CheckStatus.ACTIVE).order_by("pk"),
            to_attr="active_checks",
        ),
    )
    if filters.name is not None:
        containers = containers.filter(name=filters.name)
    containers, next_cursor = api_page(
        containers, kind="container", cursor=filters.cursor, limit=filters.limit
    )
    return {
        "next_cursor": next_cursor,
        "items": [
            {
                "id": container.pk,
                "name": container.name,
                "kind": container.kind,
                "fields": [
                    {"name": f.name, "type": f.type, "nullable": f.nullable, "position": f.position}
                    for f in container.fields.all()
                ],
                "checks": [
                    {
                        "id": check.pk,
                        "type": check.type,
                        "field": check.field_name or None,
                        "params": check.params if values else None,
                        "description": (check.description or describe(check_spec(check)))
                        if values
                        else None,
                    }
                    for check in container.active_checks
                ],
            }
            for container in containers
        ]
    }
