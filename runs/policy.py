"""The one action-policy table. UI, API and services all ask it; nothing else decides.

An action is *available* on a Run when its state and operation allow it (``POLICY``) and the
user holds ``REQUIRED_LEVEL`` on the Run's datastore (admins always do).
"""

from dataclasses import dataclass

from django.db import models

from accounts.models import Level
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
    return actions
