"""Retention: finished Runs older than their operation's retention are deleted, a batch at a time.

What a Run produced stays (anomalies, check evaluations, catalogue: they keep the Run's id as a
plain number); what only describes it goes with it (its units and log lines). Each deleted Run
leaves a deletion record naming retention as the deleter, as a user's Delete does, and each
batch one audit event listing the Runs it deleted.

Each batch is one short transaction over at most ``RUN_RETENTION_BATCH_SIZE`` Runs, so the
Activity page and the workers' writes never wait long behind it; a pass stops after
``RUN_RETENTION_MAX_PER_PASS`` Runs and the next pass carries on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from audit.models import AuditAction
from audit.services import record
from runs.models import TERMINAL_STATUSES, Operation, Run, RunDeletion
from runs.services import deletion_record

DELETED_BY = "retention"


@dataclass(frozen=True)
class Policy:
    """Days each operation's Runs are kept (None: for ever)."""

    default_days: int | None
    by_operation: dict[str, int]

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(settings.RUN_RETENTION_DAYS, dict(settings.RUN_RETENTION_DAYS_BY_OPERATION))

    def days(self, operation: str) -> int | None:
        return self.by_operation.get(operation, self.default_days) or None


def expired(policy: Policy, now: datetime) -> dict[str, QuerySet[Run]]:
    """Per operation, its finished Runs launched before its retention cutoff.

    The launch time (indexed) decides, and the Run must have finished: an active Run is never
    deleted, however old.
    """
    candidates = {}
    for operation in Operation.values:
        days = policy.days(operation)
        if days:
            candidates[operation] = Run.objects.filter(
                operation=operation,
                status__in=TERMINAL_STATUSES,
                created_at__lt=now - timedelta(days=days),
            )
    return candidates


def count_expired(policy: Policy, now: datetime) -> dict[str, int]:
    counts = {}
    for operation, runs in expired(policy, now).items():
        if n := runs.order_by().aggregate(n=Count("id"))["n"]:
            counts[operation] = n
    return counts


def delete_batches(policy: Policy, now: datetime, *, limit: int | None = None) -> Iterator[int]:
    """Delete expired Runs one batch (one transaction) at a time; yield each batch's size."""
    batch_size = settings.RUN_RETENTION_BATCH_SIZE
    left = limit
    for runs in expired(policy, now).values():
        while left is None or left > 0:
            size = batch_size if left is None else min(batch_size, left)
            deleted = _delete_batch(runs, size)
            if not deleted:
                break
            if left is not None:
                left -= deleted
            yield deleted


def _delete_batch(runs: QuerySet[Run], size: int) -> int:
    with transaction.atomic():
        batch = list(
            runs.select_related("datastore", "triggered_by_user", "schedule").order_by("pk")[:size]
        )
        if not batch:
            return 0
        RunDeletion.objects.bulk_create(
            deletion_record(run, deleted_by=None, deleted_by_name=DELETED_BY) for run in batch
        )
        # Terminal rows are immutable, so nothing turned them active since the read.
        ids = [run.pk for run in batch]
        Run.objects.filter(pk__in=ids).delete()
        operation = batch[0].get_operation_display()
        record(None, AuditAction.RUNS_EXPIRED, None, {
            "operation": batch[0].operation, "runs": ids,
            "oldest_created_at": min(run.created_at for run in batch).isoformat(),
        }, None, object_type="run", object_name=f"{len(ids)} {operation} Runs")
    return len(batch)


def apply_retention(now: datetime | None = None) -> dict[str, int]:
    """One housekeeping pass: at most RUN_RETENTION_MAX_PER_PASS Runs."""
    policy = Policy.from_settings()
    deleted = sum(delete_batches(policy, now or timezone.now(),
                                 limit=settings.RUN_RETENTION_MAX_PER_PASS))
    return {"deleted": deleted}
