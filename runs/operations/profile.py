"""Profile: field statistics by SQL push-down, then checks inferred from them.

Per container: one aggregate statement over every column (plus one bounded statement for the
top values of low-cardinality columns), see ``datastores.quality.profiling``. The profiles and
the inferred checks of a container are stored in the unit's transaction.
"""

from __future__ import annotations

import dataclasses

from django.utils import timezone
from pydantic import Field as ConfigField

from datastores.containers import container_selectable
from datastores.models import Check, CheckOrigin, CheckStatus, Container, Field, FieldProfile
from datastores.quality import InferredCheck, TableProfile, describe, infer_checks, profile_table
from runs.operations.base import Operation, OperationConfig, RowCount, Unit, UnitResult
from runs.operations.containers import (
    clean_connection,
    containers_field,
    load_container,
    plan_containers,
    validate_container_names,
)


class ProfileConfig(OperationConfig):
    containers: list[str] | None = containers_field()
    record_limit: RowCount | None = ConfigField(
        default=None,
        description="Profile only the first N rows of each container; empty for every row.",
    )
    inference_level: int = ConfigField(
        default=2, ge=0, le=5,
        description="How many checks to infer from the profiles: 0 none, 1 the basics (not "
        "null, types), up to 5 every rule the profiles support (ranges, patterns, row counts).",
    )
    infer_as_draft: bool = ConfigField(
        default=True,
        description="New inferred checks start as drafts, reviewed before Scans use them; "
        "unticked, they start active.",
    )


class Profile(Operation):
    name = "profile"
    unit_label = "Tables"
    tracks_units = True
    Config = ProfileConfig

    def validate(self, config: ProfileConfig, *, datastore, destination) -> None:
        validate_container_names(config.containers, datastore=datastore)

    def plan(self, ctx) -> list[Unit]:
        return plan_containers(ctx.config.containers, datastore=ctx.datastore)

    def begin(self, ctx, units: list[Unit]) -> None:
        ctx.source()  # cannot connect: the Run fails, rather than every container
        ctx.add_metrics({"tables_requested": len(units)})

    def process(self, ctx, unit: Unit) -> UnitResult:
        config: ProfileConfig = ctx.config
        container = load_container(unit, datastore=ctx.datastore)
        conn = clean_connection(ctx.source().conn)
        table = container_selectable(container, conn)
        profile = profile_table(conn, table, record_limit=config.record_limit)
        now = timezone.now()
        inferred = infer_checks(profile, level=config.inference_level, now=now)
        if config.record_limit is not None and profile.record_count >= config.record_limit:
            # The sample's size says nothing about the table's.
            inferred = [check for check in inferred if check.type != "row_count_between"]
        metrics = {
            "records_profiled": profile.record_count,
            "field_profiles": len(profile.fields),
        }

        def save() -> None:
            store_profiles(container, profile, run_id=ctx.run_id, now=now)
            added, updated = store_inferred_checks(
                container, inferred, as_draft=config.infer_as_draft
            )
            metrics.update(checks_added=added, checks_updated=updated)
            ctx.log(
                f"Profiled {profile.record_count} records, {len(profile.fields)} fields; "
                f"inferred checks: {added} added, {updated} updated.",
                container=unit.name,
            )
            ctx.add_metrics({"tables_profiled": 1})

        return UnitResult(metrics, save=save)


def store_profiles(container: Container, profile: TableProfile, *, run_id: int, now) -> None:
    """Replace the latest profile of every profiled field (creating fields Sync never saw)."""
    fields = {field.name: field for field in container.fields.all()}
    for position, (name, stats) in enumerate(profile.fields.items()):
        field = fields.get(name)
        if field is None:  # a computed container catalogued without its columns
            field = Field.objects.create(
                container=container, name=name, type=stats.field_type, position=position
            )
        FieldProfile.objects.update_or_create(
            field=field,
            defaults={
                "run_id": run_id,
                "record_count": profile.record_count,
                "stats": dataclasses.asdict(stats),
                "profiled_at": now,
            },
        )


def store_inferred_checks(
    container: Container, inferred: list[InferredCheck], *, as_draft: bool
) -> tuple[int, int]:
    """Create new inferred checks, update changed ones; return (added, updated).

    An existing inferred check keeps its status: a check a user activated or archived stays so.
    """
    existing = {
        (check.type, check.field_name): check
        for check in container.checks.filter(origin=CheckOrigin.INFERRED)
    }
    added = updated = 0
    for check in inferred:
        field_name = check.field or ""
        current = existing.get((check.type, field_name))
        if current is not None and _same_params(current.params, check.params):
            continue
        values = {"params": check.params, "description": describe(check)[:255]}
        _, created = Check.objects.update_or_create(
            container=container,
            type=check.type,
            field_name=field_name,
            origin=CheckOrigin.INFERRED,
            defaults=values,
            create_defaults={
                **values,
                "status": CheckStatus.DRAFT if as_draft else CheckStatus.ACTIVE,
            },
        )
        added += created
        updated += not created
    return added, updated


def _same_params(stored: dict, inferred: dict) -> bool:
    # Top values come most frequent first: the same set in another order is no change.
    def normal(params: dict) -> dict:
        values = params.get("values")
        if isinstance(values, list):
            return {**params, "values": sorted(values, key=repr)}
        return params

    return normal(stored or {}) == normal(inferred)
