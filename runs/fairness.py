"""Fair sharing of workers: each datastore runs at most ``Datastore.run_limit`` Runs at once.

Every queued Run has a Celery message, and any worker may take it; the claim asks ``may_start``
first. A Run may start when

* fewer than ``run_limit`` Runs of its datastore are running,
* counting the Runs queued before it on that datastore as ahead of it (first come, first
  served: a later Run never overtakes one waiting for the same datastore), and
* no running Run of the datastore writes what it writes (``_WRITES``): two Syncs would collide
  creating the same catalogue rows, two Scans of one container could store its high-water mark
  backwards.

The check and the claim run in one transaction that first locks the datastore's row
(``SELECT ... FOR NO KEY UPDATE`` on PostgreSQL; SQLite's IMMEDIATE transactions take the
one write lock), so workers on any number of machines never see the same free slot twice.

A Run turned away gives its message back: its ``enqueued_at`` is cleared, meaning "in line,
no message in flight", which the reaper's resend of lost messages leaves alone. When a Run of
the datastore ends, ``dispatch_line`` sends the messages of the Runs now at the head of the
line; the beat's ``dispatch_waiting`` does the same for every datastore, in case a Run ended
elsewhere (a user's abort, the reaper). So a burst of 300 Runs on one datastore costs the
workers nothing: beyond the limit, a new Run is put in line without a message at all
(``enqueue_or_wait``), and the Runs of other datastores go by.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, Func, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Now

from assay.compiled import rows_for_ids
from datastores.models import Datastore
from runs.dispatch import send_or_keep as enqueue
from runs.models import Operation, Run, RunStatus

# What a Run writes besides its own rows: Runs writing the same thing on overlapping
# containers never run at once.
_WRITES: dict[str, str] = {
    Operation.SYNC: "catalogue",  # containers and fields
    Operation.PROFILE: "catalogue",  # field profiles
    Operation.SCAN: "check results",  # anomalies and the high-water mark
}
# Operations that always touch every container of the datastore.
_WHOLE_DATASTORE = frozenset({Operation.SYNC})

# Runs holding a slot: running with a worker. A Promote waits for its worker in status running
# without a token; an External Scan runs without any worker.
_OCCUPYING = Q(status=RunStatus.RUNNING, worker_token__isnull=False)
_IN_LINE = Q(status=RunStatus.QUEUED)


def may_start(run_id: int) -> bool:
    """Whether the queued Run may be claimed now; call inside the claim's transaction.

    Locks the datastore's row until that transaction ends. A Run turned away leaves the
    worker's hands (see the module's docstring).
    """
    run = (
        Run.objects.filter(pk=run_id, status=RunStatus.QUEUED)
        .only("datastore_id", "operation", "config")
        .first()
    )
    if run is None:
        return True  # nothing to claim: the claim's compare-and-set says so
    limit = _lock_datastore(run.datastore_id)
    running = list(
        Run.objects.filter(_OCCUPYING, datastore_id=run.datastore_id).only("operation", "config")
    )
    ahead = Run.objects.filter(_IN_LINE, datastore_id=run.datastore_id, pk__lt=run_id).count()
    if len(running) + ahead < limit and not any(_conflict(run, other) for other in running):
        return True
    Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(enqueued_at=None)
    return False


def enqueue_or_wait(run_id: int) -> None:
    """Send a new Run's message, or leave it waiting in line when its turn cannot come yet.

    Then a burst of Runs on one datastore costs the workers nothing until their turn, and
    the messages of other datastores' Runs are not queued behind theirs.
    """
    with transaction.atomic():
        run = Run.objects.filter(_IN_LINE, pk=run_id).values("datastore_id").first()
        if run is None:  # a Promote (it starts running), or already claimed or aborted
            send = True
        else:
            datastore_id = run["datastore_id"]
            limit = _lock_datastore(datastore_id)
            occupying = Run.objects.filter(_OCCUPYING, datastore_id=datastore_id).count()
            ahead = Run.objects.filter(_IN_LINE, datastore_id=datastore_id, pk__lt=run_id).count()
            send = occupying + ahead < limit
            if not send:
                Run.objects.filter(_IN_LINE, pk=run_id).update(enqueued_at=None)
    if send:
        enqueue(run_id)


def dispatch_line(datastore_id: int) -> int:
    """Send the messages of the Runs at the head of the datastore's line that have none."""
    with transaction.atomic():
        limit = _lock_datastore(datastore_id)
        free = limit - Run.objects.filter(_OCCUPYING, datastore_id=datastore_id).count()
        if free <= 0:
            return 0
        head = list(
            Run.objects.filter(_IN_LINE, datastore_id=datastore_id)
            .order_by("pk")
            .values_list("pk", "enqueued_at")[:free]
        )
        waiting = [pk for pk, enqueued_at in head if enqueued_at is None]
        Run.objects.filter(_IN_LINE, pk__in=waiting).update(enqueued_at=Now())
        for run_id in waiting:
            transaction.on_commit(lambda run_id=run_id: enqueue(run_id))
    return len(waiting)


def dispatch_waiting() -> int:
    """``dispatch_line`` for every datastore with a Run waiting in line (beat housekeeping)."""
    datastores = (
        Run.objects.filter(_IN_LINE, enqueued_at__isnull=True)
        .values_list("datastore_id", flat=True)
        .distinct()
    )
    return sum(dispatch_line(datastore_id) for datastore_id in list(datastores))


def wait_reasons(run_ids: Iterable[int]) -> dict[int, str]:
    """Why each of these Runs still queued waits: "2nd in line for Demo warehouse", "waiting
    for a worker: 14 Runs ahead". One query for any number of Runs; none for no ids."""
    run_ids = list(run_ids)
    if not run_ids:
        return {}
    reasons = {}
    for pk, in_line_ahead, occupying, queue_ahead, name, limit in rows_for_ids(
        _waiting, run_ids
    ):
        if occupying + in_line_ahead >= limit:
            # The place among the Runs waiting for a slot: 1st goes when one frees.
            place = occupying + in_line_ahead - limit + 1
            reasons[pk] = f"{_ordinal(place)} in line for {name}"
        elif queue_ahead:
            runs_word = "Run" if queue_ahead == 1 else "Runs"
            reasons[pk] = f"waiting for a worker: {queue_ahead} {runs_word} ahead"
        else:
            reasons[pk] = "waiting for a worker"
    return reasons


def _waiting(run_ids: list[int]):
    """Where each of these queued Runs stands (compiled once per count: ``assay.compiled``)."""
    return (
        Run.objects.filter(_IN_LINE, pk__in=run_ids)
        .annotate(
            in_line_ahead=_count(
                Run.objects.filter(
                    _IN_LINE, datastore_id=OuterRef("datastore_id"), pk__lt=OuterRef("pk")
                )
            ),
            occupying=_count(
                Run.objects.filter(_OCCUPYING, datastore_id=OuterRef("datastore_id"))
            ),
            # Runs whose messages go before this one's: queued earlier, with a message.
            queue_ahead=_count(
                Run.objects.filter(_IN_LINE, enqueued_at__isnull=False, pk__lt=OuterRef("pk"))
            ),
        )
        .values_list(
            "pk", "in_line_ahead", "occupying", "queue_ahead",
            "datastore__name", "datastore__run_limit",
        )
    )  # fmt: skip


def attach_wait_reasons(runs: Iterable[Run]) -> None:
    """Set ``run.wait_reason`` ("" unless queued) on each Run, in one query."""
    runs = list(runs)
    reasons = wait_reasons(run.pk for run in runs if run.status == RunStatus.QUEUED)
    for run in runs:
        run.wait_reason = reasons.get(run.pk, "")


def _count(queryset) -> Coalesce:
    # COUNT as a plain function: an aggregate of the whole subquery, no GROUP BY.
    counted = queryset.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _lock_datastore(datastore_id: int) -> int:
    """Lock the datastore's row for this transaction; returns its run limit."""
    return (
        # NO KEY UPDATE: claims queue on it, but the foreign-key checks of rows written
        # meanwhile (KEY SHARE) do not, so it never deadlocks with a Run ending.
        Datastore.all_objects.select_for_update(no_key=True)
        .filter(pk=datastore_id)
        .values_list("run_limit", flat=True)
        .get()
    )


def _conflict(run: Run, other: Run) -> bool:
    writes = _WRITES.get(run.operation)
    if writes is None or writes != _WRITES.get(other.operation):
        return False
    mine, theirs = _containers(run), _containers(other)
    return mine is None or theirs is None or bool(mine & theirs)


def _containers(run: Run) -> set[str] | None:
    """The containers a Run writes; None: all of them."""
    if run.operation in _WHOLE_DATASTORE:
        return None
    names = (run.config or {}).get("containers")
    return None if names is None else set(names)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
