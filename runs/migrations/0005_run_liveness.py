"""Liveness and truthful outcomes: a Run is resumed at most once, re-sends are counted, and the
database guard extends from the Run row to everything a finished Run recorded.

Triggers added (SQLite and PostgreSQL), rejecting with an integrity error:

* INSERT of a runs_run row that is already terminal (a finished Run cannot be forged by
  deleting it and inserting it again as ``success``);
* INSERT, UPDATE or DELETE of a log line or a per-container row of a terminal Run; the only
  change allowed is the container link turning NULL when the container itself is deleted
  (the row keeps its name);
* deleting a Run deletes its log lines and per-container rows (AFTER DELETE on runs_run), so
  the Delete action and datastore deletion still work: by then the Run is gone, and with it
  the guard on its rows.

Django's SQLite schema editor rebuilds a table to add a NOT NULL column or alter a foreign key,
and a rebuild of runs_run fails while other tables' triggers name it (and drops its own): on
SQLite every trigger is dropped first and all of them (0002's too) are created again at the end.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models



TERMINAL = "('success', 'failure', 'aborted')"
UNIT_COLUMNS = ("id", "run_id", "name", "status", "metrics", "error", "started_at",
                "finished_at", "position")


def _parent_terminal(ref: str) -> str:
    return f"(SELECT status FROM runs_run WHERE id = {ref}.run_id) IN {TERMINAL}"


def _unit_unchanged(same: str) -> str:
    """Every column but container_id unchanged, and container_id now NULL."""
    columns = " AND ".join(f"NEW.{c} {same} OLD.{c}" for c in UNIT_COLUMNS)
    return f"(NEW.container_id IS NULL AND {columns})"


SQLITE = [
    # Re-created: 0002's trigger on the log table is lost when that table is rebuilt.
    f"""
    CREATE TRIGGER IF NOT EXISTS run_terminal_is_immutable BEFORE UPDATE ON runs_run
    FOR EACH ROW WHEN OLD.status IN {TERMINAL}
    BEGIN SELECT RAISE(ABORT, 'run is terminal and immutable'); END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS run_log_frozen_when_terminal BEFORE INSERT ON runs_runlogentry
    FOR EACH ROW WHEN {_parent_terminal("NEW")}
    BEGIN SELECT RAISE(ABORT, 'run is terminal: its log is frozen'); END
    """,
    f"""
    CREATE TRIGGER run_not_born_terminal BEFORE INSERT ON runs_run
    FOR EACH ROW WHEN NEW.status IN {TERMINAL}
    BEGIN SELECT RAISE(ABORT, 'run is terminal and immutable: it cannot be inserted'); END
    """,
    f"""
    CREATE TRIGGER run_log_line_immutable BEFORE UPDATE ON runs_runlogentry
    FOR EACH ROW WHEN {_parent_terminal("OLD")} OR {_parent_terminal("NEW")}
    BEGIN SELECT RAISE(ABORT, 'run is terminal: its log is frozen'); END
    """,
    f"""
    CREATE TRIGGER run_log_line_kept BEFORE DELETE ON runs_runlogentry
    FOR EACH ROW WHEN {_parent_terminal("OLD")}
    BEGIN SELECT RAISE(ABORT, 'run is terminal: its log is frozen'); END
    """,
    f"""
    CREATE TRIGGER run_unit_frozen_when_terminal BEFORE INSERT ON runs_runcontainer
    FOR EACH ROW WHEN {_parent_terminal("NEW")}
    BEGIN SELECT RAISE(ABORT, 'run is terminal: its units are frozen'); END
    """,
    f"""
    CREATE TRIGGER run_unit_immutable BEFORE UPDATE ON runs_runcontainer
    FOR EACH ROW WHEN ({_parent_terminal("OLD")} OR {_parent_terminal("NEW")})
        AND NOT {_unit_unchanged("IS")}
    BEGIN SELECT RAISE(ABORT, 'run is terminal: its units are frozen'); END
    """,
    f"""
    CREATE TRIGGER run_unit_kept BEFORE DELETE ON runs_runcontainer
    FOR EACH ROW WHEN {_parent_terminal("OLD")}
    BEGIN SELECT RAISE(ABORT, 'run is terminal: its units are frozen'); END
    """,
    """
    CREATE TRIGGER run_deleted_with_its_rows AFTER DELETE ON runs_run
    FOR EACH ROW BEGIN
        DELETE FROM runs_runlogentry WHERE run_id = OLD.id;
        DELETE FROM runs_runcontainer WHERE run_id = OLD.id;
    END
    """,
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS {name}"
    for name in ("run_not_born_terminal", "run_log_line_immutable", "run_log_line_kept",
                 "run_unit_frozen_when_terminal", "run_unit_immutable", "run_unit_kept",
                 "run_deleted_with_its_rows")
]
SQLITE_DROP_0002 = [
    "DROP TRIGGER IF EXISTS run_terminal_is_immutable",
    "DROP TRIGGER IF EXISTS run_log_frozen_when_terminal",
]


def _pg_guard(name: str, table: str, when: str, message: str) -> list[str]:
    """A BEFORE trigger on ``table`` raising check_violation when ``when`` holds."""
    return [
        f"""
        CREATE OR REPLACE FUNCTION assay_{name}() RETURNS trigger AS $$
        BEGIN
            IF {when} THEN
                RAISE EXCEPTION 'run {message}' USING ERRCODE = 'check_violation';
            END IF;
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END $$ LANGUAGE plpgsql
        """,
        f"DROP TRIGGER IF EXISTS {name} ON {table}",
    ]


def _pg_trigger(name: str, table: str, events: str) -> str:
    return (f"CREATE TRIGGER {name} BEFORE {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION assay_{name}()")


_OLD_OR_NEW = (f"(TG_OP <> 'INSERT' AND {_parent_terminal('OLD')}) "
               f"OR (TG_OP <> 'DELETE' AND {_parent_terminal('NEW')})")
POSTGRESQL = [
    f"""
    CREATE OR REPLACE FUNCTION assay_run_not_born_terminal() RETURNS trigger AS $$
    BEGIN
        IF NEW.status IN {TERMINAL} THEN
            RAISE EXCEPTION 'run % is terminal and immutable: it cannot be inserted', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    _pg_trigger("run_not_born_terminal", "runs_run", "INSERT"),
    # Log lines: no UPDATE or DELETE once the Run is terminal (INSERT: 0002's trigger).
    *_pg_guard("run_log_line_immutable", "runs_runlogentry", _OLD_OR_NEW,
               "is terminal: its log is frozen"),
    _pg_trigger("run_log_line_immutable", "runs_runlogentry", "UPDATE OR DELETE"),
    *_pg_guard(
        "run_unit_immutable", "runs_runcontainer",
        f"({_OLD_OR_NEW}) AND NOT (TG_OP = 'UPDATE' AND "
        f"{_unit_unchanged('IS NOT DISTINCT FROM')})",
        "is terminal: its units are frozen",
    ),
    _pg_trigger("run_unit_immutable", "runs_runcontainer", "INSERT OR UPDATE OR DELETE"),
    """
    CREATE OR REPLACE FUNCTION assay_run_deleted_with_its_rows() RETURNS trigger AS $$
    BEGIN
        DELETE FROM runs_runlogentry WHERE run_id = OLD.id;
        DELETE FROM runs_runcontainer WHERE run_id = OLD.id;
        RETURN OLD;
    END $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER run_deleted_with_its_rows AFTER DELETE ON runs_run "
    "FOR EACH ROW EXECUTE FUNCTION assay_run_deleted_with_its_rows()",
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS run_not_born_terminal ON runs_run",
    "DROP FUNCTION IF EXISTS assay_run_not_born_terminal()",
    "DROP TRIGGER IF EXISTS run_log_line_immutable ON runs_runlogentry",
    "DROP FUNCTION IF EXISTS assay_run_log_line_immutable()",
    "DROP TRIGGER IF EXISTS run_unit_immutable ON runs_runcontainer",
    "DROP FUNCTION IF EXISTS assay_run_unit_immutable()",
    "DROP TRIGGER IF EXISTS run_deleted_with_its_rows ON runs_run",
    "DROP FUNCTION IF EXISTS assay_run_deleted_with_its_rows()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return apply


class Migration(migrations.Migration):

    dependencies = [
        ('datastores', '0003_checks_anomalies'),
        ('runs', '0004_schedule_firings'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # SQLite: no trigger may name runs_run while Django rebuilds it (created again below).
        migrations.RunPython(
            _run({"sqlite": SQLITE_DROP_0002}), _run({"sqlite": SQLITE[:2]}), elidable=False,
        ),
        migrations.AddField(
            model_name='run',
            name='send_count',
            field=models.PositiveSmallIntegerField(db_default=0),
        ),
        migrations.AlterField(
            model_name='runcontainer',
            name='run',
            field=models.ForeignKey(on_delete=django.db.models.deletion.DO_NOTHING, related_name='units', to='runs.run'),
        ),
        migrations.AlterField(
            model_name='runlogentry',
            name='run',
            field=models.ForeignKey(on_delete=django.db.models.deletion.DO_NOTHING, related_name='log_entries', to='runs.run'),
        ),
        migrations.AddConstraint(
            model_name='run',
            constraint=models.UniqueConstraint(condition=models.Q(('resumed_from__isnull', False)), fields=('resumed_from',), name='run_resumed_once'),
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRESQL}),
            _run({"sqlite": SQLITE_DROP + SQLITE_DROP_0002, "postgresql": POSTGRESQL_DROP}),
        ),
    ]
