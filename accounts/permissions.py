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
