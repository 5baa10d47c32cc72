"""The audit log, append-only in the database: any UPDATE or DELETE of a row is rejected by a
trigger (SQLite and PostgreSQL), whoever issues it. (TRUNCATE, which needs the table owner's
rights, is left to the owner: test databases are emptied with it between tests.)"""

from django.db import migrations, models

SQLITE = [
    """
    CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_auditevent
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
    """
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_auditevent
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
    """,
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_no_update",
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
]

POSTGRESQL = [
    """
    CREATE FUNCTION assay_audit_is_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP
            USING ERRCODE = 'check_violation';
    END $$ LANGUAGE plpgsql
    """,
    """
    CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION assay_audit_is_append_only()
    """,
]
POSTGRESQL_DROP = [
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent",
    "DROP FUNCTION IF EXISTS assay_audit_is_append_only()",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)

    return apply


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(auto_now_add=True, db_index=True)),
                ('action', models.CharField(choices=[('team.created', 'Team created'), ('team.changed', 'Team changed'), ('team.deleted', 'Team deleted'), ('team.member_added', 'Member added'), ('team.member_removed', 'Member removed'), ('datastore.granted', 'Datastore granted'), ('datastore.revoked', 'Datastore revoked'), ('datastore.created', 'Datastore created'), ('datastore.changed', 'Datastore edited'), ('datastore.deleted', 'Datastore deleted'), ('user.created', 'User created'), ('user.role_changed', 'Role changed'), ('user.deactivated', 'User deactivated'), ('user.reactivated', 'User reactivated'), ('user.password_changed', 'Password changed'), ('token.created', 'Token created'), ('token.revoked', 'Token revoked'), ('schedule.created', 'Schedule created'), ('schedule.changed', 'Schedule changed'), ('schedule.disabled', 'Schedule disabled'), ('schedule.enabled', 'Schedule enabled'), ('schedule.deleted', 'Schedule deleted'), ('run.deleted', 'Run deleted')], max_length=32)),
                ('actor_id', models.BigIntegerField(blank=True, db_index=True, null=True)),
                ('actor_name', models.CharField(max_length=150)),
                ('object_type', models.CharField(max_length=32)),
                ('object_id', models.BigIntegerField(blank=True, null=True)),
                ('object_name', models.CharField(max_length=255)),
                ('before', models.JSONField(blank=True, null=True)),
                ('after', models.JSONField(blank=True, null=True)),
            ],
            options={
                'ordering': ['-id'],
                'indexes': [models.Index(fields=['action', '-id'], name='audit_action_id'), models.Index(fields=['object_type', 'object_id', '-id'], name='audit_object_id')],
                'constraints': [models.CheckConstraint(condition=models.Q(('action__in', ['team.created', 'team.changed', 'team.deleted', 'team.member_added', 'team.member_removed', 'datastore.granted', 'datastore.revoked', 'datastore.created', 'datastore.changed', 'datastore.deleted', 'user.created', 'user.role_changed', 'user.deactivated', 'user.reactivated', 'user.password_changed', 'token.created', 'token.revoked', 'schedule.created', 'schedule.changed', 'schedule.disabled', 'schedule.enabled', 'schedule.deleted', 'run.deleted'])), name='audit_action_valid')],
            },
        ),
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRESQL}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRESQL_DROP}),
        ),
    ]
