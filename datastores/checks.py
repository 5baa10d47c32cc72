"""Writes on checks: author, edit, transition (one or in bulk), and apply a whole file.

Every write asks ``runs.policy`` (levels per status and transition) and validates definitions
with the engine's own ``validate_check``, so a check stored here is one a Scan can run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Level, User
from accounts.permissions import datastore_level, datastore_levels
from datastores.anomalies import BulkResult, check_spec
from datastores.models import Check, CheckOrigin, CheckStatus, Container, Datastore, Field
from datastores.quality import CHECK_TYPES, CheckDefinitionError, describe, validate_check
from runs.errors import ActionNotAllowed, InvalidInput, NotFound, PermissionDenied
from runs.policy import (
    CHECK_TRANSITIONS,
    CHECK_WRITE_LEVEL,
    CheckAction,
    can_write_check,
)

BULK_MAX = 500
DESCRIPTION_MAX = 255


# -- definitions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Definition:
    type: str
    field_name: str
    params: dict[str, Any]
    description: str


def clean_definition(
    *,
    container: Container,
    type: str,
    field_name: str | None,
    params: Mapping[str, Any] | None,
    description: str | None = "",
    fields: set[str] | None = None,
) -> Definition:
    """A valid definition, or InvalidInput with messages keyed by form field.

    Parameters are checked by the engine; the field must be one of the container's (when the
    catalogue knows its fields).
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(field_name, str | None):
        errors["field"] = ["Must be a field name."]
        field_name = ""
    if not isinstance(description, str | None):
        errors["description"] = ["Must be text."]
        description = ""
    field_name = (field_name or "").strip()
    description = (description or "").strip()
    if type not in CHECK_TYPES:
        errors["type"] = [f"Unknown check type; one of: {', '.join(CHECK_TYPES)}."]
    if len(description) > DESCRIPTION_MAX:
        errors["description"] = [f"At most {DESCRIPTION_MAX} characters."]
    known = fields if fields is not None else set(container.fields.values_list("name", flat=True))
    if field_name and known and field_name not in known:
        errors["field"] = [f"{container.name} has no field {field_name!r}."]
    normal: dict[str, Any] = {}
    if "type" not in errors:
        try:
            normal = validate_check(type, field_name or None, params)
        except CheckDefinitionError as exc:
            errors.setdefault(_error_key(type, str(exc)), []).append(_sentence(str(exc)))
    if errors:
        raise InvalidInput(_summary("Invalid check", errors), errors=errors)
    spec = check_spec(Check(type=type, field_name=field_name, params=normal))
    return Definition(type, field_name, normal, description or describe(spec)[:DESCRIPTION_MAX])


def _error_key(type: str, message: str) -> str:
    """Which form field an engine message is about: ``between.min must be ...`` -> ``min``."""
    if "field" in message and ("needs a field" in message or "takes no field" in message):
        return "field"
    match = re.match(rf"{re.escape(type)}\.(\w+)", message) or re.search(
        r"needs the parameter '(\w+)'", message
    )
    return match.group(1) if match else "params"


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _summary(prefix: str, errors: dict[str, list[str]]) -> str:
    return f"{prefix}: " + "; ".join(f"{key}: {' '.join(v)}" for key, v in errors.items())


# -- permission --------------------------------------------------------------------------------
def _level(user: User, datastore_id: int, what: str = "Check") -> Level:
    level = datastore_level(user, datastore_id)
    if level is None:
        raise NotFound(f"{what} not found.")
    return level


def _require(level: Level, needed: Level, datastore_name: str, doing: str) -> None:
    if level < needed:
        raise PermissionDenied(
            f"You need the {needed.label} permission on {datastore_name} to {doing}."
        )


# -- one check ---------------------------------------------------------------------------------
def check_create(
    *,
    user: User,
    container: Container,
    type: str,
    field_name: str | None = "",
    params: Mapping[str, Any] | None = None,
    description: str | None = "",
    status: str = CheckStatus.DRAFT,
) -> Check:
    """An authored check; drafters write drafts, authors any status."""
    level = _level(user, container.datastore_id, "Container")
    if status not in CheckStatus.values:
        raise InvalidInput(f"Unknown status {status!r}.", errors={"status": ["Unknown status."]})
    _require(level, CHECK_WRITE_LEVEL[status], container.datastore.name,
             f"create {CheckStatus(status).label.lower()} checks")
    definition = clean_definition(
        container=container, type=type, field_name=field_name, params=params,
        description=description,
    )
    return Check.objects.create(
        container=container,
        datastore_id=container.datastore_id,
        type=definition.type,
        field_name=definition.field_name,
        params=definition.params,
        description=definition.description,
        status=status,
        origin=CheckOrigin.AUTHORED,
        created_by=user,
    )


def check_update(
    *,
    user: User,
    check: Check,
    field_name: str | None,
    params: Mapping[str, Any] | None,
    description: str | None = "",
    type: str | None = None,
) -> Check:
    """Edit an authored check's definition (drafters: drafts only; authors: any)."""
    level = _level(user, check.datastore_id)
    _require(level, CHECK_WRITE_LEVEL[check.status], check.datastore.name,
             f"edit {check.get_status_display().lower()} checks")
    if check.origin != CheckOrigin.AUTHORED:
        raise ActionNotAllowed(
            "Inferred checks are kept up to date by Profile and cannot be edited; archive it "
            "and author your own instead."
        )
    definition = clean_definition(
        container=check.container, type=type or check.type, field_name=field_name,
        params=params, description=description,
    )
    updated = Check.objects.filter(pk=check.pk, status=check.status).update(
        type=definition.type,
        field_name=definition.field_name,
        params=definition.params,
        description=definition.description,
        updated_at=_now(),
    )
    if not updated:  # its status changed since it was read: the level needed may differ
        raise ActionNotAllowed(f"Check #{check.pk} changed meanwhile; nothing was saved.")
    return Check.objects.select_related("container", "datastore").get(pk=check.pk)


def check_transition(*, user: User, check: Check, action: CheckAction | str) -> Check:
    result = checks_bulk_transition(user=user, ids=[check.pk], action=action)
    if result.skipped:
        raise ActionNotAllowed(result.skipped[check.pk])
    return Check.objects.select_related("container", "datastore").get(pk=check.pk)


def checks_bulk_transition(
    *, user: User, ids: Sequence[int], action: CheckAction | str
) -> BulkResult:
    """Activate, archive or return to draft many checks in one transaction.

    Unknown or invisible ids are a 404, a missing level on any of their datastores a 403,
    before anything changes; checks whose status the action does not apply to are skipped.
    """
    action = _check_action(action)
    rule = CHECK_TRANSITIONS[action]
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise InvalidInput("Select at least one check.", errors={"ids": ["Empty."]})
    if len(ids) > BULK_MAX:
        raise InvalidInput(f"At most {BULK_MAX} checks at a time.", errors={"ids": ["Too many."]})
    rows = {c.pk: c for c in Check.objects.filter(pk__in=ids).select_related("datastore")}
    levels = datastore_levels(user, {c.datastore_id for c in rows.values()})
    hidden = [i for i in ids if i not in rows or rows[i].datastore_id not in levels]
    if hidden:
        raise NotFound(f"Check not found: #{hidden[0]}.")
    for check in rows.values():
        _require(levels[check.datastore_id], rule.level, check.datastore.name,
                 f"{action.label.lower()} checks")
    result = BulkResult(changed=[], skipped={})
    now = _now()
    with transaction.atomic():
        for pk in ids:
            check = rows[pk]
            if check.status not in rule.from_statuses:
                result.skipped[pk] = (
                    f"Check #{pk} is {check.get_status_display().lower()}: "
                    f"{action.label.lower()} does not apply."
                )
            elif Check.objects.filter(pk=pk, status=check.status).update(
                status=rule.to, updated_at=now
            ):
                result.changed.append(pk)
            else:
                result.skipped[pk] = f"Check #{pk} changed meanwhile; nothing was done."
    return result


def _check_action(action: CheckAction | str) -> CheckAction:
    try:
        return CheckAction(action)
    except ValueError:
        raise InvalidInput(
            f"Unknown action {action!r}.",
            errors={"action": [f"One of: {', '.join(CheckAction.values)}."]},
        ) from None


def _now():
    return timezone.now()


# -- checks as code ----------------------------------------------------------------------------
# ``origin`` is exported for the reader; it is never changed by a file.
APPLY_KEYS = frozenset(
    {"id", "container", "type", "field", "params", "status", "origin", "description"}
)


@dataclass
class Change:
    """What applying one entry of a file does: create, update or nothing."""

    index: int
    kind: str  # "create" | "update" | "unchanged"
    container: str
    label: str
    check_id: int | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)  # name -> [old, new]
    definition: Definition | None = field(default=None, repr=False, compare=False)


def checks_apply(
    *,
    user: User,
    datastore: Datastore,
    entries: Sequence[Mapping[str, Any]],
    dry_run: bool = False,
) -> list[Change]:
    """Make the datastore's checks match ``entries`` (each like an exported check).

    Entries with an ``id`` update that check; entries without one create an authored check.
    Checks the file does not mention stay as they are. Everything is validated first, with
    errors keyed ``<entry index>.<key>``; nothing is written unless every entry is valid and
    allowed, and then everything is written in one transaction.
    """
    level = _level(user, datastore.pk, "Datastore")
    with transaction.atomic():
        containers = {c.name: c for c in Container.objects.filter(datastore=datastore)}
        fields: dict[int, set[str]] = {c.pk: set() for c in containers.values()}
        for container_id, name in Field.objects.filter(
            container__datastore=datastore
        ).values_list("container_id", "name"):
            fields[container_id].add(name)
        ids = [e.get("id") for e in entries if isinstance(e, Mapping) and e.get("id") is not None]
        current = {
            c.pk: c
            for c in Check.objects.select_for_update().filter(
                datastore=datastore, pk__in=[i for i in ids if isinstance(i, int)]
            )
        }
        changes, errors, denied = _plan(entries, containers, fields, current, level)
        if errors:
            raise InvalidInput(_summary("Invalid checks file", errors), errors=errors)
        if denied:
            raise PermissionDenied(
                f"Your level on {datastore.name} ({level.label}) does not allow: "
                + "; ".join(denied)
            )
        if not dry_run:
            _write(changes, containers, user)
    return changes


def _plan(entries, containers, fields, current, level):
    changes: list[Change] = []
    errors: dict[str, list[str]] = {}
    denied: list[str] = []
    seen: set[int] = set()
    for index, entry in enumerate(entries):
        def fail(key: str, message: str, index=index) -> None:
            errors.setdefault(f"{index}.{key}", []).append(message)

        if not isinstance(entry, Mapping):
            fail("entry", "Each check must be a mapping.")
            continue
        for key in sorted(set(entry) - APPLY_KEYS):
            fail(key, "Unknown key.")
        check_id = entry.get("id")
        existing = None
        if check_id is not None:
            if not isinstance(check_id, int) or isinstance(check_id, bool):
                fail("id", "Must be a check id (a whole number).")
            elif check_id in seen:
                fail("id", f"Check #{check_id} appears twice.")
            elif check_id not in current:
                fail("id", f"No check #{check_id} in this datastore.")
            else:
                existing = current[check_id]
                seen.add(check_id)
        name = entry.get("container")
        container = containers.get(name) if isinstance(name, str) else None
        if container is None:
            fail("container", f"Unknown container {name!r}.")
            continue
        if existing is not None and existing.container_id != container.pk:
            fail("container", f"Check #{check_id} belongs to {existing.container.name}.")
            continue
        origin = entry.get("origin")
        if origin is not None and origin != (existing.origin if existing else "authored"):
            fail("origin", "New checks are authored; an existing check keeps its origin."
                 if existing is None else f"Check #{existing.pk} is {existing.origin}.")
            continue
        status = entry.get("status", existing.status if existing else CheckStatus.DRAFT)
        if status not in CheckStatus.values:
            fail("status", f"One of: {', '.join(CheckStatus.values)}.")
            continue
        description = entry.get("description") or ""
        try:
            definition = clean_definition(
                container=container,
                type=entry.get("type", existing.type if existing else ""),
                field_name=entry.get("field") or "",
                params=entry.get("params") or {},
                description=description,
                fields=fields[container.pk],
            )
            if existing is not None and not (isinstance(description, str) and description.strip()):
                # Blank keeps the stored description (an export shows it as it is).
                definition = replace(definition, description=existing.description)
        except InvalidInput as exc:
            for key, messages in exc.errors.items():
                for message in messages:
                    known = key in ("type", "field", "description", "params")
                    fail(key if known else f"params.{key}", message)
            continue
        label = Check(type=definition.type, field_name=definition.field_name).label
        if existing is None:
            changes.append(Change(index, "create", container.name, label,
                                  changes={"status": [None, status]}, definition=definition))
            if not can_write_check(level, status):
                denied.append(f"entry {index + 1}: create a {status} check")
            continue
        diff = _diff(existing, definition, status)
        change = Change(index, "update" if diff else "unchanged", container.name, label,
                        check_id=existing.pk, changes=diff, definition=definition)
        changes.append(change)
        # A description is words, not a rule: inferred checks may get better ones.
        definition_changed = set(diff) - {"status", "description"}
        if definition_changed and existing.origin == CheckOrigin.INFERRED:
            fail("params", f"Check #{existing.pk} is inferred by Profile and cannot be edited "
                           f"(changed: {', '.join(sorted(definition_changed))}).")
        if definition_changed and not can_write_check(level, existing.status):
            denied.append(f"check #{existing.pk}: edit a {existing.status} check")
        if "status" in diff and not all(
            rule.level <= level
            for rule in CHECK_TRANSITIONS.values()
            if existing.status in rule.from_statuses and rule.to == status
        ):
            denied.append(f"check #{existing.pk}: {existing.status} -> {status}")
    return changes, errors, denied


def _diff(check: Check, definition: Definition, status: str) -> dict[str, list[Any]]:
    diff: dict[str, list[Any]] = {}
    for name, old, new in (
        ("type", check.type, definition.type),
        ("field", check.field_name, definition.field_name),
        ("params", check.params, definition.params),
        ("description", check.description, definition.description),
        ("status", check.status, status),
    ):
        if old != new:
            diff[name] = [old, new]
    return diff


def _write(changes: list[Change], containers: dict[str, Container], user: User) -> None:
    now = _now()
    for change in changes:
        definition = change.definition
        if change.kind == "create":
            container = containers[change.container]
            check = Check.objects.create(
                container=container, datastore_id=container.datastore_id,
                type=definition.type, field_name=definition.field_name,
                params=definition.params, description=definition.description,
                status=change.changes["status"][1], origin=CheckOrigin.AUTHORED,
                created_by=user,
            )
            change.check_id = check.pk
        elif change.kind == "update":
            values = {"updated_at": now}
            for name, (_, new) in change.changes.items():
                values[{"field": "field_name"}.get(name, name)] = new
            Check.objects.filter(pk=change.check_id).update(**values)
