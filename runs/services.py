"""Writes on Runs. Every user action goes through here, checked against ``runs.policy``."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Now
from pydantic import ValidationError

from accounts.models import User
from accounts.permissions import datastore_level
from assay.input_checks import find_nul
from audit.models import AuditAction
from audit.services import record
from datastores.models import Datastore
from notifications.events import run_finished
from runs import fairness
from runs.dbtime import db_now
from runs.errors import ActionNotAllowed, InvalidConfig, NotFound, PermissionDenied
from runs.locks import brief_lock_waits
from runs.logs import append_log
from runs.models import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ActorKind,
    LogLevel,
    Operation,
    Run,
    RunContainer,
    RunDeletion,
    RunStatus,
    Schedule,
    Via,
)
from runs.operations import get_operation
from runs.policy import (
    LAUNCHING_ACTIONS,
    Action,
    allowed_in_state,
    deleted_datastore,
    level_allows,
    nothing_to_resume,
)


# -- permission --------------------------------------------------------------------------------
def authorize_datastore(user: User, datastore: Datastore, *, what: str = "Datastore") -> None:
    """404 if the user cannot see the datastore, 403 if they see it but are not an editor.

    An unknown and an invisible datastore get the same answer: nothing of a datastore the
    user cannot see (its name, whether it exists) leaks.
    """
    level = datastore_level(user, datastore.pk)
    if level is None or datastore.deleted_at is not None:
        raise NotFound(f"{what} not found.")
    if not level_allows(level):
        raise PermissionDenied(f"You need the Editor permission on {datastore.name}.")


def authorize_action(user: User, run: Run, action: Action) -> None:
    level = datastore_level(user, run.datastore_id)
    if level is None:
        raise NotFound("Run not found.")
    if not level_allows(level):
        raise PermissionDenied(f"You need the Editor permission on {run.datastore.name}.")
    if not allowed_in_state(action, status=run.status, operation=run.operation):
        raise ActionNotAllowed(
            f"{action.label} is not available: Run #{run.pk} ({run.get_operation_display()}) "
            f"is {run.get_status_display()}."
        )
    if action == Action.RESUME and nothing_to_resume(run):
        raise ActionNotAllowed(f"Nothing to resume: every unit of Run #{run.pk} succeeded.")
    if action in LAUNCHING_ACTIONS and (gone := deleted_datastore(run)) is not None:
        raise ActionNotAllowed(
            f"{action.label} is not available: datastore {gone.name} was deleted."
        )


def refuse_destination_unless_promote(operation: str, given: bool) -> None:
    """A destination for anything but Promote is refused before it is even looked up, so the
    answer cannot tell an existing datastore from an unknown one."""
    if given and operation != Operation.PROMOTE:
        raise InvalidConfig(
            "Only Promote takes a destination datastore.",
            errors={"destination_datastore": ["Only Promote takes a destination datastore."]},
        )


# -- config ------------------------------------------------------------------------------------
def validate_config(
    *,
    operation: str,
    config: dict[str, Any] | None,
    datastore: Datastore,
    destination: Datastore | None = None,
) -> dict[str, Any]:
    """Validated, normalised config, or InvalidConfig with per-field messages."""
    if operation not in Operation.values:
        raise InvalidConfig(
            f"Unknown operation {operation!r}.", errors={"operation": ["Unknown operation."]}
        )
    if not isinstance(config, dict | None):
        raise InvalidConfig("config must be a JSON object.", errors={"config": ["Not an object."]})
    if nul := find_nul(config, "config"):
        raise InvalidConfig(
            f"Text may not contain NUL characters ({nul}).",
            errors={"config": ["Text may not contain NUL characters."]},
        )
    op = get_operation(operation)
    try:
        parsed = op.Config.model_validate(config or {})
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "config"
            errors.setdefault(key, []).append(err["msg"])
        summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items())
        raise InvalidConfig(f"Invalid configuration: {summary}", errors=errors) from None
    op.validate(parsed, datastore=datastore, destination=destination)
    return parsed.model_dump(mode="json")


# -- launch ------------------------------------------------------------------------------------
def run_launch(
    *,
    user: User,
    datastore: Datastore,
    operation: str,
    config: dict[str, Any] | None = None,
    via: str = Via.WEB,
    destination: Datastore | None = None,
    schedule: Schedule | None = None,
    resumed_from: Run | None = None,
    rerun_of: Run | None = None,
    units: list[RunContainer] | None = None,
) -> Run:
    """The one way a Run comes to be: Launch, Resume, Rerun and every schedule firing.

    Checked now, whoever asks: ``user`` (a schedule's owner for a firing) may edit the
    datastore and Promote's destination, the config validates, and the operation's own
    validation passes (the catalogue, the enrichment link may have changed since the Run or
    schedule it repeats). Nothing is created unless all of it holds. The Run is enqueued once
    the transaction commits.
    """
    refuse_destination_unless_promote(operation, destination is not None)
    authorize_datastore(user, datastore)
    if operation == Operation.PROMOTE:
        if destination is None:
            raise InvalidConfig(
                "Promote needs a destination datastore.",
                errors={"destination_datastore": ["This field is required."]},
            )
        authorize_datastore(user, destination, what="Destination datastore")
    clean = validate_config(
        operation=operation, config=config, datastore=datastore, destination=destination
    )
    return _create_run(
        operation=operation,
        datastore=datastore,
        destination=destination,
        config=clean,
        user=user,
        via=via,
        schedule=schedule,
        resumed_from=resumed_from,
        rerun_of=rerun_of,
        units=units,
    )


def _create_run(*, operation, datastore, destination, config, user, via, schedule=None,
                resumed_from=None, rerun_of=None, units: list[RunContainer] | None = None) -> Run:
    now = db_now()
    # Promote starts directly in running; External Scan is running while results arrive.
    starts_running = operation in (Operation.PROMOTE, Operation.EXTERNAL_SCAN)
    with transaction.atomic():
        run = Run.objects.create(
            operation=operation,
            status=RunStatus.RUNNING if starts_running else RunStatus.QUEUED,
            datastore=datastore,
            destination_datastore=destination,
            config=config,
            triggered_by_kind=ActorKind.SCHEDULE if schedule else ActorKind.USER,
            triggered_by_user=user if not schedule else None,
            triggered_via=Via.SCHEDULE if schedule else via,
            schedule=schedule,
            started_at=now if starts_running else None,
            heartbeat_at=now if starts_running else None,
            enqueued_at=now,
            send_count=0 if operation == Operation.EXTERNAL_SCAN else 1,
            resumed_from=resumed_from,
            rerun_of=rerun_of,
            progress_total=len(units) if units is not None else None,
            progress_unit=get_operation(operation).unit_label if units is not None else "",
        )
        if units:
            RunContainer.objects.bulk_create(
                RunContainer(run=run, name=u.name, container_id=u.container_id, position=i)
                for i, u in enumerate(units)
            )
        who = f"schedule {schedule.name} (as {user.display_name})" if schedule else (
            user.display_name
        )
        append_log(run.pk, f"Launched by {who} via {run.get_triggered_via_display()}.")
        if operation != Operation.EXTERNAL_SCAN:
            # A Run behind a full datastore waits in line without a message (runs.fairness);
            # a message the broker refuses leaves the Run in the outbox (runs.dispatch).
            transaction.on_commit(lambda: fairness.enqueue_or_wait(run.pk))
    return run


# -- actions -----------------------------------------------------------------------------------
def run_abort(*, run: Run, user: User) -> Run:
    """Queued: aborted at once. Running: flag it; the worker (or the reaper) lands it.

    The rule: once this returns, the Run ends Aborted by ``user``, whatever its worker is
    doing. The flag is a compare-and-set (the first Abort wins, a second changes nothing), and
    every other ending re-checks it in the same transaction (``execution._finalise``, the
    reaper). A Run that already ended is refused (409). Never waits behind its worker's row
    lock: ``Unavailable`` (503, nothing changed) instead.
    """
    authorize_action(user, run, Action.ABORT)
    who = {"abort_requested_at": Now(), "abort_requested_by": user}
    # Nobody owns a queued Run, nor a running one without a worker (External Scan, an
    # unclaimed Promote): those land on aborted immediately.
    unowned = Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, worker_token=None)
    with brief_lock_waits():
        if transition(
            run.pk,
            where=unowned,
            to=RunStatus.ABORTED,
            log=f"Aborted by {user.display_name}.",
            fields={**who, "aborted_by_kind": ActorKind.USER, "aborted_by_user": user},
        ):
            return _reload(run)
    with brief_lock_waits():
        # Flag and log line commit together: two Aborts racing leave exactly one line.
        flagged = Run.objects.filter(
            pk=run.pk, status=RunStatus.RUNNING, abort_requested_at=None
        ).update(**who)
        if flagged:
            append_log(run.pk, f"Abort requested by {user.display_name}.")
    run = _reload(run)
    # A worker may land this very abort before the reload: that is success, not a conflict.
    if not flagged and run.status not in ACTIVE_STATUSES:
        raise ActionNotAllowed(f"The Run already ended ({run.get_status_display()}).")
    return run


def unfinished_units(run: Run) -> list[RunContainer] | None:
    """The units a Resume of ``run`` would process (None: the Run did not plan units)."""
    if run.progress_total is None:
        return None
    return list(run.units.exclude(status=RunStatus.SUCCESS).order_by("position"))


def run_resume(*, run: Run, user: User, via: str = Via.WEB) -> Run:
    """A new Run over the units that did not succeed; the original is untouched.

    A Run is resumed once: resuming it again continues from the latest Run of its chain (the
    Resume of its Resume...). Two Resumes at the same moment make one Run (the database's
    ``run_resumed_once`` constraint); the other is refused.
    """
    authorize_action(user, run, Action.RESUME)
    latest = _latest_resume(run)
    if latest.pk != run.pk:
        if latest.is_active:
            raise ActionNotAllowed(
                f"Run #{run.pk} was already resumed as Run #{latest.pk}, which has not ended."
            )
        try:
            authorize_action(user, latest, Action.RESUME)
        except ActionNotAllowed as exc:
            raise ActionNotAllowed(
                f"Run #{run.pk} was already resumed as Run #{latest.pk} "
                f"({latest.get_status_display()}). {exc.detail}"
            ) from None
        run = latest
    units = unfinished_units(run)
    try:
        with transaction.atomic():
            return run_launch(
                user=user, datastore=run.datastore, operation=run.operation, config=run.config,
                via=via, destination=run.destination_datastore, resumed_from=run, units=units,
            )
    except IntegrityError:
        resumed = Run.objects.filter(resumed_from=run).values_list("pk", flat=True).first()
        raise ActionNotAllowed(f"Run #{run.pk} was just resumed as Run #{resumed}.") from None


def _latest_resume(run: Run) -> Run:
    """The last Run of ``run``'s chain of Resumes (``run`` itself when it was never resumed)."""
    while (following := Run.objects.filter(resumed_from=run).first()) is not None:
        run = following
    return run


def run_rerun(*, run: Run, user: User, via: str = Via.WEB) -> Run:
    """A new Run with the same configuration, every unit from scratch."""
    authorize_action(user, run, Action.RERUN)
    return run_launch(
        user=user, datastore=run.datastore, operation=run.operation, config=run.config,
        via=via, destination=run.destination_datastore, rerun_of=run,
    )


def run_delete(*, run: Run, user: User) -> None:
    """Remove the Run, its units and logs; keep what it produced; record who did it."""
    authorize_action(user, run, Action.DELETE)
    with transaction.atomic():
        deletion_record(run, deleted_by=user, deleted_by_name=user.username).save()
        deleted, _ = Run.objects.filter(pk=run.pk, status__in=TERMINAL_STATUSES).delete()
        if not deleted:
            transaction.set_rollback(True)
            raise NotFound("Run not found.")
        record(user, AuditAction.RUN_DELETED, run, {
            "operation": run.operation, "status": run.status, "datastore": run.datastore.name,
            "triggered_by": run.triggered_by_name,
            "created_at": run.created_at.isoformat(),
        }, None, object_name=f"#{run.pk} {run.get_operation_display()}")


def deletion_record(run: Run, *, deleted_by: User | None, deleted_by_name: str) -> RunDeletion:
    """The audit record of a Run about to be deleted (unsaved), with a snapshot of what it was."""
    return RunDeletion(
        run_id=run.pk,
        operation=run.operation,
        status=run.status,
        datastore_id=run.datastore_id,
        datastore_name=run.datastore.name,
        deleted_by=deleted_by,
        deleted_by_name=deleted_by_name,
        snapshot={
            "config": run.config,
            "metrics": run.metrics,
            "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "triggered_by": run.triggered_by_name,
        },
    )


# -- bulk ------------------------------------------------------------------------------------
class BulkOutcome:
    """What happened to one Run of a bulk action, as the result summary words it."""

    ABORTED = "aborted"
    STOPPING = "stopping (abort requested, the worker lands it)"
    DELETED = "deleted"
    ALREADY_ENDED = "already finished"
    STILL_ACTIVE = "still active (not deleted)"
    NOT_ALLOWED = "not allowed (Editor permission needed)"
    GONE = "no longer there"


BULK_ACTIONS = (Action.ABORT, Action.DELETE)


def run_bulk(*, user: User, action: Action, runs: list[Run]) -> dict[str, list[int]]:
    """Abort or Delete each Run through the same service as one at a time (so the policy
    table decides for each), and say per Run what happened: {outcome: [run ids]}."""
    if action not in BULK_ACTIONS:
        raise ActionNotAllowed(f"{action.label} is not offered for several Runs at once.")
    outcomes: dict[str, list[int]] = {}
    for run in runs:
        outcomes.setdefault(_bulk_one(user, action, run), []).append(run.pk)
    order = list(vars(BulkOutcome).values())  # the summary reads in the class's order
    return {key: sorted(outcomes[key]) for key in sorted(outcomes, key=order.index)}


def _bulk_one(user: User, action: Action, run: Run) -> str:
    try:
        if action == Action.ABORT:
            ended = run_abort(run=run, user=user).status == RunStatus.ABORTED
            return BulkOutcome.ABORTED if ended else BulkOutcome.STOPPING
        run_delete(run=run, user=user)
        return BulkOutcome.DELETED
    except PermissionDenied:
        return BulkOutcome.NOT_ALLOWED
    except NotFound:
        return BulkOutcome.GONE
    except ActionNotAllowed:
        return BulkOutcome.ALREADY_ENDED if action == Action.ABORT else BulkOutcome.STILL_ACTIVE


# -- transitions -------------------------------------------------------------------------------
def transition(
    run_id: int,
    *,
    where: Q,
    to: str,
    fields: dict[str, Any] | None = None,
    log: str | None = None,
    level: str = LogLevel.INFO,
    skip_locked: bool = False,
) -> bool:
    """Compare-and-set ``status`` to a terminal ``to`` where ``where`` still holds.

    The log line must be written before the row turns terminal (a trigger forbids log lines on
    terminal Runs), so the row is locked first and both commit together, or neither does.
    Only an active row can match, whatever ``where`` says: a terminal Run is never overwritten
    (the trigger would reject the UPDATE; a lost race must report False, not raise).
    """
    where &= Q(status__in=ACTIVE_STATUSES)
    with transaction.atomic():
        # Housekeeping skips a row its worker holds (about to commit, or frozen: nobody queues
        # behind a frozen one); a user's request waits at most RUN_LOCK_TIMEOUT for it.
        locked = Run.objects.select_for_update(skip_locked=skip_locked)
        if not locked.filter(where, pk=run_id).exists():
            return False
        if log is not None:
            append_log(run_id, log, level=level, final=True)
        extra = {"finished_at": Now()} if to in TERMINAL_STATUSES else {}
        if to in TERMINAL_STATUSES:
            # Units the Run had started end with its outcome, as when its worker ends it;
            # otherwise a Run the reaper ended would show a unit "running" for ever. Before the
            # Run's own UPDATE: the units of a terminal Run are frozen (trigger).
            RunContainer.objects.filter(
                run_id=run_id, status__in=ACTIVE_STATUSES
            ).exclude(started_at=None).update(status=to, finished_at=Now())
        won = Run.objects.filter(where, pk=run_id).update(status=to, **extra, **(fields or {}))
        if not won:
            transaction.set_rollback(True)
        elif to in TERMINAL_STATUSES:
            run_finished(run_id)
        return bool(won)


def _reload(run: Run) -> Run:
    return Run.objects.for_list().get(pk=run.pk)
