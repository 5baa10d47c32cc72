"""Check and anomaly actions x permission level, through the services and through the API.

The expected table is written out by hand from DESIGN §1 (team permission), independently of
``runs.policy``: Reporter sees counts and statuses; Viewer also source values; Drafter also
creates and edits drafts; Author also activates/archives checks and acknowledges/resolves
anomalies (and creates or edits active ones); Editor and admins everything.
"""

import json

import pytest

from accounts.models import Level, Role
from datastores.anomalies import anomaly_transition
from datastores.checks import check_create, check_transition, check_update
from datastores.models import Anomaly, AnomalyStatus, Check, CheckStatus, Container, Field
from runs.errors import NotFound, PermissionDenied
from runs.policy import (
    AnomalyAction,
    CheckAction,
    anomaly_actions,
    can_see_source_values,
    can_write_check,
    check_actions,
)
from tests.api_support import bearer
from tests.factories import DatastoreFactory, TeamFactory, UserFactory

ACCESS = ["admin", "editor", "author", "drafter", "viewer", "reporter", "public", "none"]
RANK = {"reporter": 1, "public": 1, "viewer": 2, "drafter": 3, "author": 4, "editor": 5,
        "admin": 6}
NEEDS = {  # the lowest level allowed to do it
    "see_values": "viewer",
    "create_draft": "drafter",
    "edit_draft": "drafter",
    "create_active": "author",
    "edit_active": "author",
    "activate": "author",
    "archive": "author",
    "draft": "author",
    "acknowledge": "author",
    "resolve": "author",
    "reopen": "author",
}
CASES = [(what, access) for what in NEEDS for access in ACCESS]


def allowed(what: str, access: str) -> bool:
    return access != "none" and RANK[access] >= RANK[NEEDS[what]]


@pytest.fixture
def people(db, public_team):
    store = DatastoreFactory(name="q-policy-store")
    users = {"admin": UserFactory(username="q-admin", role=Role.ADMIN)}
    for name, level in [("editor", Level.EDITOR), ("author", Level.AUTHOR),
                        ("drafter", Level.DRAFTER), ("viewer", Level.VIEWER),
                        ("reporter", Level.REPORTER)]:
        user = UserFactory(username=f"q-{name}")
        team = TeamFactory(name=f"q-{name}", level=level)
        team.members.add(user)
        team.datastores.add(store)
        users[name] = user
    users["none"] = UserFactory(username="q-none")
    public_store = DatastoreFactory(name="q-policy-public-store")
    public_team.level = Level.REPORTER
    public_team.save()
    public_team.datastores.add(public_store)
    users["public"] = UserFactory(username="q-public")
    return {"store": store, "public_store": public_store, "users": users}


def target_of(people, access):
    store = people["public_store"] if access == "public" else people["store"]
    container = Container.objects.create(datastore=store, name="orders", kind="table")
    Field.objects.create(container=container, name="qty", type="integer")
    return container


def objects_for(what: str, container):
    """A fresh check (and anomaly) in the status the action starts from."""
    status = {
        "edit_draft": CheckStatus.DRAFT, "activate": CheckStatus.DRAFT,
        "archive": CheckStatus.ACTIVE, "draft": CheckStatus.ACTIVE,
    }.get(what, CheckStatus.ACTIVE)
    check = Check.objects.create(container=container, type="not_negative", field_name="qty",
                                 status=status)
    anomaly_status = AnomalyStatus.RESOLVED if what == "reopen" else AnomalyStatus.ACTIVE
    anomaly = Anomaly.objects.create(container=container, check_rule=check, failed_count=3,
                                     examples=[{"qty": -4}], status=anomaly_status,
                                     description="qty is not negative")
    return check, anomaly


def via_service(what, user, container, check, anomaly):
    if what == "see_values":
        from datastores.selectors import visible_anomaly

        return visible_anomaly(user, anomaly.pk).shows_values or _deny()
    if what.startswith("create_"):
        status = CheckStatus.DRAFT if what == "create_draft" else CheckStatus.ACTIVE
        return check_create(user=user, container=container, type="not_null", field_name="qty",
                            status=status)
    if what.startswith("edit_"):
        return check_update(user=user, check=check, field_name="qty", params={})
    if what in CheckAction.values:
        return check_transition(user=user, check=check, action=what)
    return anomaly_transition(user=user, anomaly=anomaly, action=what, comment="policy")


def _deny():
    raise PermissionDenied("no values")


@pytest.mark.parametrize("what,access", CASES)
def test_services(people, what, access):
    user = people["users"][access]
    container = target_of(people, access)
    check, anomaly = objects_for(what, container)
    if allowed(what, access):
        via_service(what, user, container, check, anomaly)
    elif access == "none":
        with pytest.raises((NotFound, Exception)) as error:
            via_service(what, user, container, check, anomaly)
        assert error.type.__name__ in ("NotFound", "Http404")
    else:
        with pytest.raises(PermissionDenied):
            via_service(what, user, container, check, anomaly)


def via_api(what, client, container, check, anomaly):
    if what == "see_values":
        body = client.get(f"/api/v1/anomalies/{anomaly.pk}").json()
        if "examples" not in body:
            return 404
        return 200 if body["examples"] == [{"qty": -4}] else 403
    if what.startswith("create_"):
        status = "draft" if what == "create_draft" else "active"
        response = client.post("/api/v1/checks", json.dumps(
            {"container": container.pk, "type": "not_null", "field": "qty", "status": status}
        ), content_type="application/json")
        return 200 if response.status_code == 201 else response.status_code
    if what.startswith("edit_"):
        return client.patch(f"/api/v1/checks/{check.pk}", json.dumps({"params": {}}),
                            content_type="application/json").status_code
    if what in CheckAction.values:
        return client.post(f"/api/v1/checks/{check.pk}/{what}").status_code
    return client.post(f"/api/v1/anomalies/{anomaly.pk}/{what}", json.dumps({"comment": "x"}),
                       content_type="application/json").status_code


@pytest.mark.parametrize("what,access", CASES)
def test_api(people, what, access):
    client = bearer(people["users"][access])
    container = target_of(people, access)
    check, anomaly = objects_for(what, container)
    status = via_api(what, client, container, check, anomaly)
    assert status == (200 if allowed(what, access) else 404 if access == "none" else 403)
    if what in CheckAction.values or what in AnomalyAction.values:
        check.refresh_from_db()
        anomaly.refresh_from_db()
        moved = check.status != CheckStatus.ACTIVE if what in ("archive", "draft") else (
            check.status == CheckStatus.ACTIVE if what == "activate" else
            anomaly.status != (AnomalyStatus.RESOLVED if what == "reopen" else AnomalyStatus.ACTIVE)
        )
        assert moved == allowed(what, access)


LEVELS = {"reporter": Level.REPORTER, "viewer": Level.VIEWER, "drafter": Level.DRAFTER,
          "author": Level.AUTHOR, "editor": Level.EDITOR, "none": None}


@pytest.mark.parametrize("access", LEVELS)
def test_the_table_offers_what_the_services_allow(access):
    level = LEVELS[access]
    assert can_see_source_values(level) == allowed("see_values", access)
    assert can_write_check(level, "draft") == allowed("create_draft", access)
    assert can_write_check(level, "active") == allowed("create_active", access)
    offered_checks = {a.value for s in CheckStatus.values for a in check_actions(s, level)}
    assert offered_checks == {a for a in CheckAction.values if allowed(a, access)}
    offered = {a.value for s in AnomalyStatus.values for a in anomaly_actions(s, level)}
    assert offered == {a for a in AnomalyAction.values if allowed(a, access)}


def test_transitions_follow_the_statuses():
    editor = Level.EDITOR
    assert check_actions("draft", editor) == [CheckAction.ACTIVATE, CheckAction.ARCHIVE]
    assert check_actions("active", editor) == [CheckAction.ARCHIVE, CheckAction.TO_DRAFT]
    assert check_actions("archived", editor) == [CheckAction.ACTIVATE, CheckAction.TO_DRAFT]
    assert anomaly_actions("active", editor) == [AnomalyAction.ACKNOWLEDGE, AnomalyAction.RESOLVE]
    assert anomaly_actions("acknowledged", editor) == [AnomalyAction.RESOLVE,
                                                       AnomalyAction.REOPEN]
    assert anomaly_actions("resolved", editor) == [AnomalyAction.REOPEN]
