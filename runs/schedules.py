"""Cron schedules (UTC): each due firing launches one Run triggered by the schedule."""

from datetime import datetime

from croniter import croniter
from django.db.models import Q
from django.utils import timezone

from runs.errors import RunServiceError
from runs.models import Schedule


class InvalidCron(ValueError):
    pass


def next_fire_time(cron: str, after: datetime) -> datetime:
    if not croniter.is_valid(cron):
        raise InvalidCron(f"{cron!r} is not a valid cron expression (5 fields, UTC).")
    return croniter(cron, after).get_next(datetime)


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
