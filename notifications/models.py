"""Notification rules per datastore, and the log of every delivery attempt."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Event(models.TextChoices):
    FAILURE = "failure", "Failure"
    WARNINGS = "warnings", "Success with warnings"
    ABORTED = "aborted", "Aborted"
    NEW_ANOMALIES = "new_anomalies", "New anomalies"


class PayloadFormat(models.TextChoices):
    ASSAY = "assay", "Assay JSON (signed)"
    SLACK = "slack", "Slack-compatible (signed)"


class NotificationRule(models.Model):
    """When a Run of ``datastore`` ends with one of ``events``: POST to the webhook and/or mail."""

    datastore = models.ForeignKey(
        "datastores.Datastore", on_delete=models.CASCADE, related_name="notification_rules"
    )
    name = models.CharField(max_length=100)
    events = models.JSONField(default=list)  # Event values
    webhook_url = models.URLField(max_length=500, blank=True, default="")
    # The HMAC key, encrypted like datastore credentials; written by editors, never shown.
    webhook_secret_encrypted = models.TextField(blank=True, default="")
    payload_format = models.CharField(
        max_length=16, choices=PayloadFormat.choices, default=PayloadFormat.ASSAY
    )
    email_to = models.CharField(max_length=500, blank=True, default="")  # comma-separated
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(webhook_url="") | ~Q(email_to=""), name="rule_has_a_channel"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def event_labels(self) -> list[str]:
        return [Event(e).label for e in self.events if e in Event.values]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One notification of one Run through one channel, tried until delivered or given up."""

    rule = models.ForeignKey(NotificationRule, on_delete=models.CASCADE, related_name="deliveries")
    run_id = models.BigIntegerField()  # plain id: the Run may be deleted
    events = models.JSONField(default=list)
    channel = models.CharField(max_length=16)  # "webhook" or "email"
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "run_id", "channel"],
                                    name="one_delivery_per_rule_run_channel"),
        ]


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(auto_now_add=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "number"]
