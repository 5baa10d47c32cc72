"""Writes on teams. Only admins manage teams; the Public team keeps its name and existence."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from accounts.models import Level, Role, Team, User
from audit.models import AuditAction
from audit.services import record
from datastores.models import Datastore


class TeamError(Exception):
    """A refused team change; ``detail`` is shown to the user as is."""

    status_code = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class TeamPermissionDenied(TeamError):
    status_code = 403


def _require_admin(actor: User) -> None:
    if not (actor.is_authenticated and actor.role == Role.ADMIN):
        raise TeamPermissionDenied("Only admins manage teams.")


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise TeamError("A team needs a name.")
    if len(name) > Team._meta.get_field("name").max_length:
        raise TeamError("That team name is too long.")
    return name


def _level(level: int) -> Level:
    try:
        return Level(int(level))
    except (TypeError, ValueError):
        raise TeamError("Unknown permission level.") from None


def _state(team: Team) -> dict:
    return {"name": team.name, "level": Level(team.level).label}


def team_create(*, actor: User, name: str, level: int) -> Team:
    _require_admin(actor)
    name = _clean_name(name)
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, level=_level(level))
            record(actor, AuditAction.TEAM_CREATED, team, None, _state(team))
            return team
    except IntegrityError:
        raise TeamError(f"A team named {name!r} already exists.") from None


def team_update(*, actor: User, team: Team, name: str, level: int) -> Team:
    """Rename and/or change the level. The Public team may change level, never its name."""
    _require_admin(actor)
    name = _clean_name(name)
    if team.is_public and name != team.name:
        raise TeamError("The Public team cannot be renamed.")
    before = _state(team)
    team.name, team.level = name, _level(level)
    try:
        with transaction.atomic():
            team.save(update_fields=["name", "level"])
            if _state(team) != before:
                record(actor, AuditAction.TEAM_CHANGED, team, before, _state(team))
    except IntegrityError:
        raise TeamError(f"A team named {name!r} already exists.") from None
    return team


def team_delete(*, actor: User, team: Team) -> None:
    _require_admin(actor)
    if team.is_public:
        raise TeamError("The Public team cannot be deleted.")
    before = {
        **_state(team),
        "members": sorted(team.members.values_list("username", flat=True)),
        "datastores": sorted(team.datastores.values_list("name", flat=True)),
    }
    with transaction.atomic():
        record(actor, AuditAction.TEAM_DELETED, team, before, None)
        team.delete()


def team_add_member(*, actor: User, team: Team, user: User) -> None:
    _require_admin(actor)
    if team.is_public:
        raise TeamError("Every user is already in the Public team.")
    with transaction.atomic():
        if not team.members.filter(pk=user.pk).exists():
            team.members.add(user)
            record(actor, AuditAction.MEMBER_ADDED, team, None, {"member": user.username})


def team_remove_member(*, actor: User, team: Team, user: User) -> None:
    _require_admin(actor)
    if team.is_public:
        raise TeamError("Nobody can leave the Public team.")
    with transaction.atomic():
        if team.members.filter(pk=user.pk).exists():
            team.members.remove(user)
            record(actor, AuditAction.MEMBER_REMOVED, team, {"member": user.username}, None)


def team_set_datastores(*, actor: User, team: Team, datastores: Iterable[Datastore]) -> None:
    """Replace the team's datastores with exactly ``datastores``."""
    _require_admin(actor)
    wanted = {datastore.pk: datastore for datastore in datastores}
    with transaction.atomic():
        held = {datastore.pk: datastore for datastore in team.datastores.all()}
        team.datastores.set(list(wanted.values()))
        level = Level(team.level).label
        for pk in sorted(wanted.keys() - held.keys()):
            record(actor, AuditAction.DATASTORE_GRANTED, wanted[pk], None,
                   {"team": team.name, "level": level})
        for pk in sorted(held.keys() - wanted.keys()):
            record(actor, AuditAction.DATASTORE_REVOKED, held[pk],
                   {"team": team.name, "level": level}, None)
