"""Writes on anomalies: what Scans record, and what users do with it.

Scans (and External Scans) call ``record_results`` inside their unit's transaction: one open
anomaly per failing check, updated by later Scans instead of twinned (a partial unique index
makes it an invariant), one evaluation row per check, and a status-history event for every
anomaly found or resolved. Users acknowledge, resolve and reopen through
``anomaly_transition`` / ``anomalies_bulk_transition``, checked against ``runs.policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from accounts.permissions import datastore_level, datastore_levels
from datastores.models import (
    OPEN_ANOMALY_STATUSES,
    Anomaly,
    AnomalyEvent,
    AnomalyStatus,
    Check,
    CheckEvaluation,
    Container,
)
from datastores.quality import CheckSpec, describe
from runs.errors import ActionNotAllowed, InvalidInput, NotFound, PermissionDenied
from runs.policy import ANOMALY_TRANSITIONS, AnomalyAction

COMMENT_MAX = 1000
BULK_MAX = 500
# Keys of one entry in a rolled-up anomaly's ``examples``.
ROLLUP_ENTRY_KEYS = frozenset({"check_id", "check", "type", "field", "failed_count"})


def check_spec(check: Check) -> CheckSpec:
    """The engine's view of a stored check, keyed by the check's id."""
    return CheckSpec(
        key=str(check.pk), type=check.type, field=check.field_name or None, params=check.params
    )


# -- what Scans record -------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One check's result in one Run: a failed count (with examples), or an error."""

    check: Check
    failed_count: int | None
    examples: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class Rollup:
    """Too many failing checks on one container: one anomaly summarising them."""

    failed_count: int
    entries: list[dict[str, Any]]
    description: str


def record_results(
    *,
    container: Container,
    run_id: int,
    outcomes: Sequence[Outcome],
    rollup: Rollup | None = None,
    resolve_passing: bool = False,
    now=None,
) -> dict[str, int]:
    """Store a container's check results; call inside the unit's transaction.

    Failing checks (unless ``rollup`` summarises them) get their open anomaly updated or a new
    one; with ``resolve_passing`` the open anomalies of checks that passed are resolved. The
    container row is locked first, so two Runs scanning the same container record one after
    the other instead of both adding "the" open anomaly. Returns found/updated/resolved counts.
    """
    now = now or timezone.now()
    Container.objects.select_for_update().filter(pk=container.pk).values_list("pk").first()
    failing = [o for o in outcomes if o.failed_count and rollup is None]
    anomalies, counts = _upsert(container, run_id, failing, now)
    if rollup is not None:
        anomaly, created = _upsert_rollup(container, run_id, rollup, now)
        counts["found" if created else "updated"] += 1
        for outcome in outcomes:
            if outcome.failed_count:
                anomalies[outcome.check.pk] = anomaly
    counts["resolved"] = 0
    if resolve_passing:
        passing = {o.check.pk for o in outcomes if o.failed_count == 0}
        counts["resolved"] = resolve_passed(container, passing, run_id=run_id, now=now)
    CheckEvaluation.objects.bulk_create(
        CheckEvaluation(
            check_rule=outcome.check,
            run_id=run_id,
            failed_count=outcome.failed_count,
            error=outcome.error[:2000],
            anomaly=anomalies.get(outcome.check.pk) if outcome.failed_count else None,
            evaluated_at=now,
        )
        for outcome in outcomes
    )
    return counts


def _upsert(
    container: Container, run_id: int, failing: list[Outcome], now
) -> tuple[dict[int, Anomaly], dict[str, int]]:
    counts = {"found": 0, "updated": 0}
    existing = {
        a.check_rule_id: a
        for a in Anomaly.objects.filter(
            check_rule_id__in=[o.check.pk for o in failing], status__in=OPEN_ANOMALY_STATUSES
        )
    }
    anomalies: dict[int, Anomaly] = {}
    new: list[Anomaly] = []
    for outcome in failing:
        check = outcome.check
        values = {
            "failed_count": outcome.failed_count,
            "examples": outcome.examples,
            "description": describe(check_spec(check))[:255],
            "last_seen_at": now,
            "last_run_id": run_id,
        }
        current = existing.get(check.pk)
        # Compare-and-set on the open status: a user may resolve it meanwhile (then the
        # failure is a new anomaly, as it would be in the next Scan).
        if current is not None and Anomaly.objects.filter(
            pk=current.pk, status__in=OPEN_ANOMALY_STATUSES
        ).update(times_seen=F("times_seen") + 1, **values):
            anomalies[check.pk] = current
            counts["updated"] += 1
            continue
        new.append(
            Anomaly(
                container=container,
                datastore_id=container.datastore_id,
                check_rule=check,
                check_type=check.type,
                field_name=check.field_name,
                run_id=run_id,
                created_at=now,
                **values,
            )
        )
    if new:
        created = Anomaly.objects.bulk_create(new)
        _found_events(created, run_id)
        for anomaly in created:
            anomalies[anomaly.check_rule_id] = anomaly
        counts["found"] += len(created)
    return anomalies, counts


def _upsert_rollup(container: Container, run_id: int, rollup: Rollup, now) -> tuple[Anomaly, bool]:
    values = {
        "failed_count": rollup.failed_count,
        "examples": rollup.entries,
        "description": rollup.description[:255],
        "last_seen_at": now,
        "last_run_id": run_id,
    }
    current = Anomaly.objects.filter(
        container=container, check_rule=None, check_type="", status__in=OPEN_ANOMALY_STATUSES
    ).first()
    if current is not None and Anomaly.objects.filter(
        pk=current.pk, status__in=OPEN_ANOMALY_STATUSES
    ).update(times_seen=F("times_seen") + 1, **values):
        return current, False
    anomaly = Anomaly.objects.create(
        container=container, datastore_id=container.datastore_id, run_id=run_id, **values
    )
    _found_events([anomaly], run_id)
    return anomaly, True


def _found_events(anomalies: list[Anomaly], run_id: int) -> None:
    AnomalyEvent.objects.bulk_create(
        AnomalyEvent(
            anomaly=anomaly,
            to_status=AnomalyStatus.ACTIVE,
            actor_name=f"Run #{run_id}",
            run_id=run_id,
            comment="Found by the Run.",
        )
        for anomaly in anomalies
    )


def resolve_passed(container: Container, passing: set[int], *, run_id: int, now) -> int:
    """Resolve the container's open anomalies whose checks all passed; return how many.

    A rolled-up anomaly is resolved once every check it summarises passed.
    """
    open_anomalies = Anomaly.objects.filter(container=container, status__in=OPEN_ANOMALY_STATUSES)
    found = dict(
        open_anomalies.filter(check_rule_id__in=passing).values_list("pk", "status")
    )
    for anomaly in open_anomalies.filter(check_rule=None, check_type="").only(
        "pk", "status", "examples"
    ):
        summarised = {
            entry["check_id"]
            for entry in anomaly.examples
            if isinstance(entry, dict) and set(entry) == ROLLUP_ENTRY_KEYS
        }
        if summarised and summarised <= passing:
            found[anomaly.pk] = anomaly.status
    resolved = 0
    for pk, status in found.items():
        if Anomaly.objects.filter(pk=pk, status=status).update(
            status=AnomalyStatus.RESOLVED, resolved_at=now
        ):
            AnomalyEvent.objects.create(
                anomaly_id=pk,
                from_status=status,
                to_status=AnomalyStatus.RESOLVED,
                actor_name=f"Run #{run_id}",
                run_id=run_id,
                comment="Resolved automatically: the check passed in a full Scan.",
            )
            resolved += 1
    return resolved


# -- what users do -----------------------------------------------------------------------------
@dataclass
class BulkResult:
    changed: list[int]
    skipped: dict[int, str]  # id -> why nothing happened


def anomaly_transition(
    *, user: User, anomaly: Anomaly, action: AnomalyAction, comment: str = ""
) -> Anomaly:
    """Acknowledge, resolve or reopen one anomaly (409 when its status does not allow it)."""
    result = anomalies_bulk_transition(
        user=user, ids=[anomaly.pk], action=action, comment=comment
    )
    if result.skipped:
        raise ActionNotAllowed(result.skipped[anomaly.pk])
    return Anomaly.objects.get(pk=anomaly.pk)


def anomalies_bulk_transition(
    *, user: User, ids: Sequence[int], action: AnomalyAction | str, comment: str = ""
) -> BulkResult:
    """Apply one action to many anomalies in one transaction.

    Unknown or invisible ids are a 404 and a missing level on any of their datastores a 403,
    before anything changes. Anomalies whose status does not allow the action (already
    resolved, or changed by someone else meanwhile) are skipped and reported.
    """
    action = _action(action)
    rule = ANOMALY_TRANSITIONS[action]
    comment = _comment(comment)
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise InvalidInput("Select at least one anomaly.", errors={"ids": ["Empty."]})
    if len(ids) > BULK_MAX:
        raise InvalidInput(
            f"At most {BULK_MAX} anomalies at a time.", errors={"ids": ["Too many."]}
        )
    rows = {a.pk: a for a in Anomaly.objects.filter(pk__in=ids).select_related("datastore")}
    levels = datastore_levels(user, {a.datastore_id for a in rows.values()})
    hidden = [i for i in ids if i not in rows or rows[i].datastore_id not in levels]
    if hidden:
        raise NotFound(f"Anomaly not found: #{hidden[0]}.")
    for anomaly in rows.values():
        if levels[anomaly.datastore_id] < rule.level:
            raise PermissionDenied(
                f"You need the {rule.level.label} permission on {anomaly.datastore.name} "
                f"to {action.label.lower()} anomalies."
            )
    result = BulkResult(changed=[], skipped={})
    with transaction.atomic():
        for pk in ids:
            anomaly = rows[pk]
            if anomaly.status not in rule.from_statuses:
                result.skipped[pk] = (
                    f"Anomaly #{pk} is {anomaly.get_status_display().lower()}: "
                    f"{action.label.lower()} does not apply."
                )
                continue
            if not _move(anomaly, rule.to, user=user, comment=comment, skipped=result.skipped):
                continue
            result.changed.append(pk)
    return result


def _move(anomaly: Anomaly, to: str, *, user: User, comment: str, skipped: dict) -> bool:
    resolved_at = timezone.now() if to == AnomalyStatus.RESOLVED else None
    try:
        with transaction.atomic():  # a savepoint: a reopen may meet the open-anomaly index
            won = Anomaly.objects.filter(pk=anomaly.pk, status=anomaly.status).update(
                status=to, resolved_at=resolved_at
            )
            if won:
                AnomalyEvent.objects.create(
                    anomaly=anomaly,
                    from_status=anomaly.status,
                    to_status=to,
                    user=user,
                    actor_name=user.username,
                    comment=comment,
                )
    except IntegrityError:
        twin = (
            Anomaly.objects.filter(
                check_rule_id=anomaly.check_rule_id, status__in=OPEN_ANOMALY_STATUSES
            )
            .values_list("pk", flat=True)
            .first()
        )
        skipped[anomaly.pk] = (
            f"Anomaly #{anomaly.pk} cannot be reopened: its check already has an open "
            f"anomaly (#{twin})."
        )
        return False
    if not won:
        skipped[anomaly.pk] = f"Anomaly #{anomaly.pk} changed meanwhile; nothing was done."
    return bool(won)


def _action(action: AnomalyAction | str) -> AnomalyAction:
    try:
        return AnomalyAction(action)
    except ValueError:
        raise InvalidInput(
            f"Unknown action {action!r}.",
            errors={"action": [f"One of: {', '.join(AnomalyAction.values)}."]},
        ) from None


def _comment(comment: str | None) -> str:
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX:
        raise InvalidInput(
            f"The comment is longer than {COMMENT_MAX} characters.",
            errors={"comment": [f"At most {COMMENT_MAX} characters."]},
        )
    return comment


def anomaly_level(user: User, anomaly: Anomaly):
    """The user's level on the anomaly's datastore; NotFound when they cannot see it."""
    level = datastore_level(user, anomaly.datastore_id)
    if level is None:
        raise NotFound("Anomaly not found.")
    return level
