"""Sync: reflect tables, views and their columns into the catalogue (SQLAlchemy inspector)."""

from typing import Literal

import sqlalchemy as sa
from django.utils import timezone
from pydantic import Field as ConfigField

from datastores.models import Container, Field
from datastores.quality.profiling import classify_type
from runs.operations.base import Operation, OperationConfig, Unit, UnitFailed, UnitResult


class SyncConfig(OperationConfig):
    prune: bool = ConfigField(
        default=False,
        description="Remove catalogued containers that no longer exist in the source.",
    )
    recreate: bool = ConfigField(
        default=False,
        description="Drop and re-create every synced container's fields (their profiles go).",
    )
    include: list[Literal["table", "view"]] = ConfigField(
        default_factory=lambda: ["table", "view"], min_length=1,
        description="Which kinds of source objects become containers.",
    )


class Sync(Operation):
    name = "sync"
    unit_label = "Containers"
    Config = SyncConfig

    def plan(self, ctx) -> list[Unit]:
        inspector = sa.inspect(ctx.source().conn)
        units: list[Unit] = []
        if "table" in ctx.config.include:
            units += [Unit(n, data={"kind": "table"}) for n in sorted(inspector.get_table_names())]
        if "view" in ctx.config.include:
            units += [Unit(n, data={"kind": "view"}) for n in sorted(inspector.get_view_names())]
        ctx.state["seen"] = set()
        return units

    def process(self, ctx, unit: Unit) -> UnitResult:
        try:
            columns = sa.inspect(ctx.source().conn).get_columns(unit.name)
        except sa.exc.NoSuchTableError:
            raise UnitFailed(f"{unit.name} disappeared from the source during the Sync") from None
        ctx.state["seen"].add(unit.name)
        metrics: dict[str, int] = {"fields": len(columns)}

        def save() -> None:
            metrics.update(
                store_container(ctx.datastore, unit.name, unit.data["kind"], columns,
                                recreate=ctx.config.recreate)
            )

        return UnitResult(metrics, save=save)

    def finish(self, ctx) -> None:
        if not ctx.config.prune:
            return
        stale = Container.objects.filter(
            datastore=ctx.datastore, kind__in=ctx.config.include
        ).exclude(name__in=ctx.state["seen"])
        names = sorted(stale.values_list("name", flat=True))
        if names:
            with ctx.fenced():
                stale.delete()
                ctx.add_metrics({"containers_removed": len(names)})
            ctx.log(f"Pruned {len(names)} containers no longer in the source: {', '.join(names)}")


def store_container(datastore, name: str, kind: str, columns: list[dict], *, recreate: bool):
    """Upsert one container and its fields from reflected columns; return change counts."""
    container, created = Container.objects.get_or_create(
        datastore=datastore, name=name, defaults={"kind": kind}
    )
    if recreate and not created:
        container.fields.all().delete()
    existing = {f.name: f for f in container.fields.all()}
    added = updated = 0
    for position, column in enumerate(columns):
        values = {
            "type": classify_type(column["type"]),
            "source_type": str(column["type"])[:100],
            "nullable": bool(column.get("nullable", True)),
            "position": position,
        }
        field = existing.get(column["name"])
        if field is None:
            Field.objects.create(container=container, name=column["name"], **values)
            added += 1
        elif any(getattr(field, key) != value for key, value in values.items()):
            Field.objects.filter(pk=field.pk).update(**values)
            updated += 1
    removed, _ = container.fields.exclude(name__in=[c["name"] for c in columns]).delete()
    kind_changed = container.kind != kind
    Container.objects.filter(pk=container.pk).update(kind=kind, synced_at=timezone.now())
    changed = kind_changed or bool(added or updated or removed)
    return {
        "containers_added": int(created),
        "containers_updated": int(changed and not created),
        "fields_added": added,
        "fields_updated": updated,
        "fields_removed": removed,
    }
