from django.db import models
from django.db.models import Q


class AuditAction(models.TextChoices):
    TEAM_CREATED = "team.created", "Team created"
    TEAM_CHANGED = "team.changed", "Team changed"
    TEAM_DELETED = "team.deleted", "Team deleted"
    MEMBER_ADDED = "team.member_added", "Member added"
    MEMBER_REMOVED = "team.member_removed", "Member removed"
    DATASTORE_GRANTED = "datastore.granted", "Datastore granted"
    DATASTORE_REVOKED = "datastore.revoked", "Datastore revoked"
    DATASTORE_CREATED = "datastore.created", "Datastore created"
    DATASTORE_CHANGED = "datastore.changed", "Datastore edited"
    DATASTORE_DELETED = "datastore.deleted", "Datastore deleted"
    USER_CREATED = "user.created", "User created"
    USER_ROLE_CHANGED = "user.role_changed", "Role changed"
    USER_DEACTIVATED = "user.deactivated", "User deactivated"
    USER_REACTIVATED = "user.reactivated", "User reactivated"
    USER_PASSWORD_CHANGED = "user.password_changed", "Password changed"
    TOKEN_CREATED = "token.created", "Token created"
    TOKEN_REVOKED = "token.revoked", "Token revoked"
    SCHEDULE_CREATED = "schedule.created", "Schedule created"
    SCHEDULE_CHANGED = "schedule.changed", "Schedule changed"
    SCHEDULE_DISABLED = "schedule.disabled", "Schedule disabled"
    SCHEDULE_ENABLED = "schedule.enabled", "Schedule enabled"
    SCHEDULE_DELETED = "schedule.deleted", "Schedule deleted"
    RUN_DELETED = "run.deleted", "Run deleted"
    RUNS_EXPIRED = "run.expired", "Runs deleted by retention"


class AuditEvent(models.Model):
    """One permission-relevant or destructive change: who, when, on what, before and after.

    Append-only: a database trigger rejects every UPDATE and DELETE (migration 0001). So the
    actor and the object are plain ids with their names copied, never foreign keys: deleting
    a user or a team must not have to touch (or cascade into) the record of what they did.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)  # None: the system
    actor_name = models.CharField(max_length=150)
    object_type = models.CharField(max_length=32)
    object_id = models.BigIntegerField(null=True, blank=True)
    object_name = models.CharField(max_length=255)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(action__in=AuditAction.values), name="audit_action_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["action", "-id"], name="audit_action_id"),
            models.Index(fields=["object_type", "object_id", "-id"], name="audit_object_id"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.object_name}"
