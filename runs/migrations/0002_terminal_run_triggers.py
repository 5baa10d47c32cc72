"""A terminal Run never changes again: enforced by the database, not only by Python.

Rejected with an integrity error: any UPDATE of a runs_run row whose status is terminal, and
any INSERT of a log line for such a Run. DELETE stays possible (the Delete action).
"""

from django.db import migrations

TERMINAL = "('success', 'failure', 'aborted')"

SQLITE = [
    f"""
    CREATE TRIGGER run_terminal_is_immutable BEFORE UPDATE ON runs_run
    FOR EACH ROW WHEN OLD.status IN {TERMINAL}
    BEGIN SELECT RAISE(ABORT, 'run is terminal and immutable'); END
    """,
    f"""
    CREATE TRIGGER run_log_frozen_when_terminal BEFORE INSERT ON runs_runlogentry
    FOR EACH ROW WHEN (SELECT status FROM runs_run WHERE id = NEW.run_id) IN {TERMINAL}
    BEGIN SELECT RAISE(ABORT, 'run is terminal: its log is frozen'); END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS run_terminal_is_immutable",
    "DROP TRIGGER IF EXISTS run_log_frozen_when_terminal",
]

POSTGRESQL = [
    f"""
    CREATE FUNCTION assay_run_terminal_is_immutable() RETURNS trigger AS $$
    BEGIN
        IF OLD.status IN {TERMINAL} THEN
            RAISE EXCEPTION 'run % is terminal and immutable', OLD.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER run_terminal_is_immutable BEFORE UPDATE ON runs_run
    FOR EACH ROW EXECUTE FUNCTION assay_run_terminal_is_immutable()
    """,
    f"""
    CREATE FUNCTION assay_run_log_frozen_when_terminal() RETURNS trigger AS $$
    BEGIN
        IF (SELECT status FROM runs_run WHERE id = NEW.run_id) IN {TERMINAL} THEN
            RAISE EXCEPTION 'run % is terminal: its log is frozen', NEW.run_id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER run_log_frozen_when_terminal BEFORE INSERT ON runs_runlogentry
    FOR EACH ROW EXECUTE FUNCTION assay_run_log_frozen_when_terminal()
    """,
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS run_terminal_is_immutable ON runs_run",
    "DROP FUNCTION IF EXISTS assay_run_terminal_is_immutable()",
    "DROP TRIGGER IF EXISTS run_log_frozen_when_terminal ON runs_runlogentry",
    "DROP FUNCTION IF EXISTS assay_run_log_frozen_when_terminal()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return apply


class Migration(migrations.Migration):
    dependencies = [("runs", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRESQL}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRESQL_DROP}),
        )
    ]
