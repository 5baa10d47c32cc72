"""Throwaway databases and in-process Runs, shared by the tests of every operation."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection
from psycopg import sql

from runs import execution
from runs.models import Run
from runs.services import run_launch

POSTGRES_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@contextmanager
def throwaway_postgres_database() -> Iterator[str]:
    """An empty PostgreSQL database, dropped afterwards (even if connections remain)."""
    name = f"assay_test_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


MARIADB_SERVER_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")
# Databases of one suite share a prefix, so parallel suites on one server keep theirs apart.
MARIADB_PREFIX = os.environ.get("TEST_MARIADB_PREFIX", "assay_test_")


@contextmanager
def throwaway_mariadb_database() -> Iterator[str]:
    """An empty MariaDB/MySQL database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"{MARIADB_PREFIX}{secrets.token_hex(6)}"
    admin = sa.create_engine(f"{MARIADB_SERVER_URL}/")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield f"{MARIADB_SERVER_URL}/{name}?charset=utf8mb4"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


def run_now(user, datastore, operation: str, config: dict | None = None, **kwargs) -> Run:
    """Launch like the web does, then execute in this process: the worker's code path."""
    run = run_launch(
        user=user, datastore=datastore, operation=operation, config=config or {}, **kwargs
    )
    execution.execute_run(run.pk)
    return Run.objects.get(pk=run.pk)


def sync_catalogue(user, datastore, include: list[str] | None = None) -> None:
    """A successful Sync of the datastore (``include``: the container kinds, else the default)."""
    run = run_now(user, datastore, "sync", {"include": list(include)} if include else None)
    assert run.status == "success", run.error


def execute_in_thread(run_id: int) -> threading.Thread:
    """Execute the Run in a started background thread, as a worker would, while the test
    acts on it (aborts it, say); the thread closes its own database connection."""

    def work():
        try:
            execution.execute_run(run_id)
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread
