"""Shared helpers of the Export, Materialize and Promote tests: throwaway source and enrichment
databases on SQLite and PostgreSQL, and Runs driven through the real engine in this process."""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack, contextmanager

import pytest
import sqlalchemy as sa

from tests.databases import throwaway_postgres_database

PG = pytest.mark.postgres_source

# (source backend, enrichment backend): same dialect both sides, and across dialects.
BACKEND_PAIRS = [
    pytest.param("sqlite", "sqlite", id="sqlite-sqlite"),
    pytest.param("postgresql", "postgresql", id="pg-pg", marks=PG),
    pytest.param("sqlite", "postgresql", id="sqlite-pg", marks=PG),
    pytest.param("postgresql", "sqlite", id="pg-sqlite", marks=PG),
]


@contextmanager
def database(backend: str, tmp_path, name: str):
    """An empty database of ``backend``; a SQLite enrichment file must exist beforehand."""
    if backend == "sqlite":
        path = tmp_path / f"{name}.sqlite3"
        sqlite3.connect(path).close()
        yield f"sqlite:///{path}"
    else:
        with throwaway_postgres_database() as url:
            yield url


class Databases(ExitStack):
    """Several throwaway databases for one test: ``dbs.new("sqlite", "source")``."""

    def __init__(self, tmp_path):
        super().__init__()
        self.tmp_path = tmp_path

    def new(self, backend: str, name: str) -> str:
        return self.enter_context(database(backend, self.tmp_path, name))


def link(datastore, *, source: str, enrichment: str = "") -> None:
    datastore.source_url = source
    datastore.enrichment_url = enrichment
    datastore.save()




def query(url: str, statement: str, **params) -> list[sa.RowMapping]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(statement), params).mappings())
    finally:
        engine.dispose()


def execute(url: str, statement: str, **params) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    return query(url, f'SELECT COUNT(*) AS n FROM "{table}"')[0]["n"]


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
