"""Beat-driven housekeeping of active Runs. Every decision is a compare-and-set that re-checks
its own condition, so a worker that heartbeats or finishes in the meantime wins."""

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Now

from runs.dbtime import ago
from runs.models import ActorKind, LogLevel, Run, RunStatus
from runs.services import enqueue, transition


def reap() -> dict[str, int]:
    return {
        "lost": _fail_lost_workers(),
        "aborted": _finalise_unacknowledged_aborts(),
        "requeued": _requeue_lost_messages(),
    }


def _fail_lost_workers() -> int:
    stale = ago(settings.RUN_HEARTBEAT_STALE_AFTER)
    lost = Q(status=RunStatus.RUNNING, worker_token__isnull=False, heartbeat_at__lt=stale)
    count = 0
    for run_id in Run.objects.filter(lost).values_list("pk", flat=True):
        if transition(
            run_id,
            where=lost,
            to=RunStatus.FAILURE,
            fields={"error": "Worker lost: no heartbeat", "worker_token": None},
            log=f"Run failed: worker lost (no heartbeat for "
            f"{settings.RUN_HEARTBEAT_STALE_AFTER:g} s).",
            level=LogLevel.ERROR,
        ):
            count += 1
    return count


def _finalise_unacknowledged_aborts() -> int:
    grace = ago(settings.RUN_ABORT_GRACE)
    pending = Q(status=RunStatus.RUNNING, abort_requested_at__lt=grace)
    count = 0
    for run_id, user_id in Run.objects.filter(pending).values_list("pk", "abort_requested_by"):
        if transition(
            run_id,
            where=pending,
            to=RunStatus.ABORTED,
            fields={
                "aborted_by_kind": ActorKind.USER if user_id else ActorKind.SYSTEM,
                "aborted_by_user_id": user_id,
                "worker_token": None,
            },
            log="Aborted: the worker did not acknowledge the abort in time.",
            level=LogLevel.WARNING,
        ):
            count += 1
    return count


def _requeue_lost_messages() -> int:
    """A Run nobody claimed for a while has probably lost its message: send it again.

    Sending twice is safe: the claim lets one delivery through and the others exit.
    """
    cutoff = ago(settings.RUN_REQUEUE_AFTER)
    unclaimed = Q(worker_token=None, enqueued_at__lt=cutoff) & (
        Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, operation="promote")
    )
    ids = list(Run.objects.filter(unclaimed).values_list("pk", flat=True)[:500])
    count = 0
    for run_id in ids:
        # A worker may claim it (or a user abort it) between the read and this update.
        if Run.objects.filter(unclaimed, pk=run_id).update(enqueued_at=Now()):
            enqueue(run_id)
            count += 1
    return count
