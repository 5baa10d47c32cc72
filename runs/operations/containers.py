"""Helpers for operations whose units are catalogued containers (Profile, Scan...)."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import Field as ConfigField

from datastores.models import Container, Datastore
from runs.errors import InvalidConfig
from runs.operations.base import Unit, UnitFailed


def containers_field():
    """``containers``: names of catalogued containers, or null for all of them."""
    return ConfigField(
        default=None, min_length=1, max_length=10_000,
        description="The containers to work on; none selected means every catalogued container.",
    )


def validate_container_names(names: list[str] | None, *, datastore: Datastore) -> None:
    """InvalidConfig (field ``containers``) for names the datastore's catalogue does not hold."""
    if names is None:
        return
    if len(set(names)) != len(names):
        raise InvalidConfig(
            "containers lists a container twice.",
            errors={"containers": ["Duplicate container names."]},
        )
    known = set(datastore.containers.filter(name__in=names).values_list("name", flat=True))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidConfig(
            f"Unknown containers on {datastore.name}: {', '.join(unknown)}. "
            "Run a Sync to catalogue new tables.",
            errors={"containers": [f"Unknown container: {name}" for name in unknown]},
        )


def plan_containers(names: list[str] | None, *, datastore: Datastore) -> list[Unit]:
    """One unit per requested container, in the order asked (catalogue order for all)."""
    catalogue = {c.name: c.pk for c in Container.objects.filter(datastore=datastore)}
    if names is None:
        return [Unit(name, container_id=pk) for name, pk in sorted(catalogue.items())]
    # A container removed since the launch stays a unit: it fails visibly instead of vanishing.
    return [Unit(name, container_id=catalogue.get(name)) for name in names]


def load_container(unit: Unit, *, datastore: Datastore) -> Container:
    container = (
        Container.objects.filter(datastore=datastore, pk=unit.container_id)
        .prefetch_related("fields")
        .first()
        if unit.container_id is not None
        else None
    )
    if container is None:
        raise UnitFailed(f"{unit.name} is no longer in the catalogue of {datastore.name}.")
    return container


def clean_connection(conn: sa.Connection) -> sa.Connection:
    """End the previous unit's source transaction before reading.

    PostgreSQL refuses every statement of a transaction after a failed one, so a container
    whose query failed must not fail the next; ending it also keeps no snapshot open between
    containers.
    """
    if conn.in_transaction():
        conn.rollback()
    return conn
