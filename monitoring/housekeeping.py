"""Housekeeping jobs say they passed: ``record_pass(name, actions)`` ends each of them.

Beat stamps its own start too (``BEAT_STARTED``): it sends a job first one interval after it
starts, so a job's freshness counts from its last pass or beat's start, whichever is later.
"""

from collections.abc import Mapping

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now

from monitoring.models import HousekeepingActionCount, HousekeepingPass

BEAT_STARTED = "celery.beat:started"


def record_pass(job: str, actions: Mapping[str, int] | int | None = None) -> None:
    """Stamp ``job``'s pass with the database's time and add its action counts to the totals.

    ``actions``: what the pass did, by name (an int counts as ``{"done": n}``).
    """
    if isinstance(actions, int):
        actions = {"done": actions}
    with transaction.atomic():
        updated = HousekeepingPass.objects.filter(job=job).update(
            last_pass_at=Now(), passes=F("passes") + 1
        )
        if not updated:
            HousekeepingPass.objects.update_or_create(
                job=job, defaults={"last_pass_at": Now(), "passes": 1}
            )
        for action, count in (actions or {}).items():
            if not count:
                continue
            if not HousekeepingActionCount.objects.filter(job=job, action=action).update(
                total=F("total") + count
            ):
                HousekeepingActionCount.objects.get_or_create(
                    job=job, action=action, defaults={"total": count}
                )
