"""Cron schedules (UTC): each due firing launches one Run triggered by the schedule."""

import logging
from datetime import datetime
from typing import Any

from croniter import CroniterError, croniter
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from datastores.models import Datastore
from runs.errors import InvalidConfig, InvalidInput, NotFound, PermissionDenied, RunServiceError
from runs.locks import limit_session_lock_waits
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
    limit_session_lock_waits()
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
        logger.warning("schedule %s disabled: %s", schedule.pk, reason)
    return outcome


# -- writes ------------------------------------------------------------------------------------
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
    now = timezone.now()
    try:
        next_at = next_fire_time(cron, now)
    except InvalidCron as exc:
        raise InvalidConfig(str(exc), errors={"cron": [str(exc)]}) from None
    clean = validate_config(
        operation=operation, config=config, datastore=datastore, destination=destination
    )
    return Schedule.objects.create(
        name=name,
        datastore=datastore,
        destination_datastore=destination,
        operation=operation,
        cron=cron.strip(),
        config=clean,
        enabled=enabled,
        created_by=user,
        next_fire_at=next_at if enabled else None,
    )


def schedule_delete(*, schedule: Schedule, user: User) -> None:
    """Runs it launched stay; they keep pointing at its id (no FK constraint)."""
    from runs.services import authorize_datastore

    authorize_datastore(user, schedule.datastore)
    schedule.delete()
