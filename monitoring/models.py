"""What operators' probes read: which workers are alive, when housekeeping last passed.

Times are the database's clock (``Now()``), written and compared there, so machines whose
clocks disagree still agree on what is fresh.
"""

from django.db import models


class WorkerHeartbeat(models.Model):
    """One row per running Celery worker (its node name), refreshed while it lives."""

    hostname = models.CharField(max_length=255, primary_key=True)
    queues = models.CharField(max_length=500, blank=True, default="")  # comma-separated
    seen_at = models.DateTimeField()


class HousekeepingPass(models.Model):
    """The last completed pass of each housekeeping job (its Celery task name)."""

    job = models.CharField(max_length=100, primary_key=True)
    last_pass_at = models.DateTimeField()
    passes = models.PositiveBigIntegerField(default=0)


class HousekeepingActionCount(models.Model):
    """Running total of what housekeeping did ("lost", "requeued", "deleted", ...) per job."""

    job = models.CharField(max_length=100)
    action = models.CharField(max_length=50)
    total = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "action"], name="housekeeping_action_unique")
        ]
