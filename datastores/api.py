"""REST API for the catalogue: datastores and their containers (with fields and active checks).

Datastore URLs carry credentials: they are accepted on creation and never returned.
"""

from datetime import datetime
from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from accounts.models import Level
from accounts.permissions import datastore_level, datastore_levels, visible_datastore_ids
from assay.api_common import ERRORS, BodyId, PathId, Strict
from datastores.anomalies import check_spec
from datastores.models import Check, CheckStatus, Container, Datastore
from datastores.quality import describe
from datastores.services import datastore_create
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


class DatastoreList(Schema):
    items: list[DatastoreOut]


class DatastoreIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    source_url: str = Field(min_length=1, max_length=2000, description="SQLAlchemy URL")
    enrichment_url: str = Field("", max_length=2000)
    enrichment_prefix: str = Field("assay", max_length=40)
    teams: list[BodyId] = Field(default_factory=list, max_length=100, description="Team ids")


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


class ContainerFilters(Schema):
    name: str | None = Field(None, max_length=255, description="Only the container so named.")


def datastore_json(datastore: Datastore, level: Level | None) -> dict[str, Any]:
    return {
        "id": datastore.pk,
        "name": datastore.name,
        "dialect": datastore.dialect,
        "has_enrichment": bool(datastore.enrichment_url),
        "enrichment_prefix": datastore.enrichment_prefix,
        "created_at": datastore.created_at,
        "permission": level.name.lower() if level is not None else None,
    }


@router.get("/datastores", response={200: DatastoreList, **ERRORS})
def list_datastores(request: HttpRequest):
    user = request.auth
    datastores = Datastore.objects.order_by("name")
    visible = visible_datastore_ids(user)
    if visible is not None:
        datastores = datastores.filter(pk__in=visible)
    datastores = list(datastores)
    levels = datastore_levels(user, [d.pk for d in datastores])
    return {"items": [datastore_json(d, levels.get(d.pk)) for d in datastores]}


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
    )
    return Status(201, datastore_json(datastore, datastore_level(user, datastore.pk)))


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
    return {
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
            for container in containers.order_by("name")
        ]
    }
