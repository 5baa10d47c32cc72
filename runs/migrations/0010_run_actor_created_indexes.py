from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, where runs_run is big and busy: writes go on
    while the index builds. Elsewhere (SQLite) a plain CREATE INDEX."""

    @staticmethod
    def _way(schema_editor):
        postgres = schema_editor.connection.vendor == "postgresql"
        return AddIndexConcurrently if postgres else migrations.AddIndex

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        way = self._way(schema_editor)
        way.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        way = self._way(schema_editor)
        way.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ('datastores', '0005_datastore_run_and_connection_limits'),
        ('runs', '0009_run_counts'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name='run',
            index=models.Index(condition=models.Q(('triggered_by_user__isnull', False)), fields=['triggered_by_user', 'created_at', 'datastore', 'status', 'operation', 'triggered_by_kind', 'id'], name='run_by_user_created'),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name='run',
            index=models.Index(condition=models.Q(('schedule__isnull', False)), fields=['schedule', 'created_at', 'datastore', 'status', 'operation', 'triggered_by_kind', 'id'], name='run_by_schedule_created'),
        ),
    ]
