"""Cron schedules (UTC): each due firing launches one Run triggered by the schedule."""

from datetime import datetime
from typing import Any

from croniter import CroniterError, croniter
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from datastores.models import Datastore
from runs.errors import InvalidConfig, InvalidInput, RunServiceError
from runs.models import Operation, Schedule


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
    from runs.services import run_launch

    now = now or timezone.now()
    fired = 0
    for schedule in Schedule.objects.filter(enabled=True, next_fire_at__lte=now).select_related(
        "datastore", "destination_datastore"
    ):
        upcoming = next_fire_time(schedule.cron, now)
        # Claim the firing first: two beat processes must not launch it twice.
        claimed = Schedule.objects.filter(
            Q(pk=schedule.pk, next_fire_at=schedule.next_fire_at)
        ).update(last_fired_at=now, next_fire_at=upcoming)
        if not claimed:
            continue
        try:
            run_launch(
                user=None,
                datastore=schedule.datastore,
                operation=schedule.operation,
                config=schedule.config,
                destination=schedule.destination_datastore,
                schedule=schedule,
            )
            fired += 1
        except RunServiceError:
            # A schedule whose config no longer validates (a container was removed) skips
            # this firing instead of stopping the others.
            continue
    return fired


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
    from runs.services import authorize_datastore, validate_config

    authorize_datastore(user, datastore)
    if destination is not None:
        authorize_datastore(user, destination)
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
