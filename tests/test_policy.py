"""The action policy, exhaustively: action x state x operation x permission level."""

import pytest

from accounts.models import Level, Role
from runs.errors import ActionNotAllowed, NotFound, PermissionDenied
from runs.models import Operation, Run, RunStatus
from runs.policy import Action, allowed_in_state, available_actions
from runs.services import authorize_action
from tests.factories import DatastoreFactory, RunFactory, TeamFactory, UserFactory

# Written out by hand from DESIGN §2, independently of runs.policy.POLICY.
EXPECTED_STATES = {
    Action.ABORT: {"queued", "running"},
    Action.RESUME: {"failure", "aborted"},
    Action.RERUN: {"success", "failure", "aborted"},
    Action.DELETE: {"success", "failure", "aborted"},
}
EXPECTED_OPERATIONS = {
    Action.ABORT: set(Operation.values),
    Action.RESUME: {"profile", "scan", "promote"},
    Action.RERUN: set(Operation.values) - {"external_scan"},
    Action.DELETE: set(Operation.values),
}
ACCESS = ["admin", "editor", "author", "drafter", "viewer", "reporter", "public", "none"]
CASES = [
    (action, status, operation, access)
    for action in Action
    for status in RunStatus.values
    for operation in Operation.values
    for access in ACCESS
]


def expected(action, status, operation, access) -> bool:
    return (
        access in ("admin", "editor")
        and status in EXPECTED_STATES[action]
        and operation in EXPECTED_OPERATIONS[action]
    )


@pytest.fixture(scope="module")
def people(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        store = DatastoreFactory(name="policy-store")
        users = {"admin": UserFactory(username="p-admin", role=Role.ADMIN)}
        for name, level in [("editor", Level.EDITOR), ("author", Level.AUTHOR),
                            ("drafter", Level.DRAFTER), ("viewer", Level.VIEWER),
                            ("reporter", Level.REPORTER)]:
            user = UserFactory(username=f"p-{name}")
            team = TeamFactory(name=f"p-{name}", level=level)
            team.members.add(user)
            team.datastores.add(store)
            users[name] = user
        # "public": sees the datastore only because the Public team holds it (as reporter).
        users["public"] = UserFactory(username="p-public")
        users["none"] = UserFactory(username="p-none")
        other = DatastoreFactory(name="policy-public-store")
        yield store, other, users
        # Module-scoped data outlives the per-test transaction: clean up.
        Run.objects.filter(datastore__in=[store, other]).delete()


@pytest.mark.django_db
@pytest.mark.parametrize("action,status,operation,access", CASES)
def test_action_policy(people, public_team, action, status, operation, access):
    store, public_store, users = people
    target = store
    if access == "public":
        public_team.level = Level.REPORTER
        public_team.save()
        public_team.datastores.add(public_store)
        target = public_store
    user = users[access]
    run = RunFactory.build(datastore=target, status=status, operation=operation)
    run.datastore = target
    want = expected(action, status, operation, access)

    from accounts.permissions import datastore_level

    level = datastore_level(user, target.pk)
    assert (action in available_actions(run, level)) is want
    if want:
        authorize_action(user, run, action)
    elif access == "none":
        with pytest.raises(NotFound):
            authorize_action(user, run, action)
    elif access not in ("admin", "editor"):
        with pytest.raises(PermissionDenied):
            authorize_action(user, run, action)
    else:
        with pytest.raises(ActionNotAllowed):
            authorize_action(user, run, action)


def test_state_table_matches_design():
    for action in Action:
        for status in RunStatus.values:
            for operation in Operation.values:
                assert allowed_in_state(action, status=status, operation=operation) == (
                    status in EXPECTED_STATES[action] and operation in EXPECTED_OPERATIONS[action]
                )
