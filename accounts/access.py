"""Effective access, spelled out: who may do what on which datastore, and which team says so.

The same rule as ``accounts.permissions`` (the highest level among the user's teams holding
the datastore, the Public team counting for everyone, admins everything), listed instead of
asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accounts.models import Level, Role, Team, User
from datastores.models import Datastore


@dataclass
class Grant:
    level: Level | None  # None: the admin role (everything)
    teams: list[str] = field(default_factory=list)  # the teams granting that level

    @property
    def label(self) -> str:
        return "Admin (every permission)" if self.level is None else self.level.label


def _best(grants: dict, key, level: Level, team: Team) -> None:
    current = grants.get(key)
    if current is None or level > current.level:
        grants[key] = Grant(level, [team.name])
    elif level == current.level:
        current.teams.append(team.name)


def access_of_user(user: User) -> list[tuple[Datastore, Grant]]:
    """Each datastore the user can see, with their level and the teams that grant it."""
    datastores = Datastore.objects.order_by("name")
    if user.role == Role.ADMIN:
        return [(datastore, Grant(None, ["admin role"])) for datastore in datastores]
    grants: dict[int, Grant] = {}
    teams = Team.objects.filter(pk__in=user.teams.values("pk")) | Team.objects.filter(
        is_public=True
    )
    for team in teams.distinct().prefetch_related("datastores").order_by("name"):
        for datastore in team.datastores.all():
            _best(grants, datastore.pk, Level(team.level), team)
    return [(d, grants[d.pk]) for d in datastores if d.pk in grants]


def access_of_datastore(datastore: Datastore) -> tuple[list[tuple[User, Grant]], Grant | None]:
    """(each active user with access and their level, what the Public team gives everyone).

    Admins are listed too: they may do everything, whatever the teams say.
    """
    grants: dict[int, Grant] = {}
    people: dict[int, User] = {}
    everyone: Grant | None = None
    teams = datastore.teams.prefetch_related("members").order_by("name")
    for team in teams:
        if team.is_public:
            everyone = Grant(Level(team.level), [team.name])
            continue
        for member in team.members.all():
            if member.is_active:
                people[member.pk] = member
                _best(grants, member.pk, Level(team.level), team)
    if everyone is not None:
        # The Public team counts for everyone: it raises whoever it grants more to.
        for pk, grant in grants.items():
            if everyone.level > grant.level:
                grants[pk] = Grant(everyone.level, list(everyone.teams))
    rows = [(people[pk], grant) for pk, grant in grants.items()]
    admins = User.objects.filter(role=Role.ADMIN, is_active=True)
    rows = [row for row in rows if row[0].role != Role.ADMIN]
    rows += [(admin, Grant(None, ["admin role"])) for admin in admins]
    rows.sort(key=lambda row: row[0].username)
    return rows, everyone
