"""Export: write anomalies, checks and field profiles into the enrichment datastore.

One unit per asset; each asset becomes the table ``<prefix>_export_<asset>``, replaced in one
enrichment transaction (``datastores.enrichment``), so a reader sees the previous export or the
complete new one. The tables hold the selected containers only: exporting a subset replaces the
table with that subset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import batched
from typing import Any, Literal

import sqlalchemy as sa
from django.conf import settings
from django.utils import timezone
from pydantic import Field as ConfigField

from datastores.enrichment import enrichment_table_name, replace_table
from datastores.models import Anomaly, Check, FieldProfile
from runs.errors import InvalidConfig
from runs.operations.base import Operation, OperationConfig, Unit, UnitResult
from runs.operations.containers import (
    containers_field,
    plan_containers,
    validate_container_names,
)
from runs.operations.enrichment_targets import (
    DATA_ERRORS,
    enrichment_failure,
    open_enrichment,
    require_enrichment,
)

AssetName = Literal["anomalies", "checks", "field_profiles"]


def _json() -> sa.JSON:
    # SQL NULL for a missing value, not the JSON literal 'null'.
    return sa.JSON(none_as_null=True)


def _when() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _anomalies_table(name: str) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("id", sa.BigInteger),
        sa.Column("container", sa.String(255)),
        sa.Column("container_id", sa.BigInteger),
        sa.Column("check_id", sa.BigInteger),
        sa.Column("check_type", sa.String(32)),
        sa.Column("field_name", sa.String(255)),
        sa.Column("status", sa.String(16)),
        sa.Column("failed_count", sa.BigInteger),
        sa.Column("examples", _json()),
        sa.Column("description", sa.String(255)),
        sa.Column("run_id", sa.BigInteger),
        sa.Column("created_at", _when()),
        sa.Column("resolved_at", _when()),
        sa.Column("exported_at", _when()),
    )  # fmt: skip


def _anomaly_rows(container_ids: list[int], now: datetime) -> Iterator[dict[str, Any]]:
    anomalies = (
        Anomaly.objects.filter(container_id__in=container_ids)
        .select_related("container", "check_rule")
        .order_by("id")
    )
    for anomaly in anomalies.iterator(chunk_size=settings.ENRICHMENT_BATCH_SIZE):
        check = anomaly.check_rule
        yield {
            "id": anomaly.pk,
            "container": anomaly.container.name,
            "container_id": anomaly.container_id,
            "check_id": anomaly.check_rule_id,
            "check_type": check.type if check else None,
            "field_name": (check.field_name or None) if check else None,
            "status": anomaly.status,
            "failed_count": anomaly.failed_count,
            "examples": anomaly.examples,
            "description": anomaly.description,
            "run_id": anomaly.run_id,
            "created_at": anomaly.created_at,
            "resolved_at": anomaly.resolved_at,
            "exported_at": now,
        }


def _checks_table(name: str) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("id", sa.BigInteger),
        sa.Column("container", sa.String(255)),
        sa.Column("container_id", sa.BigInteger),
        sa.Column("type", sa.String(32)),
        sa.Column("field_name", sa.String(255)),
        sa.Column("params", _json()),
        sa.Column("status", sa.String(16)),
        sa.Column("origin", sa.String(16)),
        sa.Column("description", sa.String(255)),
        sa.Column("created_at", _when()),
        sa.Column("updated_at", _when()),
        sa.Column("exported_at", _when()),
    )  # fmt: skip


def _check_rows(container_ids: list[int], now: datetime) -> Iterator[dict[str, Any]]:
    checks = Check.objects.filter(container_id__in=container_ids).select_related("container")
    for check in checks.order_by("id").iterator(chunk_size=settings.ENRICHMENT_BATCH_SIZE):
        yield {
            "id": check.pk,
            "container": check.container.name,
            "container_id": check.container_id,
            "type": check.type,
            "field_name": check.field_name or None,
            "params": check.params,
            "status": check.status,
            "origin": check.origin,
            "description": check.description,
            "created_at": check.created_at,
            "updated_at": check.updated_at,
            "exported_at": now,
        }


def _profiles_table(name: str) -> sa.Table:
    return sa.Table(
        name, sa.MetaData(),
        sa.Column("container", sa.String(255)),
        sa.Column("container_id", sa.BigInteger),
        sa.Column("field", sa.String(255)),
        sa.Column("field_type", sa.String(32)),
        sa.Column("record_count", sa.BigInteger),
        sa.Column("value_count", sa.BigInteger),
        sa.Column("null_count", sa.BigInteger),
        sa.Column("distinct_count", sa.BigInteger),
        sa.Column("min_value", _json()),
        sa.Column("max_value", _json()),
        sa.Column("mean", sa.Double),
        sa.Column("std_dev", sa.Double),
        sa.Column("min_length", sa.BigInteger),
        sa.Column("max_length", sa.BigInteger),
        sa.Column("top_values", _json()),
        sa.Column("stats", _json()),
        sa.Column("run_id", sa.BigInteger),
        sa.Column("profiled_at", _when()),
        sa.Column("exported_at", _when()),
    )  # fmt: skip


def _profile_rows(container_ids: list[int], now: datetime) -> Iterator[dict[str, Any]]:
    profiles = (
        FieldProfile.objects.filter(field__container_id__in=container_ids)
        .select_related("field__container")
        .order_by("field__container__name", "field__position", "field__name")
    )
    for profile in profiles.iterator(chunk_size=settings.ENRICHMENT_BATCH_SIZE):
        stats, field = profile.stats or {}, profile.field
        yield {
            "container": field.container.name,
            "container_id": field.container_id,
            "field": field.name,
            "field_type": stats.get("field_type") or field.type,
            "record_count": profile.record_count,
            "value_count": stats.get("count"),
            "null_count": stats.get("nulls"),
            "distinct_count": stats.get("distinct"),
            "min_value": stats.get("min"),
            "max_value": stats.get("max"),
            "mean": stats.get("mean"),
            "std_dev": stats.get("std_dev"),
            "min_length": stats.get("min_length"),
            "max_length": stats.get("max_length"),
            "top_values": stats.get("top_values"),
            "stats": stats,
            "run_id": profile.run_id,
            "profiled_at": profile.profiled_at,
            "exported_at": now,
        }


@dataclass(frozen=True)
class Asset:
    table: Callable[[str], sa.Table]
    rows: Callable[[list[int], datetime], Iterator[dict[str, Any]]]


ASSETS: dict[str, Asset] = {
    "anomalies": Asset(_anomalies_table, _anomaly_rows),
    "checks": Asset(_checks_table, _check_rows),
    "field_profiles": Asset(_profiles_table, _profile_rows),
}


class ExportConfig(OperationConfig):
    containers: list[str] | None = containers_field()  # None: all
    assets: list[AssetName] = ConfigField(
        default_factory=lambda: list(ASSETS), min_length=1,
        description="Each asset replaces its <prefix>_export_<asset> table.",
    )


class Export(Operation):
    name = "export"
    unit_label = "Assets"
    Config = ExportConfig

    def validate(self, config: ExportConfig, *, datastore, destination) -> None:
        require_enrichment(datastore)
        if len(set(config.assets)) != len(config.assets):
            raise InvalidConfig(
                "assets lists an asset twice.", errors={"assets": ["Duplicate assets."]}
            )
        validate_container_names(config.containers, datastore=datastore)

    def plan(self, ctx) -> list[Unit]:
        return [Unit(asset) for asset in ctx.config.assets]

    def begin(self, ctx, units: list[Unit]) -> None:
        open_enrichment(ctx)  # cannot connect: the Run fails
        # A container removed since launch simply has nothing left to export.
        containers = plan_containers(ctx.config.containers, datastore=ctx.datastore)
        ctx.state["container_ids"] = [u.container_id for u in containers if u.container_id]
        ctx.state["exported_at"] = timezone.now()
        ctx.add_metrics({f"{unit.name}_exported": 0 for unit in units})

    def process(self, ctx, unit: Unit) -> UnitResult:
        asset = ASSETS[unit.name]
        target = enrichment_table_name(ctx.datastore.enrichment_prefix, "export", unit.name)
        rows = asset.rows(ctx.state["container_ids"], ctx.state["exported_at"])
        batches = batched(rows, settings.ENRICHMENT_BATCH_SIZE)
        try:
            written, _ = replace_table(
                open_enrichment(ctx).conn, asset.table(target), batches, checkpoint=ctx.checkpoint
            )
        except DATA_ERRORS as exc:
            raise enrichment_failure(ctx, f"Writing {target}", exc) from None
        ctx.log(f"Exported {written} {unit.name.replace('_', ' ')} into {target}.")
        return UnitResult({f"{unit.name}_exported": written})
