"""Promote: copy check definitions from a source container to a destination container.

The source container is on the Run's datastore, the destination on its destination datastore
(the same one or another). One unit per check, each committed on its own, so Resume continues
with the checks an aborted or failed Promote did not reach.

A check's identity in the destination is its type and field name. For each source check:

* no destination check with that identity -> **created** (status ``draft`` when ``as_draft``,
  else the source's status; origin ``authored``: a person chose to promote it);
* one with equal params (and, without ``as_draft``, equal status) -> **skipped**;
* otherwise the closest one (equal params first, else the oldest) -> **updated**: params and
  description, and the status too without ``as_draft``. With ``as_draft`` the destination's own
  status (its review) is left alone, so promoting again does not demote an activated check.

A field check whose field does not exist in the destination container fails on its own (a
**failed** unit with the reason; the Run ends Success with the warning indicator). Launch does
not refuse it: the other checks are still worth promoting, and fields may change before the
Run starts.
"""

from __future__ import annotations

from pydantic import Field as ConfigField

from datastores.models import Check, CheckOrigin, CheckStatus, Container, Datastore
from datastores.sources import SourceError
from runs.errors import InvalidConfig
from runs.operations.base import (
    Id,
    Operation,
    OperationConfig,
    Unit,
    UnitFailed,
    UnitResult,
)

OUTCOMES = ("created", "updated", "skipped", "failed")
PROMOTABLE = (CheckStatus.ACTIVE, CheckStatus.DRAFT)


class PromoteConfig(OperationConfig):
    source_container: str = ConfigField(min_length=1, max_length=255)
    destination_container: str = ConfigField(min_length=1, max_length=255)
    checks: list[Id] | None = ConfigField(
        default=None, min_length=1,
        description="Check ids of the source container; empty for all active and draft checks.",
    )
    as_draft: bool = ConfigField(
        default=True, description="Create new checks as drafts in the destination."
    )


class ContainerGone(SourceError):
    """A container of the config left the catalogue between launch and run.

    A SourceError, so the engine fails the Run with this message as its cause (no
    "internal error"): without its containers a Promote has nothing it can do.
    """


class Promote(Operation):
    name = "promote"
    unit_label = "Checks"
    tracks_units = True
    Config = PromoteConfig

    def validate(
        self, config: PromoteConfig, *, datastore: Datastore, destination: Datastore | None
    ) -> None:
        if destination is None:
            raise InvalidConfig(
                "Promote needs a destination datastore.",
                errors={"destination_datastore": ["This field is required."]},
            )
        errors: dict[str, list[str]] = {}
        source = datastore.containers.filter(name=config.source_container).first()
        target = destination.containers.filter(name=config.destination_container).first()
        if source is None:
            errors["source_container"] = [
                f"Unknown container on {datastore.name}: {config.source_container}"
            ]
        if target is None:
            errors["destination_container"] = [
                f"Unknown container on {destination.name}: {config.destination_container}"
            ]
        elif source is not None and source.pk == target.pk:
            errors["destination_container"] = ["The destination is the source container itself."]
        if config.checks is not None and source is not None:
            problems = _check_problems(source, config.checks)
            if problems:
                errors["checks"] = problems
        if errors:
            summary = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in errors.items())
            raise InvalidConfig(f"Invalid configuration: {summary}", errors=errors)

    def plan(self, ctx) -> list[Unit]:
        source = _container(ctx.datastore, ctx.config.source_container, where="source")
        if ctx.config.checks is None:
            checks = list(source.checks.filter(status__in=PROMOTABLE).order_by("id"))
        else:
            by_id = {c.pk: c for c in source.checks.filter(pk__in=ctx.config.checks)}
            checks = [by_id[pk] for pk in ctx.config.checks if pk in by_id]
        return [Unit(unit_name(check), container_id=source.pk) for check in checks]

    def begin(self, ctx, units: list[Unit]) -> None:
        _container(ctx.datastore, ctx.config.source_container, where="source")
        _container(ctx.destination, ctx.config.destination_container, where="destination")
        ctx.add_metrics(_counts())

    def process(self, ctx, unit: Unit) -> UnitResult:
        config: PromoteConfig = ctx.config
        check_id = check_id_of(unit.name)
        check = Check.objects.filter(
            pk=check_id, container__datastore=ctx.datastore,
            container__name=config.source_container,
        ).first()
        if check is None:
            raise UnitFailed(
                f"Check #{check_id} is no longer in source container {config.source_container}.",
                metrics=_counts("failed"),
            )
        target = ctx.destination.containers.filter(name=config.destination_container).first()
        if target is None:
            raise UnitFailed(
                # The Run's log is read by those who see the source; the destination
                # datastore may be hidden from them, so its name stays out of it.
                f"Destination container {config.destination_container} is no longer in the "
                "destination datastore.",
                metrics=_counts("failed"),
            )
        if check.field_name and not target.fields.filter(name=check.field_name).exists():
            raise UnitFailed(
                f"Field {check.field_name} does not exist in destination container "
                f"{target.name}; check #{check.pk} was not promoted.",
                metrics=_counts("failed"),
            )
        metrics = _counts()

        def save() -> None:
            metrics[promote_check(check, target, as_draft=config.as_draft)] = 1

        return UnitResult(metrics, save=save)


def promote_check(check: Check, target: Container, *, as_draft: bool) -> str:
    """Create, update or leave the destination twin of ``check``; return which it was."""
    # Locked, so two Promotes into the same container cannot both create the same check.
    twins = list(
        Check.objects.select_for_update()
        .filter(container=target, type=check.type, field_name=check.field_name)
        .order_by("id")
    )
    if not twins:
        Check.objects.create(
            container=target,
            type=check.type,
            field_name=check.field_name,
            params=check.params,
            status=CheckStatus.DRAFT if as_draft else check.status,
            origin=CheckOrigin.AUTHORED,
            description=check.description,
        )
        return "created"
    twin = next((t for t in twins if t.params == check.params), twins[0])
    changes = {}
    if twin.params != check.params:
        changes.update(params=check.params, description=check.description)
    if not as_draft and twin.status != check.status:
        changes["status"] = check.status
    if not changes:
        return "skipped"
    for name, value in changes.items():
        setattr(twin, name, value)
    twin.save(update_fields=[*changes, "updated_at"])
    return "updated"


def unit_name(check: Check) -> str:
    """``#<id> <type>(<field>)``: readable in the Results tab, and the id survives a Resume."""
    return f"#{check.pk} {check}"[:255]


def check_id_of(name: str) -> int:
    return int(name[1:].split(" ", 1)[0])


def _counts(outcome: str | None = None) -> dict[str, int]:
    # Every unit reports all four, so summaries show zeros instead of missing counters.
    return {key: int(key == outcome) for key in OUTCOMES}


def _container(datastore: Datastore, name: str, *, where: str) -> Container:
    container = datastore.containers.filter(name=name).first()
    if container is None:
        raise ContainerGone(f"Container {name} is no longer in the {where} datastore.")
    return container


def _check_problems(source: Container, check_ids: list[int]) -> list[str]:
    if len(set(check_ids)) != len(check_ids):
        return ["A check is listed twice."]
    statuses = dict(source.checks.filter(pk__in=check_ids).values_list("pk", "status"))
    problems = [
        f"Check #{pk} is not a check of {source.name}." for pk in check_ids if pk not in statuses
    ]
    problems += [
        f"Check #{pk} is archived; only active and draft checks are promoted."
        for pk in check_ids
        if statuses.get(pk) == CheckStatus.ARCHIVED
    ]
    return problems
