"""Writes on the catalogue's datastores: create, update (credentials too), test the connection.

Every URL passes ``datastores.url_policy`` before it is stored. Refusals and failed connections
answer non-admins with one uniform message (no oracle for the server's files or ports); admins
get the reason.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Level, Role, Team, User
from accounts.permissions import can_create_datastore, can_edit_datastore, datastore_level
from audit.models import AuditAction
from audit.services import record
from datastores import url_policy
from datastores.models import (
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_RUN_LIMIT,
    MAX_CONNECTION_LIMIT,
    MAX_RUN_LIMIT,
    Datastore,
)
from datastores.sources import SourceConnection, SourceUnavailable, describe_error
from datastores.url_policy import UrlRefused
from runs.errors import ActionNotAllowed, InvalidInput, NotFound, PermissionDenied

PREFIX_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
KEEP = None  # a password argument left out: keep the stored one (if the server is the same)


def datastore_create(
    *,
    user: User,
    name: str,
    source_url: str,
    enrichment_url: str = "",
    enrichment_prefix: str = "assay",
    team_ids: list[int] | None = None,
    password: str | None = None,
    enrichment_password: str | None = None,
    run_limit: int = DEFAULT_RUN_LIMIT,
    connection_limit: int = DEFAULT_CONNECTION_LIMIT,
) -> Datastore:
    """Managers and admins add datastores, granted to the given teams.

    A manager may only grant it to teams they belong to: creating a datastore must not be a
    way to hand data to teams the creator has no say in.
    """
    if not can_create_datastore(user):
        raise PermissionDenied("Only managers and admins may add datastores.")
    errors: dict[str, list[str]] = {}
    name = _valid_name(name, errors)
    urls = _valid_urls(
        user,
        errors,
        source=(source_url, password, ""),
        enrichment=(enrichment_url, enrichment_password, ""),
    )
    _check_prefix(enrichment_prefix, errors)
    _check_limits(errors, run_limit=run_limit, connection_limit=connection_limit)
    teams = list(Team.objects.filter(pk__in=team_ids or []))
    if len(teams) != len(set(team_ids or [])):
        errors["teams"] = ["Unknown team."]
    elif user.role != Role.ADMIN:
        mine = set(user.teams.values_list("pk", flat=True))
        if any(team.pk not in mine and not team.is_public for team in teams):
            errors["teams"] = ["You may only grant a datastore to teams you belong to."]
    _raise_if(errors)
    try:
        with transaction.atomic():
            datastore = Datastore.objects.create(
                name=name,
                source_url=urls["source"],
                enrichment_url=urls["enrichment"],
                enrichment_prefix=enrichment_prefix,
                run_limit=run_limit,
                connection_limit=connection_limit,
                created_by=user,
            )
            datastore.teams.add(*teams)
            record(user, AuditAction.DATASTORE_CREATED, datastore, None, datastore_state(datastore))
            for team in teams:
                record(user, AuditAction.DATASTORE_GRANTED, datastore, None,
                       {"team": team.name, "level": Level(team.level).label})
    except IntegrityError:  # another request took the name since the check above
        raise _name_taken(name) from None
    return datastore


def datastore_update(
    *,
    user: User,
    datastore: Datastore,
    name: str | None = None,
    source_url: str | None = None,
    password: str | None = KEEP,
    enrichment_url: str | None = None,
    enrichment_password: str | None = KEEP,
    enrichment_prefix: str | None = None,
    run_limit: int | None = None,
    connection_limit: int | None = None,
) -> Datastore:
    """Change what is given (None: leave as is). Passwords are write-only.

    A password left out is kept only while the URL still points at the same server as the
    same user: otherwise editing the host would send the stored password to the new host.
    ``""`` removes it. An empty ``enrichment_url`` unlinks the enrichment datastore.
    """
    authorize_datastore_edit(user, datastore)
    before = datastore_state(datastore)
    errors: dict[str, list[str]] = {}
    if name is not None:
        name = _valid_name(name, errors, exclude=datastore.pk)
    current = {"source": datastore.source_url, "enrichment": datastore.enrichment_url}
    given = {
        "source": (source_url, password),
        "enrichment": (enrichment_url, enrichment_password),
    }
    changes = {
        purpose: (url, secret, current[purpose])
        for purpose, (url, secret) in given.items()
        if url is not None or secret is not None
    }
    urls = _valid_urls(user, errors, **changes)
    if enrichment_prefix is not None:
        _check_prefix(enrichment_prefix, errors)
    _check_limits(errors, run_limit=run_limit, connection_limit=connection_limit)
    _raise_if(errors)
    if name is not None:
        datastore.name = name
    if "source" in urls:
        datastore.source_url = urls["source"]
    if "enrichment" in urls:
        datastore.enrichment_url = urls["enrichment"]
    if enrichment_prefix is not None:
        datastore.enrichment_prefix = enrichment_prefix
    if run_limit is not None:
        datastore.run_limit = run_limit
    if connection_limit is not None:
        datastore.connection_limit = connection_limit
    try:
        with transaction.atomic():
            datastore.save()
            after = datastore_state(datastore)
            if after != before:
                record(user, AuditAction.DATASTORE_CHANGED, datastore, before, after)
    except IntegrityError:
        raise _name_taken(datastore.name) from None
    return datastore


_LIMITS = {
    "run_limit": ("Runs at once", MAX_RUN_LIMIT),
    "connection_limit": ("Connections per Run", MAX_CONNECTION_LIMIT),
}


def _check_limits(errors: dict[str, list[str]], **values: int | None) -> None:
    """Fair-sharing limits (runs.fairness, Scan): whole numbers within their range."""
    for field, value in values.items():
        what, most = _LIMITS[field]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            errors[field] = [f"{what} must be a whole number from 1 to {most}."]


def datastore_state(datastore: Datastore) -> dict:
    """What an audit record keeps of a datastore: never a password, and a marker of whether
    one is stored (so a changed password shows as a change)."""
    from datastores.models import mask_url

    def secret(url: str) -> str:
        try:
            fingerprint = url_policy.parse(url).password if url else None
        except UrlRefused:
            fingerprint = None
        return "set" if fingerprint else "none"

    return {
        "name": datastore.name,
        "source": mask_url(datastore.source_url) if datastore.source_url else "",
        "source_password": secret(datastore.source_url),
        "enrichment": mask_url(datastore.enrichment_url) if datastore.enrichment_url else "",
        "enrichment_password": secret(datastore.enrichment_url),
        "enrichment_prefix": datastore.enrichment_prefix,
        "run_limit": datastore.run_limit,
        "connection_limit": datastore.connection_limit,
    }


def datastore_delete(*, user: User, datastore: Datastore) -> None:
    """Remove the datastore from the catalogue; keep its Runs as audit records.

    Its containers (fields, profiles, checks, anomalies), schedules, team grants and stored
    credentials go. The row itself stays, marked deleted, so that its Runs, and other
    datastores' Promote Runs into it, still name it. Refused while a Run on it is active:
    a worker must not lose its datastore under it.
    """
    from runs.models import Run, Schedule

    authorize_datastore_edit(user, datastore)
    with transaction.atomic():
        locked = Datastore.objects.select_for_update().filter(pk=datastore.pk).first()
        if locked is None:
            raise NotFound("Datastore not found.")
        active = Run.objects.active().filter(
            Q(datastore=datastore) | Q(destination_datastore=datastore)
        )
        if active.exists():
            raise ActionNotAllowed(
                f"{datastore.name} has active Runs: abort them or let them finish first."
            )
        before = {
            **datastore_state(datastore),
            "teams": sorted(datastore.teams.values_list("name", flat=True)),
            "containers": datastore.containers.count(),
            "runs": Run.objects.filter(datastore=datastore).count(),
        }
        Schedule.objects.filter(
            Q(datastore=datastore) | Q(destination_datastore=datastore)
        ).delete()
        datastore.containers.all().delete()
        datastore.teams.clear()
        datastore.source_url = ""
        datastore.enrichment_url = ""
        datastore.deleted_at = timezone.now()
        datastore.save()
        record(user, AuditAction.DATASTORE_DELETED, datastore, before, None)


def datastore_set_teams(*, user: User, datastore: Datastore, teams: list[Team]) -> None:
    """The teams holding the datastore, exactly. Managers may grant and revoke only teams
    they belong to (and Public), as when creating it."""
    authorize_datastore_edit(user, datastore)
    held = {team.pk: team for team in datastore.teams.all()}
    wanted = {team.pk: team for team in teams}
    if user.role != Role.ADMIN:
        mine = set(user.teams.values_list("pk", flat=True))
        changed = (held.keys() ^ wanted.keys())
        if any(pk not in mine and not (held.get(pk) or wanted[pk]).is_public for pk in changed):
            message = "You may only grant a datastore to teams you belong to."
            raise InvalidInput(message, errors={"teams": [message]})
    with transaction.atomic():
        datastore.teams.set(list(wanted.values()))
        for pk in sorted(wanted.keys() - held.keys()):
            record(user, AuditAction.DATASTORE_GRANTED, datastore, None,
                   {"team": wanted[pk].name, "level": Level(wanted[pk].level).label})
        for pk in sorted(held.keys() - wanted.keys()):
            record(user, AuditAction.DATASTORE_REVOKED, datastore,
                   {"team": held[pk].name, "level": Level(held[pk].level).label}, None)


def datastore_test_connection(*, user: User, datastore: Datastore) -> str:
    """Connect to the source (and the enrichment datastore) now; a message, or InvalidInput."""
    authorize_datastore_edit(user, datastore)
    targets = [("source", datastore.source_url)]
    if datastore.enrichment_url:
        targets.append(("enrichment", datastore.enrichment_url))
    errors: dict[str, list[str]] = {}
    for purpose, url in targets:
        try:
            with SourceConnection(url) as source:
                # Reading the catalogue, not just "SELECT 1": SQLite opens any file lazily.
                sa.inspect(source.conn).get_table_names()
        except SourceUnavailable as exc:
            errors[f"{purpose}_url"] = [_refusal(user, exc.detail)]
        except sa.exc.SQLAlchemyError as exc:
            errors[f"{purpose}_url"] = [_refusal(user, describe_error(exc, url))]
    if errors:
        raise InvalidInput("; ".join(m for msgs in errors.values() for m in msgs), errors=errors)
    return "Connected to the source" + (
        " and the enrichment datastore." if len(targets) > 1 else "."
    )


def authorize_datastore_edit(user: User, datastore: Datastore) -> None:
    """404 if the user cannot see it, 403 if they see it but may not change it."""
    if datastore_level(user, datastore.pk) is None:
        raise NotFound("Datastore not found.")
    if not can_edit_datastore(user, datastore.pk):
        raise PermissionDenied(
            "Only admins, and managers with the Editor permission on it, may change "
            f"{datastore.name}."
        )


# -- helpers -----------------------------------------------------------------------------------
def _valid_name(name: str, errors: dict, *, exclude: int | None = None) -> str:
    name = name.strip()
    taken = Datastore.objects.filter(name=name).exclude(pk=exclude)
    if not name:
        errors["name"] = ["This field is required."]
    elif taken.exists():
        errors["name"] = [f"A datastore named {name!r} already exists."]
    return name


def _check_prefix(prefix: str, errors: dict) -> None:
    if not PREFIX_PATTERN.fullmatch(prefix):
        errors["enrichment_prefix"] = [
            "Letters, digits and underscores, starting with a letter (at most 40)."
        ]


def _valid_urls(
    user: User, errors: dict, **given: tuple[str | None, str | None, str]
) -> dict[str, str]:
    """{purpose: URL to store} for each (url, password, previous URL) given; errors filled.

    A URL of None means the previous one (a new password for the same URL).
    """
    urls: dict[str, str] = {}
    for purpose, (url, password, previous) in given.items():
        key = f"{purpose}_url"
        if purpose == "enrichment" and not (url if url is not None else previous).strip():
            urls[purpose] = ""  # no enrichment datastore (a password alone means nothing)
            continue
        try:
            if url is None:
                parsed = url_policy.parse(previous)._replace(password=None)
            else:
                parsed = url_policy.parse(url)
            parsed = _with_password(parsed, password, previous)
            url_policy.vet(parsed)
        except UrlRefused as exc:
            errors[key] = [_refusal(user, exc.detail)]
            continue
        urls[purpose] = parsed.render_as_string(hide_password=False)
    return urls


def _with_password(url: sa.URL, password: str | None, previous: str) -> sa.URL:
    if password:
        if url.password and url.password != password:
            raise UrlRefused("The URL and the password field give two different passwords.")
        return url.set(password=password)
    if password == "":
        return url._replace(password=None)
    if url.password is None and previous:
        before = url_policy.parse(previous)
        same_server = (url_policy.driver_key(url), url.host, url.port, url.username) == (
            url_policy.driver_key(before), before.host, before.port, before.username
        )
        if same_server and before.password is not None:
            return url.set(password=before.password)
    return url


def _refusal(user: User, detail: str) -> str:
    return url_policy.message_for(UrlRefused(detail), admin=user.role == Role.ADMIN)


def _raise_if(errors: dict[str, list[str]]) -> None:
    if errors:
        summary = "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in errors.items())
        raise InvalidInput(f"Invalid datastore: {summary}", errors=errors)


def _name_taken(name: str) -> InvalidInput:
    message = f"A datastore named {name!r} already exists."
    return InvalidInput(message, errors={"name": [message]})
