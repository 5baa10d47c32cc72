"""The one action-policy table. UI, API and services all ask it; nothing else decides.

An action is *available* on a Run when its state and operation allow it (``POLICY``) and the
user holds ``REQUIRED_LEVEL`` on the Run's datastore (admins always do).

The results Runs produce follow below, in the same form: check and anomaly transitions
(``CHECK_TRANSITIONS``, ``ANOMALY_TRANSITIONS``: from which statuses, to which, at which level),
who writes checks in which status (``CHECK_WRITE_LEVEL``), and who sees source values
(``SOURCE_VALUES_LEVEL``).
"""

from dataclasses import dataclass

from django.db import models

from accounts.models import Level
from datastores.models import AnomalyStatus, CheckStatus
from runs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Operation, Run, RunStatus


class Action(models.TextChoices):
    ABORT = "abort", "Abort"
    RESUME = "resume", "Resume"
    RERUN = "rerun", "Rerun"
    DELETE = "delete", "Delete"


@dataclass(frozen=True)
class Rule:
    statuses: frozenset[str]
    operations: frozenset[str]


ALL_OPERATIONS = frozenset(Operation.values)
RESUMABLE_OPERATIONS = frozenset({Operation.PROFILE, Operation.SCAN, Operation.PROMOTE})

POLICY: dict[Action, Rule] = {
    Action.ABORT: Rule(frozenset(ACTIVE_STATUSES), ALL_OPERATIONS),
    Action.RESUME: Rule(
        frozenset({RunStatus.FAILURE, RunStatus.ABORTED}), RESUMABLE_OPERATIONS
    ),
    Action.RERUN: Rule(
        frozenset(TERMINAL_STATUSES), ALL_OPERATIONS - {Operation.EXTERNAL_SCAN}
    ),
    Action.DELETE: Rule(frozenset(TERMINAL_STATUSES), ALL_OPERATIONS),
}

# Launching, scheduling and every action above need this level on the datastore.
REQUIRED_LEVEL = Level.EDITOR

# Actions that launch a new Run on the Run's datastore: none once that datastore is deleted
# (its Runs stay as audit records, but nothing runs on it again).
LAUNCHING_ACTIONS = frozenset({Action.RESUME, Action.RERUN})


def allowed_in_state(action: Action, *, status: str, operation: str) -> bool:
    rule = POLICY[action]
    return status in rule.statuses and operation in rule.operations


def level_allows(level: Level | None) -> bool:
    return level is not None and level >= REQUIRED_LEVEL


def available_actions(run: Run, level: Level | None) -> list[Action]:
    """Actions ``level`` may take on ``run`` now, in table order."""
    if not level_allows(level):
        return []
    actions = [
        action
        for action in Action
        if allowed_in_state(action, status=run.status, operation=run.operation)
    ]
    # A requested abort is pending: asking again would change nothing, so don't offer it.
    if run.abort_requested_at is not None and Action.ABORT in actions:
        actions.remove(Action.ABORT)
    if nothing_to_resume(run) and Action.RESUME in actions:
        actions.remove(Action.RESUME)
    if deleted_datastore(run) is not None:
        actions = [action for action in actions if action not in LAUNCHING_ACTIONS]
    return actions


def deleted_datastore(run: Run):
    """The Run's datastore, or its Promote destination, if deleted; else None (lists load
    both with the Run: no query per row)."""
    if run.datastore.deleted_at is not None:
        return run.datastore
    if run.destination_datastore_id and run.destination_datastore.deleted_at is not None:
        return run.destination_datastore
    return None


def nothing_to_resume(run: Run) -> bool:
    """Every planned unit succeeded: a Resume would be an empty Run."""
    return run.units_remaining == 0


# -- checks and anomalies ----------------------------------------------------------------------
# The results Runs produce, in the same table: each action, the statuses it applies to, the
# status it leads to, and the level it needs on the datastore (admins always have it).
# Reporter < Viewer < Drafter < Author < Editor; each level may do what the ones below may.


class CheckAction(models.TextChoices):
    ACTIVATE = "activate", "Activate"
    ARCHIVE = "archive", "Archive"
    TO_DRAFT = "draft", "Back to draft"


class AnomalyAction(models.TextChoices):
    ACKNOWLEDGE = "acknowledge", "Acknowledge"
    RESOLVE = "resolve", "Resolve"
    REOPEN = "reopen", "Reopen"


@dataclass(frozen=True)
class Transition:
    from_statuses: frozenset[str]
    to: str
    level: Level


CHECK_TRANSITIONS: dict[CheckAction, Transition] = {
    CheckAction.ACTIVATE: Transition(
        frozenset({CheckStatus.DRAFT, CheckStatus.ARCHIVED}), CheckStatus.ACTIVE, Level.AUTHOR
    ),
    CheckAction.ARCHIVE: Transition(
        frozenset({CheckStatus.DRAFT, CheckStatus.ACTIVE}), CheckStatus.ARCHIVED, Level.AUTHOR
    ),
    CheckAction.TO_DRAFT: Transition(
        frozenset({CheckStatus.ACTIVE, CheckStatus.ARCHIVED}), CheckStatus.DRAFT, Level.AUTHOR
    ),
}

ANOMALY_TRANSITIONS: dict[AnomalyAction, Transition] = {
    AnomalyAction.ACKNOWLEDGE: Transition(
        frozenset({AnomalyStatus.ACTIVE}), AnomalyStatus.ACKNOWLEDGED, Level.AUTHOR
    ),
    AnomalyAction.RESOLVE: Transition(
        frozenset({AnomalyStatus.ACTIVE, AnomalyStatus.ACKNOWLEDGED}),
        AnomalyStatus.RESOLVED,
        Level.AUTHOR,
    ),
    AnomalyAction.REOPEN: Transition(
        frozenset({AnomalyStatus.ACKNOWLEDGED, AnomalyStatus.RESOLVED}),
        AnomalyStatus.ACTIVE,
        Level.AUTHOR,
    ),
}

# Creating or editing a check: the level depends on the status the check has (or will have).
# A draft changes nothing a Scan does, so drafters write drafts; an active or archived check
# is a decision, so only authors create or edit one.
CHECK_WRITE_LEVEL: dict[str, Level] = {
    CheckStatus.DRAFT: Level.DRAFTER,
    CheckStatus.ACTIVE: Level.AUTHOR,
    CheckStatus.ARCHIVED: Level.AUTHOR,
}

# Anomaly examples, profile min/max/top values and check parameters (which inference copies
# from profiles) are source values: they may hold personal data. Reporters see counts and
# statuses only.
SOURCE_VALUES_LEVEL = Level.VIEWER


def _holds(level: Level | None, needed: Level) -> bool:
    return level is not None and level >= needed


def can_see_source_values(level: Level | None) -> bool:
    return _holds(level, SOURCE_VALUES_LEVEL)


def can_write_check(level: Level | None, status: str) -> bool:
    """May ``level`` create a check in ``status``, or edit one that is in it."""
    return _holds(level, CHECK_WRITE_LEVEL[status])


def check_actions(status: str, level: Level | None) -> list[CheckAction]:
    """Transitions ``level`` may apply to a check in ``status``, in table order."""
    return [
        action
        for action, rule in CHECK_TRANSITIONS.items()
        if status in rule.from_statuses and _holds(level, rule.level)
    ]


def anomaly_actions(status: str, level: Level | None) -> list[AnomalyAction]:
    """Transitions ``level`` may apply to an anomaly in ``status``, in table order."""
    return [
        action
        for action, rule in ANOMALY_TRANSITIONS.items()
        if status in rule.from_statuses and _holds(level, rule.level)
    ]
