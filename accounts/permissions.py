"""The one answer to "what may user U do on datastore D"."""

from django.db.models import Max, Q, QuerySet

from accounts.models import Level, Role, Team, User


def datastore_level(user: User, datastore_id: int) -> Level | None:
    """Highest team level of ``user`` on the datastore; EDITOR for admins; None without access."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.role == Role.ADMIN:
        return Level.EDITOR
    best = (
        Team.objects.filter(datastores__id=datastore_id)
        .filter(_membership(user))
        .aggregate(best=Max("level"))["best"]
    )
    return Level(best) if best is not None else None


def _membership(user: User):
    # Every user is in the Public team, whether or not a membership row exists.
    return Q(members=user) | Q(is_public=True)


def visible_sql(user: User, datastore_column: str) -> tuple[str, list]:
    """``visible_datastore_ids`` as a plain SQL condition on ``datastore_column``.

    The same rule as ``_membership`` (a team of the user, or the Public team, holds the
    datastore), for the live polls: each open page sends one every 2 s, and Django took
    longer to build the nested ORM subqueries than PostgreSQL took to run them.
    """
    if user.role == Role.ADMIN:
        return "1 = 1", []
    members = Team.members.through._meta.db_table
    holdings = Team.datastores.through._meta.db_table
    return (
        f"EXISTS (SELECT 1 FROM {holdings} td JOIN {Team._meta.db_table} t ON t.id = td.team_id"
        f" WHERE td.datastore_id = {datastore_column} AND (t.is_public OR EXISTS ("
        f"SELECT 1 FROM {members} m WHERE m.team_id = t.id AND m.user_id = %s)))",
        [user.pk],
    )


def visible_datastore_ids(user: User) -> QuerySet | None:
    """Subquery of datastore ids the user can see; None means "all" (admin)."""
    from datastores.models import Datastore

    if user.role == Role.ADMIN:
        return None
    teams = Team.objects.filter(_membership(user))
    return Datastore.objects.filter(teams__in=teams).values("id").distinct()


def datastore_levels(user: User, datastore_ids) -> dict[int, Level]:
    """Levels for many datastores in one query (lists avoid one query per row)."""
    ids = set(datastore_ids)
    if user.role == Role.ADMIN:
        return {i: Level.EDITOR for i in ids}
    rows = (
        Team.objects.filter(_membership(user), datastores__id__in=ids)
        .values("datastores__id")
        .annotate(best=Max("level"))
    )
    return {row["datastores__id"]: Level(row["best"]) for row in rows}


def can_edit(level: Level | None) -> bool:
    return level is not None and level >= Level.EDITOR


def can_create_datastore(user: User) -> bool:
    return user.is_authenticated and user.role in (Role.ADMIN, Role.MANAGER)


def can_edit_datastore(user: User, datastore_id: int) -> bool:
    """Change a datastore's name, URLs and credentials: admins, and managers who are Editors."""
    if not user.is_authenticated or not user.is_active:
        return False
    return may_edit_datastore(user, datastore_level(user, datastore_id))


def may_edit_datastore(user: User, level: Level | None) -> bool:
    """``can_edit_datastore`` for a level already known (lists)."""
    return user.role == Role.ADMIN or (user.role == Role.MANAGER and can_edit(level))


def can_see_connection(user: User, level: Level | None) -> bool:
    """Host, path and user of a datastore's URL: Editors and admins; never Reporters/Viewers."""
    return user.role == Role.ADMIN or can_edit(level)
