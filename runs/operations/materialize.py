"""Materialize: copy containers from the source into the enrichment datastore, streamed.

Each container becomes ``<prefix>_mat_<name>`` in the enrichment datastore, replaced in one
enrichment transaction (``datastores.enrichment``). Rows are read through a server-side cursor
and written batch by batch, so memory is bounded by one batch whatever the table size, and
the Run checks for an Abort between batches. An aborted or failed copy rolls back: the table
keeps its previous content, and containers already copied stay.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import sqlalchemy as sa
from django.conf import settings
from pydantic import Field as ConfigField

from datastores.containers import container_selectable
from datastores.enrichment import (
    Converter,
    TableNameError,
    as_text,
    enrichment_table_name,
    generic_type,
    replace_table,
    type_from_value,
    value_converter,
)
from datastores.models import Container
from datastores.sources import describe_error
from runs.errors import InvalidConfig
from runs.operations.base import (
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
from runs.operations.enrichment_targets import (
    DATA_ERRORS,
    enrichment_failure,
    open_enrichment,
    require_enrichment,
)

FAILED = {"containers_failed": 1}


class MaterializeConfig(OperationConfig):
    containers: list[str] | None = containers_field()  # None: all
    record_limit: RowCount | None = ConfigField(
        default=None, description="Copy at most this many rows of each container."
    )


class Materialize(Operation):
    name = "materialize"
    unit_label = "Containers"
    Config = MaterializeConfig

    def validate(self, config: MaterializeConfig, *, datastore, destination) -> None:
        require_enrichment(datastore)
        validate_container_names(config.containers, datastore=datastore)
        names = config.containers or datastore.containers.values_list("name", flat=True)
        problems, targets = [], {}
        for name in names:
            try:
                target = enrichment_table_name(datastore.enrichment_prefix, "mat", name)
            except TableNameError as exc:
                problems.append(str(exc))
                continue
            # "sales-2024" and "sales 2024" both become <prefix>_mat_sales_2024: the second
            # copy would silently replace the first.
            if target in targets:
                problems.append(
                    f"Containers {targets[target]!r} and {name!r} would both be materialized "
                    f"as {target}; materialize them in separate Runs."
                )
            targets.setdefault(target, name)
        if problems:
            raise InvalidConfig(problems[0], errors={"containers": problems})

    def plan(self, ctx) -> list[Unit]:
        return plan_containers(ctx.config.containers, datastore=ctx.datastore)

    def begin(self, ctx, units: list[Unit]) -> None:
        # Cannot connect: the Run fails once, rather than every container.
        open_enrichment(ctx)
        ctx.source()
        ctx.add_metrics({"containers_materialized": 0, "records_written": 0})

    def process(self, ctx, unit: Unit) -> UnitResult:
        try:
            container = load_container(unit, datastore=ctx.datastore)
        except UnitFailed as exc:
            raise UnitFailed(str(exc), metrics=FAILED) from None
        try:
            target = enrichment_table_name(ctx.datastore.enrichment_prefix, "mat", container.name)
        except TableNameError as exc:
            raise UnitFailed(str(exc), metrics=FAILED) from None
        source = clean_connection(ctx.source().conn)
        records, batches = _copy(ctx, container, source, target)
        ctx.log(
            f"Materialized {records} records of {container.name} into {target} "
            f"({batches} batches).",
            container=container.name,
        )
        return UnitResult({"containers_materialized": 1, "records_written": records})


def _copy(ctx, container: Container, source: sa.Connection, target: str) -> tuple[int, int]:
    batch_size = settings.ENRICHMENT_BATCH_SIZE
    try:
        selectable = container_selectable(container, source)
        statement = sa.select(selectable)
        if ctx.config.record_limit is not None:
            statement = statement.limit(ctx.config.record_limit)
        # A server-side cursor (named cursor on PostgreSQL) hands rows over batch by batch.
        result = source.execute(
            statement.execution_options(stream_results=True, yield_per=batch_size)
        )
    except DATA_ERRORS as exc:
        raise _read_failure(ctx, container, exc) from None
    try:
        partitions = _read(ctx, container, result.partitions())
        first = next(partitions, [])
        enrichment = open_enrichment(ctx).conn
        table, converters = _target_table(
            target, list(result.keys()), list(selectable.c), first, enrichment.dialect.name
        )
        rows = (_as_dicts(table, converters, part) for part in chain([first], partitions))
        try:
            return replace_table(enrichment, table, rows, checkpoint=ctx.checkpoint)
        except DATA_ERRORS as exc:
            raise enrichment_failure(ctx, f"Writing {target}", exc, **FAILED) from None
    finally:
        result.close()


def _read(ctx, container: Container, partitions: Iterator[Sequence[sa.Row]]):
    """The source's batches; a read error becomes this container's failure."""
    while True:
        try:
            part = next(partitions)
        except StopIteration:
            return
        except DATA_ERRORS as exc:
            raise _read_failure(ctx, container, exc) from None
        yield part


def _read_failure(ctx, container: Container, exc: Exception) -> UnitFailed:
    cause = describe_error(exc, ctx.datastore.source_url)
    return UnitFailed(f"Reading {container.name} from the source failed: {cause}", metrics=FAILED)


def _target_table(
    name: str,
    keys: list[str],
    columns: list[sa.ColumnElement[Any]],
    sample: Sequence[sa.Row],
    dialect: str,
) -> tuple[sa.Table, list[Converter | None]]:
    """The destination table: generic types from the source columns, else from the values."""
    target_columns, converters = [], []
    for index, (key, column) in enumerate(zip(keys, columns, strict=True)):
        column_type, converter = generic_type(column.type), None
        if column_type is None:
            # Untyped (a computed query's column) or non-portable: type it by its first value.
            value = next((row[index] for row in sample if row[index] is not None), None)
            column_type, converter = (
                type_from_value(value) if value is not None else (sa.Text(), as_text)
            )
        target_columns.append(sa.Column(key, column_type))
        converters.append(value_converter(column_type, dialect, converter))
    return sa.Table(name, sa.MetaData(), *target_columns), converters


def _as_dicts(
    table: sa.Table, converters: list[Converter | None], rows: Sequence[sa.Row]
) -> list[dict[str, Any]]:
    keys = [column.key for column in table.columns]
    if not any(converters):
        return [dict(zip(keys, row, strict=True)) for row in rows]
    return [
        {
            key: convert(value) if convert else value
            for key, convert, value in zip(keys, converters, row, strict=True)
        }
        for row in rows
    ]
