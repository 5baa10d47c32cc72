"""The total of each quarter hour of the day (``q00`` .. ``q95``) on the rows of finished Runs
per UTC day, datastore and actor (runs.models.RunActorDayCount), as 0011 put them on the day
rows: a viewer whose midnight is not UTC's reads the "by" and schedule filters from the same
rows. The triggers are recreated to keep them, and the actor rows are recounted from the Runs
there are (one pass over runs_run).
"""

from django.db import migrations, models

from runs import rollup
from runs.migration_operations import AddFieldsToState
from runs.models import quarter_of_day_column


def drop_triggers(apps, schema_editor):
    # First: no trigger on runs_run may refer to runs_runactordaycount while its columns
    # change (SQLite refuses to drop them).
    for statement in rollup.drop_trigger_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def create_triggers_of_0011(apps, schema_editor):
    for statement in rollup.trigger_sql(schema_editor.connection.vendor, version=11):
        schema_editor.execute(statement, params=None)


def create_triggers_and_recount(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for statement in rollup.trigger_sql(vendor, version=12):
        schema_editor.execute(statement, params=None)
    with schema_editor.connection.cursor() as cursor:
        for statement in rollup.actor_refill_sql(vendor, version=12):
            cursor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0011_run_actor_and_quarter_of_day_counts'),
    ]

    operations = [
        migrations.RunPython(drop_triggers, create_triggers_of_0011),
        # As in 0011: SQLite adds these in place, where Django would rebuild the table for
        # each column.
        migrations.SeparateDatabaseAndState(
            state_operations=[AddFieldsToState("runactordaycount", [
                (quarter_of_day_column(index), models.IntegerField(default=0))
                for index in range(96)
            ])],
            database_operations=[
                migrations.RunSQL(
                    [f"ALTER TABLE runs_runactordaycount ADD COLUMN "
                     f"{quarter_of_day_column(index)} integer NOT NULL DEFAULT 0"
                     for index in range(96)],
                    [f"ALTER TABLE runs_runactordaycount DROP COLUMN "
                     f"{quarter_of_day_column(index)}" for index in range(96)],
                ),
            ],
        ),
        migrations.RunPython(create_triggers_and_recount, drop_triggers),
    ]
