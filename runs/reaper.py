"""Housekeeping of active Runs, on its own queue and worker (``housekeeping`` in the Procfile).

Every decision is a compare-and-set that re-checks its own condition, so a worker that
heartbeats or finishes in the meantime wins. Rows locked by a worker are skipped, never waited
for (``transition`` locks with SKIP LOCKED; other statements give up after
``RUN_LOCK_TIMEOUT``): a frozen worker costs its own Run a pass, not the housekeeping.
"""

import logging

from django.conf import settings
from django.db import OperationalError, connection
from django.db.models import Q

from runs.dbtime import ago, db_now
from runs.dispatch import BrokerDown, queue_length, resend
from runs.locks import limited_lock_waits
from runs.models import ActorKind, LogLevel, Operation, Run, RunStatus
from runs.services import transition

logger = logging.getLogger(__name__)


def reap() -> dict[str, int]:
    with limited_lock_waits():
        # A heartbeat missing while the database itself was down says nothing about the
        # worker: nobody is declared lost until the database has been up for a whole stale
        # period.
        judge = _database_up_for(settings.RUN_HEARTBEAT_STALE_AFTER)
        # Aborts first: a user's pending Abort of a Run whose worker is lost ends it Aborted
        # by that user, not "worker lost".
        return {
            "aborted": _finalise_unacknowledged_aborts(stale_heartbeats=judge),
            "lost": _fail_lost_workers() if judge else 0,
            "requeued": _resend_lost_messages(),
            "timed_out": _end_overdue_runs(),
        }


def _end(run_ids, **kwargs) -> int:
    count = 0
    for run_id in run_ids:
        try:
            count += transition(run_id, skip_locked=True, **kwargs)
        except OperationalError:
            logger.warning("run %s: skipped this pass (locked or unreachable)", run_id)
    return count


def _database_up_for(seconds: float) -> bool:
    if connection.vendor != "postgresql":
        return True  # SQLite lives in the workers' own processes: no restart to wait out
    with connection.cursor() as cursor:
        cursor.execute("SELECT now() - pg_postmaster_start_time() > make_interval(secs => %s)",
                       [seconds])
        return cursor.fetchone()[0]


def _fail_lost_workers() -> int:
    stale = ago(settings.RUN_HEARTBEAT_STALE_AFTER)
    lost = Q(status=RunStatus.RUNNING, worker_token__isnull=False, heartbeat_at__lt=stale,
             abort_requested_at=None)
    return _end(
        Run.objects.filter(lost).values_list("pk", flat=True),
        where=lost,
        to=RunStatus.FAILURE,
        fields={"error": "Worker lost: no heartbeat", "worker_token": None},
        log=f"Run failed: worker lost (no heartbeat for "
        f"{settings.RUN_HEARTBEAT_STALE_AFTER:g} s).",
        level=LogLevel.ERROR,
    )


def _finalise_unacknowledged_aborts(*, stale_heartbeats: bool = True) -> int:
    # Past the grace period, or at once when the worker stopped heartbeating: nobody is left to
    # acknowledge the abort.
    late = Q(abort_requested_at__lt=ago(settings.RUN_ABORT_GRACE))
    if stale_heartbeats:
        late |= Q(heartbeat_at__lt=ago(settings.RUN_HEARTBEAT_STALE_AFTER))
    pending = Q(status=RunStatus.RUNNING, abort_requested_at__isnull=False) & late
    count = 0
    for run_id, user_id in Run.objects.filter(pending).values_list("pk", "abort_requested_by"):
        count += _end(
            [run_id],
            where=pending,
            to=RunStatus.ABORTED,
            fields={
                "aborted_by_kind": ActorKind.USER if user_id else ActorKind.SYSTEM,
                "aborted_by_user_id": user_id,
                "worker_token": None,
            },
            log="Aborted: the worker did not acknowledge the abort in time.",
            level=LogLevel.WARNING,
        )
    return count


def _end_overdue_runs() -> int:
    """External Scans whose client stopped sending results, and Runs past their operation's
    time limit (a worker stuck in a call nothing can cancel heartbeats for ever): Failure."""
    abandoned = Q(status=RunStatus.RUNNING, operation=Operation.EXTERNAL_SCAN,
                  heartbeat_at__lt=ago(settings.RUN_EXTERNAL_SCAN_ABANDON_AFTER))
    count = _end(
        Run.objects.filter(abandoned).values_list("pk", flat=True),
        where=abandoned,
        to=RunStatus.FAILURE,
        fields={"error": "Abandoned by its client", "worker_token": None},
        log=f"Run failed: abandoned by its client (no results for "
        f"{settings.RUN_EXTERNAL_SCAN_ABANDON_AFTER:g} s).",
        level=LogLevel.ERROR,
    )
    for operation, limit in settings.RUN_TIME_LIMITS.items():
        overdue = Q(status=RunStatus.RUNNING, operation=operation,
                    started_at__lt=ago(limit)) & ~Q(operation=Operation.EXTERNAL_SCAN)
        count += _end(
            Run.objects.filter(overdue).values_list("pk", flat=True),
            where=overdue,
            to=RunStatus.FAILURE,
            fields={"error": f"Time limit exceeded ({limit:g} s)", "worker_token": None},
            log=f"Run failed: time limit exceeded ({limit:g} s for {operation}).",
            level=LogLevel.ERROR,
        )
    return count


def _resend_lost_messages() -> int:
    """Send the messages of unclaimed Runs again, sparingly.

    * A Run whose message was never sent (the broker was down at launch): sent now.
    * A Run sent but not claimed for ``RUN_REQUEUE_AFTER`` (doubling with each send): sent
      again only when the broker holds fewer messages than Runs wait for a worker, i.e. some
      message is plausibly lost; oldest first, no more than are missing.

    Sending twice is safe (the claim lets one delivery through); it is only wasted work.
    """
    unclaimed = Q(worker_token=None) & (
        Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, operation=Operation.PROMOTE)
    )
    candidates = list(
        Run.objects.filter(unclaimed)
        # enqueued_at NULL: waiting in its datastore's line without a message (runs.fairness).
        .filter(Q(send_count=0, enqueued_at__isnull=False)
                | Q(enqueued_at__lt=ago(settings.RUN_REQUEUE_AFTER)))
        .order_by("pk")
        .values_list("pk", "send_count", "enqueued_at")[:settings.RUN_REQUEUE_BATCH]
    )
    if not candidates:
        return 0
    now = db_now()
    unsent = [pk for pk, sends, _ in candidates if sends == 0]
    due = [
        pk for pk, sends, sent_at in candidates
        if sends and (now - sent_at).total_seconds()
        >= settings.RUN_REQUEUE_AFTER * 2 ** min(sends - 1, 6)
    ]
    budget = 0
    if due:
        waiting = queue_length()
        if waiting is not None:
            in_flight = Run.objects.filter(unclaimed, send_count__gt=0, enqueued_at__isnull=False)
            budget = max(in_flight.count() - waiting, 0)
    count = 0
    for run_id in unsent + due[:budget]:
        # A worker may claim it (or a user abort it) between the read and the send: the claim
        # then refuses the extra delivery.
        try:
            count += resend(run_id)
        except BrokerDown:
            break  # the rest waits for the next pass
        except OperationalError:
            logger.warning("run %s: skipped this pass (locked or unreachable)", run_id)
    return count
