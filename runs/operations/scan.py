"""Scan: evaluate the active checks of each container by SQL push-down; record anomalies.

Per container, ``datastores.quality.checks.evaluate_sql`` evaluates every active check in as
few passes as the dialect runs best (on PostgreSQL one parallel aggregate plus the distinct
counts beside it, on up to ``Datastore.connection_limit`` connections of the Run), then one
bounded statement per failing check fetches example rows. Anomalies, the high-water mark and
auto-resolution are stored in the unit's transaction, so a container's results are recorded
whole or not at all.

Rollup: when more than ``rollup_threshold`` checks fail on one container, the container gets one
anomaly summarising them (no check of its own, ``failed_count`` = the sum of the checks' failed
counts, ``examples`` = one entry per failing check) instead of one anomaly per check.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from pydantic import Field as ConfigField
from sqlalchemy import exc as sa_exc

from datastores.anomalies import Outcome, Rollup, check_spec, record_results
from datastores.containers import container_selectable
from datastores.models import Check, CheckStatus, Container
from datastores.quality import (
    CheckSpec,
    describe,
    evaluate_sql,
    fetch_examples,
    high_water_filter,
)
from datastores.sources import describe_error
from runs.models import LogLevel
from runs.operations.base import (
    MAX_INT,
    Operation,
    OperationConfig,
    RowCount,
    Unit,
    UnitFailed,
    UnitResult,
)
from runs.operations.containers import (
    clean_connection,
    containers_field,
    load_container,
    plan_containers,
    validate_container_names,
)


class ScanConfig(OperationConfig):
    containers: list[str] | None = containers_field()
    incremental: bool = ConfigField(
        default=False,
        description="Read only the rows added since the last Scan (past each container's "
        "high-water mark); the first Scan of a container reads it all.",
    )
    record_limit: RowCount | None = ConfigField(
        default=None,
        description="Read only the first N rows of each container; empty for every row.",
    )
    rollup_threshold: int = ConfigField(
        default=10, ge=1, le=MAX_INT,
        description="When more checks than this fail on one container, record one rolled-up "
        "anomaly for the container instead of one per check.",
    )
    source_record_limit: int = ConfigField(
        default=10, ge=0, le=100,
        description="Example source rows kept with each anomaly (0 to 100; 0 keeps none).",
    )
    auto_resolve: bool = ConfigField(
        default=True,
        description="A full Scan resolves the container's open anomalies whose checks now pass.",
    )


class Scan(Operation):
    name = "scan"
    unit_label = "Tables"
    tracks_units = True
    Config = ScanConfig

    def validate(self, config: ScanConfig, *, datastore, destination) -> None:
        validate_container_names(config.containers, datastore=datastore)

    def plan(self, ctx) -> list[Unit]:
        return plan_containers(ctx.config.containers, datastore=ctx.datastore)

    def begin(self, ctx, units: list[Unit]) -> None:
        ctx.source()  # cannot connect: the Run fails, rather than every container
        ctx.add_metrics({"tables_requested": len(units)})

    def process(self, ctx, unit: Unit) -> UnitResult:
        config: ScanConfig = ctx.config
        container = load_container(unit, datastore=ctx.datastore)
        checks = list(container.checks.filter(status=CheckStatus.ACTIVE).order_by("id"))
        specs = {check.pk: check_spec(check) for check in checks}
        conn = clean_connection(ctx.source().conn)
        table = container_selectable(container, conn)
        now = timezone.now()

        high_water = container.high_water_column or None
        if high_water and high_water not in table.c:
            raise UnitFailed(f"The high-water column {high_water} is not a column of {unit.name}.")
        where = None
        if config.incremental:
            if high_water:
                where = high_water_filter(table, high_water, container.high_water_mark)
            else:
                ctx.log(
                    "No high-water column: the incremental scan reads every row.",
                    container=unit.name,
                )
        reading = {
            "where": where,
            "record_limit": config.record_limit,
            "high_water_column": high_water,
        }
        evaluation = evaluate_sql(
            conn,
            table,
            list(specs.values()),
            now=now,
            more_connections=lambda index: _extra_connection(ctx, index),
            max_connections=ctx.datastore.connection_limit,
            **reading,
        )
        records = evaluation.records_scanned
        # Table-level checks judge the whole table; a filtered or truncated read is not it.
        whole_table = where is None and (
            config.record_limit is None or records < config.record_limit
        )

        failing: list[tuple[Check, int]] = []
        passing: set[int] = set()
        errors: dict[int, str] = {}
        warnings: list[str] = []
        for check in checks:
            result = evaluation.results[str(check.pk)]
            if check.type == "row_count_between" and not whole_table:
                continue
            if result.error is not None:
                errors[check.pk] = result.error
                # The log is read at every level; the error text may quote source values, so
                # it is kept with the check's evaluation (Viewer and up), not in the log.
                warnings.append(
                    f"Check #{check.pk} ({check.label}) could not run; its error is shown with "
                    "the check's results."
                )
            elif result.failed_count:
                failing.append((check, result.failed_count))
            else:
                passing.add(check.pk)
        broken = len(errors)
        rolled_up = len(failing) > config.rollup_threshold

        examples: dict[int, list[dict[str, Any]]] = {}
        example_errors: dict[int, str] = {}
        if not rolled_up and config.source_record_limit:
            for check, _ in failing:
                ctx.checkpoint()
                try:
                    examples[check.pk] = fetch_examples(
                        conn, table, specs[check.pk], limit=config.source_record_limit, now=now,
                        **reading,
                    )
                except sa_exc.DBAPIError as error:
                    if ctx.stopping:
                        raise
                    # The database's message may quote a value: it goes with the check's
                    # evaluation (Viewer and up), the log only says that it happened.
                    example_errors[check.pk] = "Examples could not be read: " + describe_error(
                        error, ctx.datastore.source_url
                    )
                    warnings.append(
                        f"Check #{check.pk} ({check.label}): examples could not be read; the "
                        "error is shown with the check's results."
                    )

        metrics: dict[str, Any] = {
            "records_scanned": records,
            "checks_evaluated": len(failing) + len(passing),
            "anomalies_identified": 1 if rolled_up else len(failing),
        }
        if broken:
            metrics["check_errors"] = broken
        resolve = config.auto_resolve and not config.incremental and whole_table

        outcomes = [
            Outcome(check, count, examples.get(check.pk, []),
                    error=example_errors.get(check.pk, ""))
            for check, count in failing
        ]
        outcomes += [Outcome(check, 0) for check in checks if check.pk in passing]
        outcomes += [Outcome(check, None, error=errors[check.pk]) for check in checks
                     if check.pk in errors]  # fmt: skip

        def save() -> None:
            counts = record_results(
                container=container,
                run_id=ctx.run_id,
                outcomes=outcomes,
                rollup=_rollup(container, failing, specs) if rolled_up else None,
                resolve_passing=resolve,
                now=now,
            )
            if resolve:
                metrics["anomalies_resolved"] = counts["resolved"]
            if high_water and evaluation.high_water_mark is not None:
                Container.objects.filter(pk=container.pk).update(
                    high_water_mark=evaluation.high_water_mark
                )
            for warning in warnings:
                ctx.log(warning, level=LogLevel.WARNING, container=unit.name)
            ctx.log(_summary(metrics, rolled_up=rolled_up), container=unit.name)
            ctx.add_metrics({"tables_scanned": 1})

        return UnitResult(metrics, save=save)


def _extra_connection(ctx, index: int):
    """The Run's ``index``-th extra source connection, opened on first use and kept.

    Opened through the Run context, so an Abort cancels their statements too, and they are
    closed with the Run.
    """
    extras = ctx.state.setdefault("extra_connections", [])
    while len(extras) <= index:
        extras.append(ctx.connect(ctx.datastore.source_url))
    return clean_connection(extras[index].conn)


def _rollup(
    container: Container, failing: list[tuple[Check, int]], specs: dict[int, CheckSpec]
) -> Rollup:
    entries = [
        {
            "check_id": check.pk,
            "check": describe(specs[check.pk]),
            "type": check.type,
            "field": check.field_name,
            "failed_count": count,
        }
        for check, count in failing
    ]
    return Rollup(
        failed_count=sum(count for _, count in failing),
        entries=entries,
        description=f"{len(failing)} checks failed on {container.name} (rolled up)",
    )


def _summary(metrics: dict[str, Any], *, rolled_up: bool) -> str:
    text = (
        f"Scanned {metrics['records_scanned']} records with {metrics['checks_evaluated']} "
        f"checks: {metrics['anomalies_identified']} anomalies"
    )
    if rolled_up:
        text += " (failing checks rolled up into one)"
    if metrics.get("anomalies_resolved"):
        text += f", {metrics['anomalies_resolved']} resolved"
    return text + "."
