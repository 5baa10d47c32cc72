"""Writes on the catalogue's datastores."""

import re

from django.db import IntegrityError, transaction

from accounts.models import Role, Team, User
from accounts.permissions import can_create_datastore
from datastores.models import Datastore
from datastores.sources import SourceError, parse_url
from runs.errors import InvalidInput, PermissionDenied

PREFIX_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


def datastore_create(
    *,
    user: User,
    name: str,
    source_url: str,
    enrichment_url: str = "",
    enrichment_prefix: str = "assay",
    team_ids: list[int] | None = None,
) -> Datastore:
    """Managers and admins add datastores, granted to the given teams.

    A manager may only grant it to teams they belong to: creating a datastore must not be a
    way to hand data to teams the creator has no say in.
    """
    if not can_create_datastore(user):
        raise PermissionDenied("Only managers and admins may add datastores.")
    errors: dict[str, list[str]] = {}
    name = name.strip()
    if not name:
        errors["name"] = ["This field is required."]
    elif Datastore.objects.filter(name=name).exists():
        errors["name"] = [f"A datastore named {name!r} already exists."]
    for key, url in (("source_url", source_url), ("enrichment_url", enrichment_url)):
        if key == "source_url" or url:
            try:
                parse_url(url)
            except SourceError as exc:
                errors[key] = [str(exc)]
    if not PREFIX_PATTERN.fullmatch(enrichment_prefix):
        errors["enrichment_prefix"] = [
            "Letters, digits and underscores, starting with a letter (at most 40)."
        ]
    teams = list(Team.objects.filter(pk__in=team_ids or []))
    if len(teams) != len(set(team_ids or [])):
        errors["teams"] = ["Unknown team."]
    elif user.role != Role.ADMIN:
        mine = set(user.teams.values_list("pk", flat=True))
        if any(team.pk not in mine and not team.is_public for team in teams):
            errors["teams"] = ["You may only grant a datastore to teams you belong to."]
    if errors:
        summary = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in errors.items())
        raise InvalidInput(f"Invalid datastore: {summary}", errors=errors)
    try:
        with transaction.atomic():
            datastore = Datastore.objects.create(
                name=name,
                source_url=source_url,
                enrichment_url=enrichment_url,
                enrichment_prefix=enrichment_prefix,
                created_by=user,
            )
            datastore.teams.add(*teams)
    except IntegrityError:  # another request took the name since the check above
        raise InvalidInput(
            f"A datastore named {name!r} already exists.",
            errors={"name": [f"A datastore named {name!r} already exists."]},
        ) from None
    return datastore
