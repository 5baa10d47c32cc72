"""Executes one Run inside a Celery worker.

Guarantees (DESIGN §4):
* claim is a compare-and-set that writes a fresh ``worker_token``; a duplicate delivery of the
  same message finds nothing to claim and returns;
* every later write is fenced on that token and ``status='running'``, so a worker the reaper
  has written off cannot touch the Run again (``RunFenced``);
* each unit commits its results, its RunContainer row and the Run's progress in one
  transaction;
* abort is cooperative: a watchdog thread polls the flag, cancels the in-flight source query,
  and the main loop stops at the next checkpoint (between units and between batches).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.conf import settings
from django.db import (
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import F, Q
from django.db.models.functions import Coalesce, Now
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from datastores.sources import SourceError, describe_error
from notifications.events import run_finished
from runs import fairness
from runs.logs import append_log
from runs.models import ActorKind, LogLevel, Operation, Run, RunContainer, RunStatus
from runs.operations import get_operation
from runs.operations.base import OperationConfig, Unit, UnitFailed, UnitResult
from runs.operations.context import AbortRequested, RunContext, RunFenced

logger = logging.getLogger(__name__)


class Watchdog(threading.Thread):
    """Polls the abort flag while the main thread works; its companion thread heartbeats.

    Two threads because a heartbeat is a write: on SQLite it can queue for a second or more
    behind this worker's own unit transactions, and the abort poll (a read, which never waits)
    must not queue behind it.
    """

    def __init__(self, ctx: RunContext):
        super().__init__(name=f"run-{ctx.run_id}-watchdog", daemon=True)
        self.ctx = ctx
        self.stop_event = threading.Event()
        self.heart = threading.Thread(
            target=self._beat, name=f"run-{ctx.run_id}-heartbeat", daemon=True
        )

    def run(self) -> None:
        self.heart.start()
        poll = settings.RUN_ABORT_POLL_INTERVAL
        try:
            while not self.stop_event.wait(poll):
                try:
                    if not self._tick():
                        return
                except Exception:
                    # One failed poll (a locked SQLite file, a dropped connection) must not end
                    # the watch: the abort would then wait for the reaper.
                    logger.exception("watchdog of run %s: poll failed", self.ctx.run_id)
                    connection.close()
        finally:
            connection.close()

    def _beat(self) -> None:
        try:
            while not self.stop_event.wait(settings.RUN_HEARTBEAT_INTERVAL):
                if self.ctx.lost_event.is_set():
                    return
                try:
                    Run.objects.filter(self.ctx.owned()).update(
                        heartbeat_at=Now(), metrics=dict(self.ctx.metrics)
                    )
                except Exception:
                    # A failed beat must not end the heartbeats: the reaper would then declare
                    # a healthy Run lost.
                    logger.exception("heartbeat of run %s failed", self.ctx.run_id)
                    connection.close()
        finally:
            connection.close()

    def _tick(self) -> bool:
        """Look at the Run once; False when this worker no longer owns it."""
        row = (
            Run.objects.filter(pk=self.ctx.run_id)
            .values("status", "worker_token", "abort_requested_at")
            .first()
        )
        if row is None or row["status"] != RunStatus.RUNNING or (
            row["worker_token"] != self.ctx.token
        ):
            self.ctx.lost_event.set()
            self.ctx.cancel_queries()
            return False
        if row["abort_requested_at"] is not None:
            # Cancelled again at every look until the main thread stops: a cancel that lands
            # between two statements is a no-op (sqlite3 interrupt, PostgreSQL cancel), and the
            # statement starting just after it must not run on for minutes.
            self.ctx.abort_event.set()
            self.ctx.cancel_queries()
        return True

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=10)
        if self.heart.is_alive():
            self.heart.join(timeout=10)


def claim(run_id: int) -> uuid.UUID | None:
    """queued -> running (or an unclaimed Promote), with a fresh token. None: nothing to do."""
    token = uuid.uuid4()
    claimable = Q(status=RunStatus.QUEUED) | Q(
        status=RunStatus.RUNNING, worker_token=None, operation=Operation.PROMOTE
    )
    with transaction.atomic():
        # Fair sharing (runs.fairness): the datastore's row stays locked until the claim commits.
        if not fairness.may_start(run_id):
            return None
        # One statement: a second UPDATE after the claim could meet a Run the reaper or a user
        # already finalised. Promote starts in running at launch; Coalesce keeps its started_at.
        # Database time, taken after the lock: started_at follows the order of the claims.
        claimed = Run.objects.filter(claimable, pk=run_id).update(
            status=RunStatus.RUNNING,
            worker_token=token,
            heartbeat_at=Now(),
            started_at=Coalesce(F("started_at"), Now()),
        )
    return token if claimed else None


def execute_run(run_id: int) -> str:
    """Entry point of the Celery task. Returns a word for the worker log."""
    close_old_connections()
    bound_idle_transactions()
    token = claim(run_id)
    if token is None:
        return "not-claimed"
    run = Run.objects.select_related("datastore", "destination_datastore").get(pk=run_id)
    operation = get_operation(run.operation)
    try:
        config = operation.Config.model_validate(run.config)
    except ValidationError as exc:
        # Configs are validated at launch; this only happens to a Run stored by an older release.
        return _fail(RunContext(run, token, OperationConfig()), exc)
    ctx = RunContext(run, token, config)
    watchdog = Watchdog(ctx)
    watchdog.start()
    try:
        return _execute(ctx, operation)
    finally:
        watchdog.stop()
        ctx.close()
        try:
            fairness.dispatch_line(run.datastore_id)  # its slot is free: the next in line goes
        except Exception:
            # The beat's dispatch_waiting sends them a moment later.
            logger.exception("run %s: could not dispatch the next Runs in line", run_id)


def bound_idle_transactions() -> None:
    """PostgreSQL ends this worker's transaction if it sits idle (a frozen worker) past
    ``RUN_IDLE_IN_TRANSACTION_TIMEOUT``, releasing its Run's row lock; no transaction of a
    worker spans a source query, so a healthy worker is never idle inside one for long."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                [f"{int(settings.RUN_IDLE_IN_TRANSACTION_TIMEOUT * 1000)}ms"],
            )


def _execute(ctx: RunContext, operation) -> str:
    step = ctx.through_db_blips
    try:
        step(ctx.log,
             f"{ctx.run.get_operation_display()} started on datastore {ctx.datastore.name}.")
        units = step(_planned_units, ctx, operation)
        step(operation.begin, ctx, units)
        for unit in units:
            ctx.checkpoint()
            step(_process_unit, ctx, operation, unit)
        ctx.checkpoint()
        step(operation.finish, ctx)
        ctx.checkpoint()
        return step(_outcome, ctx, operation)
    except RunFenced:
        return "fenced"
    except AbortRequested:
        return ctx.through_db_blips(_finalise_abort, ctx)
    except Exception as exc:
        if ctx.lost_event.is_set():
            return "fenced"
        if ctx.abort_event.is_set():
            # The cancelled query surfaced as a driver error: it is the abort, not a failure.
            return ctx.through_db_blips(_finalise_abort, ctx)
        return ctx.through_db_blips(_fail, ctx, exc)


def _planned_units(ctx: RunContext, operation) -> list[Unit]:
    run = ctx.run
    if run.progress_total is not None:
        # Planned already (a Resume is launched with the original's unfinished units).
        rows = RunContainer.objects.filter(run_id=run.pk).exclude(status=RunStatus.SUCCESS)
        return [Unit(name=r.name, container_id=r.container_id) for r in rows.order_by("position")]
    units = operation.plan(ctx)
    with transaction.atomic():
        ctx.update_run(progress_total=len(units), progress_unit=operation.unit_label)
        if operation.tracks_units:
            RunContainer.objects.bulk_create(
                RunContainer(run_id=run.pk, name=u.name, container_id=u.container_id, position=i)
                for i, u in enumerate(units)
            )
    ctx.log(f"Planned {len(units)} {operation.unit_label.lower()}.")
    return units


def _process_unit(ctx: RunContext, operation, unit: Unit) -> None:
    if operation.tracks_units:
        with transaction.atomic():
            ctx.update_run(heartbeat_at=Now())
            RunContainer.objects.filter(run_id=ctx.run_id, name=unit.name).update(
                status=RunStatus.RUNNING, started_at=Now()
            )
    error = ""
    try:
        result = operation.process(ctx, unit)
    except (UnitFailed, SQLAlchemyError, SourceError) as exc:
        if ctx.stopping:
            raise
        error = describe_error(exc, ctx.datastore.source_url)
        result = UnitResult(metrics=getattr(exc, "metrics", {}))
    unit_metrics = result.metrics
    with transaction.atomic():
        # Progress is fenced on the token inside the same transaction as the unit's results
        # and row, so a unit is either fully recorded by its owner or not at all.
        if result.save is not None:
            result.save()
        ctx.add_metrics(unit_metrics)
        ctx.update_run(
            progress_done=F("progress_done") + 1,
            progress_failed=F("progress_failed") + (1 if error else 0),
            metrics=dict(ctx.metrics),
            heartbeat_at=Now(),
        )
        if operation.tracks_units:
            RunContainer.objects.filter(run_id=ctx.run_id, name=unit.name).update(
                status=RunStatus.FAILURE if error else RunStatus.SUCCESS,
                finished_at=Now(),
                metrics=unit_metrics,
                error=error,
            )
        if error:
            ctx.log(f"{unit.name}: {error}", level=LogLevel.WARNING, container=unit.name)
    if connection.vendor == "sqlite":
        # SQLite has no queue for its write lock: waiting writers poll with back-off, and a
        # worker that commits unit after unit would hold it almost all the time (an Abort
        # request was measured waiting up to 5 s). A short pause lets them in (~15 ms).
        time.sleep(settings.RUN_SQLITE_WRITER_PAUSE)


def _finalise(ctx: RunContext, status: str, message: str, **fields) -> str:
    """End the Run, compare-and-set on ownership and, for any ending but Aborted, on there being
    no accepted Abort: the row is locked first, so an Abort either commits before (this raises
    ``AbortRequested`` and the Run ends Aborted) or finds the Run ended (and is refused)."""
    where = ctx.owned()
    if status != RunStatus.ABORTED:
        where &= Q(abort_requested_at=None)
    with transaction.atomic():
        if not Run.objects.select_for_update().filter(where).exists():
            if status != RunStatus.ABORTED and Run.objects.filter(ctx.owned()).exists():
                raise AbortRequested
            raise RunFenced(ctx.run_id)
        level = LogLevel.ERROR if status == RunStatus.FAILURE else LogLevel.INFO
        append_log(ctx.run_id, message, level=level, token=ctx.token, final=True)
        # Units cut short end with the Run's own outcome.
        RunContainer.objects.filter(
            run_id=ctx.run_id, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
        ).exclude(started_at=None).update(status=status, finished_at=Now())
        ctx.update_run(
            status=status, finished_at=Now(), metrics=dict(ctx.metrics), **fields
        )
        run_finished(ctx.run_id, ctx.datastore.pk)
    return str(status)


def _finalise_abort(ctx: RunContext) -> str:
    run = Run.objects.filter(pk=ctx.run_id).values("abort_requested_by_id").first() or {}
    user_id = run.get("abort_requested_by_id")
    try:
        return _finalise(
            ctx,
            RunStatus.ABORTED,
            "Aborted; partial results are kept.",
            aborted_by_kind=ActorKind.USER if user_id else ActorKind.SYSTEM,
            aborted_by_user_id=user_id,
        )
    except RunFenced:
        # The reaper landed the abort first (grace period over): nothing left to do.
        return "fenced"


def _fail(ctx: RunContext, exc: Exception) -> str:
    if isinstance(exc, (SourceError, SQLAlchemyError)):
        cause = describe_error(exc, ctx.datastore.source_url)
    else:
        logger.exception("run %s failed", ctx.run_id)
        cause = f"Internal error ({type(exc).__name__}): {describe_error(exc, '')}"
    return _fail_with(ctx, cause)


def _fail_with(ctx: RunContext, cause: str) -> str:
    try:
        return _finalise(ctx, RunStatus.FAILURE, f"Run failed: {cause}", error=cause)
    except AbortRequested:
        return _finalise_abort(ctx)
    except RunFenced:
        return "fenced"


def _outcome(ctx: RunContext, operation) -> str:
    """Success, unless too many units failed (all of them, by default): then Failure."""
    row = Run.objects.filter(pk=ctx.run_id).values("progress_total", "progress_failed").get()
    total, failed = row["progress_total"] or 0, row["progress_failed"]
    if failed and failed >= total * settings.RUN_FAILED_UNITS_SHARE:
        label = operation.unit_label.lower()
        cause = (f"all {total} {label} failed" if failed == total
                 else f"{failed} of {total} {label} failed")
        return _fail_with(ctx, cause)
    return finish(ctx)


def finish(ctx: RunContext) -> str:
    """End the Run as a Success, or Aborted if an Abort was accepted first."""
    try:
        return _finalise(ctx, RunStatus.SUCCESS, "Finished.")
    except AbortRequested:
        return _finalise_abort(ctx)
