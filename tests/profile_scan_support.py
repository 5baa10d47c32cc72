"""Shared helpers of the Profile and Scan tests: demo sources on every supported dialect, runs
driven through the real engine, the checks matching the demo's deliberate defects, and a
per-table count of the statements the source receives."""

from __future__ import annotations

import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from datastores.demo_source import (
    DEMO_CHECKS,
    DEMO_METADATA,
    DemoManifest,
    generate_demo_source,
)
from datastores.models import Check, CheckStatus, Container
from tests.databases import (
    sync_catalogue,
    throwaway_mariadb_database,
    throwaway_postgres_database,
)

DEMO_ROWS = 2000
DEMO_TABLES = sorted(DEMO_METADATA.tables)  # the 14 tables (the catalogue adds one view)

# Demo defect key -> (container, check type, field, params) of the check that catches it.
DEFECT_CHECKS = DEMO_CHECKS


@dataclass
class DemoSource:
    url: str
    manifest: DemoManifest
    backend: str


@contextmanager
def demo_source_at(backend: str, tmp_path, rows: int = DEMO_ROWS):
    if backend in FILE_BACKENDS:
        url = f"{backend}:///{tmp_path / f'source.{backend}'}"
        yield DemoSource(url, generate_demo_source(url, rows=rows), backend)
        return
    throwaway = (
        throwaway_mariadb_database if backend == "mariadb" else throwaway_postgres_database
    )
    with throwaway() as url:
        yield DemoSource(url, generate_demo_source(url, rows=rows), backend)


FILE_BACKENDS = ("sqlite", "duckdb")
BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgres_source),
    pytest.param("mariadb", marks=pytest.mark.mariadb_source),
    "duckdb",
]


@contextmanager
def synced_demo_source(backend: str, tmp_path, datastore, user):
    """The demo source on ``backend`` as the datastore's source, catalogued by a Sync."""
    with demo_source_at(backend, tmp_path) as demo:
        datastore.source_url = demo.url
        datastore.save()
        sync_catalogue(user, datastore)
        yield demo


def execute(sql_text: str, url: str, **params) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql_text), params)
    finally:
        engine.dispose()


def source_count(sql_text: str, url: str, **params) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql_text), params).scalar_one()
    finally:
        engine.dispose()




def author_defect_checks(datastore) -> dict[str, Check]:
    """The authored, active checks that catch each demo defect, keyed like the manifest."""
    containers = {c.name: c for c in Container.objects.filter(datastore=datastore)}
    return {
        key: Check.objects.create(
            container=containers[container], type=type_, field_name=field, params=params,
            status=CheckStatus.ACTIVE,
        )
        for key, (container, type_, field, params) in DEFECT_CHECKS.items()
    }


class StatementCounter:
    """Counts statements sent to source engines, per demo table named in them.

    Listens on the Engine class, so it sees the connections the engine opens itself.
    """

    def __init__(self, url: str):
        self.database = sa.make_url(url).database
        self.per_table: Counter[str] = Counter()
        self.statements: list[str] = []
        self._patterns = {t: re.compile(rf"\b{t}\b") for t in [*DEMO_TABLES, "v_order_totals"]}

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        if conn.engine.url.database != self.database:
            return
        self.statements.append(statement)
        for table, pattern in self._patterns.items():
            if pattern.search(statement):
                self.per_table[table] += 1

    def __enter__(self) -> StatementCounter:
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc_info) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self)
