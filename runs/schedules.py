"""Cron schedules (UTC): each due firing launches one Run triggered by the schedule."""

import logging
from datetime import datetime
from typing import Any

from croniter import CroniterError, croniter
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit.models import AuditAction
from audit.services import record
from datastores.models import Datastore
from runs.errors import InvalidConfig, InvalidInput, NotFound, PermissionDenied, RunServiceError
from runs.locks import limited_lock_waits
from runs.models import FiringOutcome, Operation, Schedule, ScheduleFiring, Via
from runs.services import authorize_datastore, run_launch

logger = logging.getLogger(__name__)


class InvalidCron(ValueError):
    pass


def next_fire_time(cron: str, after: datetime) -> datetime:
    # croniter also reads a 6th (seconds) and 7th (year) field; a schedule firing every
    # second is never what a user meant, so only 5 fields (or an @macro) are cron here.
    fields = cron.split()
    if not (len(fields) == 5 or (len(fields) == 1 and cron.startswith("@"))) or (
        not croniter.is_valid(cron)
    ):
        raise InvalidCron(f"{cron!r} is not a valid cron expression (5 fields, UTC).")
    try:
        return croniter(cron, after).get_next(datetime)
    except CroniterError:  # e.g. "0 0 31 2 *": valid syntax, but no such date ever comes
        raise InvalidCron(f"{cron!r} never fires.") from None


def fire_due(now: datetime | None = None) -> int:
    """Fire every due schedule once; return how many launched a Run.

    Each firing is claimed (a compare-and-set on ``next_fire_at``: two beat processes never
    fire it twice) in the same transaction as its Run and its record, so a crash loses
    neither. Whatever one schedule does (refused, invalid, a bug) is recorded and never stops
    the others.
    """
    with limited_lock_waits():
        return _fire_due(now)


def _fire_due(now: datetime | None) -> int:
    now = now or timezone.now()
    fired = 0
    due = list(
        Schedule.objects.filter(enabled=True, next_fire_at__lte=now)
        .select_related("datastore", "destination_datastore", "created_by")
        .order_by("next_fire_at", "pk")
    )
    for schedule in due:
        try:
            outcome = _fire(schedule, now)
        except Exception as exc:  # a bug must not cost the other schedules their firing
            logger.exception("schedule %s: firing failed", schedule.pk)
            try:
                outcome = _record_failure(
                    schedule, now, FiringOutcome.FAILED,
                    f"Internal error ({type(exc).__name__}).",
                )
            except Exception:
                logger.exception("schedule %s: the failed firing could not be recorded",
                                 schedule.pk)
                continue
        if outcome == FiringOutcome.LAUNCHED:
            fired += 1
    return fired


def _fire(schedule: Schedule, now: datetime) -> str | None:
    try:
        with transaction.atomic():
            if not _claim(schedule, now):
                return None  # another beat process fired it
            refusal = owner_refusal(schedule)
            if refusal:
                raise ScheduleRefused(refusal)
            run = run_launch(
                user=schedule.created_by,
                datastore=schedule.datastore,
                operation=schedule.operation,
                config=schedule.config,
                destination=schedule.destination_datastore,
                schedule=schedule,
                via=Via.SCHEDULE,
            )
            ScheduleFiring.objects.create(
                schedule=schedule, due_at=schedule.next_fire_at, run_id=run.pk,
                outcome=FiringOutcome.LAUNCHED,
            )
        return FiringOutcome.LAUNCHED
    except ScheduleRefused as exc:
        return _record_failure(schedule, now, FiringOutcome.SKIPPED, str(exc), disable=True)
    except (NotFound, PermissionDenied) as exc:
        # The owner may launch on the datastore but not on Promote's destination any more.
        reason = f"Its owner may no longer launch it: {exc.detail}"
        return _record_failure(schedule, now, FiringOutcome.SKIPPED, reason, disable=True)
    except RunServiceError as exc:
        # The configuration no longer validates (a container was removed, the enrichment
        # link is gone): this firing fails, the schedule stays on for when it is fixed.
        return _record_failure(schedule, now, FiringOutcome.FAILED, exc.detail)


class ScheduleRefused(Exception):
    pass


def owner_refusal(schedule: Schedule) -> str:
    """Why the schedule's owner may not launch it now ("" when they may)."""
    owner = schedule.created_by
    if owner is None:
        return "Its owner was deleted."
    if not owner.is_active:
        return f"Its owner {owner.username} is deactivated."
    try:
        authorize_datastore(owner, schedule.datastore)
    except (NotFound, PermissionDenied):
        return f"Its owner {owner.username} is no longer an Editor of {schedule.datastore.name}."
    return ""


def _claim(schedule: Schedule, now: datetime, **fields) -> bool:
    try:
        upcoming = next_fire_time(schedule.cron, now)
    except InvalidCron:  # validated when made; should it ever fail, fire no more
        upcoming = None
    return bool(
        Schedule.objects.filter(pk=schedule.pk, next_fire_at=schedule.next_fire_at).update(
            last_fired_at=now, next_fire_at=upcoming, **fields
        )
    )


def _record_failure(
    schedule: Schedule, now: datetime, outcome: str, reason: str, *, disable: bool = False
) -> str | None:
    """Claim the firing again (the launch rolled back) and record why it launched nothing."""
    fields = {"enabled": False, "disabled_reason": reason[:500]} if disable else {}
    with transaction.atomic():
        if not _claim(schedule, now, **fields):
            return None
        ScheduleFiring.objects.create(
            schedule=schedule, due_at=schedule.next_fire_at, outcome=outcome, reason=reason
        )
        if disable:
            record(None, AuditAction.SCHEDULE_DISABLED, schedule, {"enabled": True},
                   {"enabled": False, "reason": reason[:500]})
    if disable:
        logger.warning("schedule %s disabled: %s", schedule.pk, reason)
    return outcome


# -- writes ------------------------------------------------------------------------------------
def schedule_state(schedule: Schedule) -> dict[str, Any]:
    """What an audit record keeps of a schedule."""
    return {
        "name": schedule.name,
        "datastore": schedule.datastore.name,
        "destination": schedule.destination_datastore.name
        if schedule.destination_datastore_id else None,
        "operation": schedule.operation,
        "cron": schedule.cron,
        "config": schedule.config,
        "enabled": schedule.enabled,
        "owner": schedule.created_by.username if schedule.created_by_id else None,
    }


def _validated(
    *, user: User, name: str, datastore: Datastore, operation: str, cron: str,
    config: dict[str, Any] | None, destination: Datastore | None,
) -> tuple[str, str, dict[str, Any], datetime]:
    """(name, cron, clean config, next firing) when ``user`` may schedule this; or raises."""
    from runs.services import (
        authorize_datastore,
        refuse_destination_unless_promote,
        validate_config,
    )

    refuse_destination_unless_promote(operation, destination is not None)
    authorize_datastore(user, datastore)
    if destination is not None:
        authorize_datastore(user, destination, what="Destination datastore")
    name = name.strip()
    if not name:
        raise InvalidInput("A schedule needs a name.", errors={"name": ["This field is required."]})
    if operation == Operation.EXTERNAL_SCAN:
        raise InvalidConfig(
            "External Scans cannot be scheduled: their results come from outside Assay.",
            errors={"operation": ["External Scans cannot be scheduled."]},
        )
    if operation == Operation.PROMOTE and destination is None:
        raise InvalidConfig(
            "Promote needs a destination datastore.",
            errors={"destination_datastore": ["This field is required."]},
        )
    try:
        next_at = next_fire_time(cron, timezone.now())
    except InvalidCron as exc:
        raise InvalidConfig(str(exc), errors={"cron": [str(exc)]}) from None
    clean = validate_config(
        operation=operation, config=config, datastore=datastore, destination=destination
    )
    return name, cron.strip(), clean, next_at


def schedule_create(
    *,
    user: User,
    name: str,
    datastore: Datastore,
    operation: str,
    cron: str,
    config: dict[str, Any] | None = None,
    destination: Datastore | None = None,
    enabled: bool = True,
) -> Schedule:
    """A schedule needs what launching needs: editor on the datastore (and destination)."""
    name, cron, clean, next_at = _validated(
        user=user, name=name, datastore=datastore, operation=operation, cron=cron,
        config=config, destination=destination,
    )
    with transaction.atomic():
        schedule = Schedule.objects.create(
            name=name,
            datastore=datastore,
            destination_datastore=destination,
            operation=operation,
            cron=cron,
            config=clean,
            enabled=enabled,
            created_by=user,
            next_fire_at=next_at if enabled else None,
        )
        record(user, AuditAction.SCHEDULE_CREATED, schedule, None, schedule_state(schedule))
    return schedule


def schedule_update(
    *,
    schedule: Schedule,
    user: User,
    name: str,
    operation: str,
    cron: str,
    config: dict[str, Any] | None = None,
    destination: Datastore | None = None,
) -> Schedule:
    """Change what and when; the editor becomes the owner (firings launch as them from now)."""
    from runs.services import authorize_datastore

    authorize_datastore(user, schedule.datastore)
    before = schedule_state(schedule)
    name, cron, clean, next_at = _validated(
        user=user, name=name, datastore=schedule.datastore, operation=operation, cron=cron,
        config=config, destination=destination,
    )
    schedule.name, schedule.operation, schedule.cron, schedule.config = (
        name, operation, cron, clean
    )
    schedule.destination_datastore = destination
    schedule.created_by = user
    if schedule.enabled:
        schedule.next_fire_at = next_at
    with transaction.atomic():
        schedule.save()
        record(user, AuditAction.SCHEDULE_CHANGED, schedule, before, schedule_state(schedule))
    return schedule


def schedule_set_enabled(*, schedule: Schedule, user: User, enabled: bool) -> Schedule:
    """Enabling re-checks the owner's right to launch (who may have lost it since) and
    counts the next firing from now: missed firings are not caught up."""
    from runs.services import authorize_datastore

    authorize_datastore(user, schedule.datastore)
    if enabled == schedule.enabled:
        return schedule
    if enabled:
        refusal = owner_refusal(schedule)
        if refusal:
            raise InvalidInput(
                f"{refusal} Edit the schedule to make it yours, then enable it."
            )
        schedule.next_fire_at = next_fire_time(schedule.cron, timezone.now())
        schedule.disabled_reason = ""
    else:
        schedule.next_fire_at = None
    schedule.enabled = enabled
    with transaction.atomic():
        schedule.save(update_fields=["enabled", "next_fire_at", "disabled_reason"])
        record(user, AuditAction.SCHEDULE_ENABLED if enabled else AuditAction.SCHEDULE_DISABLED,
               schedule, {"enabled": not enabled}, {"enabled": enabled})
    return schedule


def recheck_owner_schedules(owner: User) -> list[Schedule]:
    """Disable, now, the enabled schedules ``owner`` may no longer launch; return them.

    Called when the owner loses rights (deactivation), so a schedule shows why it stopped at
    once instead of at its next firing.
    """
    disabled = []
    schedules = Schedule.objects.filter(created_by=owner, enabled=True).select_related(
        "datastore", "destination_datastore", "created_by"
    )
    for schedule in schedules:
        reason = owner_refusal(schedule)
        if reason and Schedule.objects.filter(pk=schedule.pk, enabled=True).update(
            enabled=False, disabled_reason=reason[:500], next_fire_at=None
        ):
            schedule.enabled, schedule.disabled_reason = False, reason[:500]
            disabled.append(schedule)
    return disabled


def schedule_delete(*, schedule: Schedule, user: User) -> None:
    """Runs it launched stay; they keep pointing at its id (no FK constraint)."""
    from runs.services import authorize_datastore

    authorize_datastore(user, schedule.datastore)
    with transaction.atomic():
        record(user, AuditAction.SCHEDULE_DELETED, schedule, schedule_state(schedule), None)
        schedule.delete()
