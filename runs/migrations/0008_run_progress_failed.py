"""Runs count their failed units (``progress_failed``): the outcome (too many failed units is
a Failure) and what a Resume has left to do.

SQLite rebuilds runs_run to add a NOT NULL column, which fails while other tables' triggers
name it: every trigger of 0002 and 0005 is dropped first and created again after.
"""

import importlib

from django.db import migrations, models

liveness = importlib.import_module("runs.migrations.0005_run_liveness")


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0007_run_active_datastore_index'),
    ]

    operations = [
        migrations.RunPython(
            liveness._run({"sqlite": liveness.SQLITE_DROP + liveness.SQLITE_DROP_0002}),
            liveness._run({"sqlite": liveness.SQLITE}),
            elidable=False,
        ),
        migrations.AddField(
            model_name='run',
            name='progress_failed',
            field=models.PositiveIntegerField(db_default=0),
        ),
        migrations.RunPython(
            liveness._run({"sqlite": liveness.SQLITE}),
            liveness._run({"sqlite": liveness.SQLITE_DROP + liveness.SQLITE_DROP_0002}),
            elidable=False,
        ),
    ]
