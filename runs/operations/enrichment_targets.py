"""What Export and Materialize share: the enrichment datastore and the container selection."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from datastores.models import Container, Datastore
from datastores.sources import SourceConnection, SourceError, describe_error, parse_url
from runs.errors import InvalidConfig
from runs.operations.base import UnitFailed

# Errors of one unit's data (a dropped table, a value a type cannot read or write): the unit
# fails, the Run goes on.
DATA_ERRORS = (SQLAlchemyError, ValueError, TypeError, ArithmeticError)


def require_enrichment(datastore: Datastore) -> None:
    """InvalidConfig unless the datastore links a usable enrichment datastore URL."""
    if not datastore.enrichment_url:
        raise InvalidConfig(
            f"Datastore {datastore.name} has no enrichment datastore; link one (an enrichment "
            "URL) before exporting or materializing.",
            errors={"datastore": ["No enrichment datastore is linked."]},
        )
    try:
        parse_url(datastore.enrichment_url)
    except SourceError as exc:
        raise InvalidConfig(
            f"The enrichment datastore of {datastore.name} is unusable: {exc}",
            errors={"datastore": [str(exc)]},
        ) from None


def check_container_names(datastore: Datastore, names: list[str] | None) -> None:
    """InvalidConfig naming every container that is not in the datastore's catalogue."""
    if names is None:
        return
    if len(set(names)) != len(names):
        raise InvalidConfig(
            "containers lists a container twice.",
            errors={"containers": ["Duplicate container names."]},
        )
    known = set(datastore.containers.filter(name__in=names).values_list("name", flat=True))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InvalidConfig(
            f"Unknown containers on {datastore.name}: {', '.join(unknown)}.",
            errors={"containers": [f"Unknown container: {name}" for name in unknown]},
        )


def selected_containers(datastore: Datastore, names: list[str] | None) -> list[Container]:
    """The configured containers in configured order (all, by name, for None).

    A container removed since launch is left out; callers report it as a failed unit.
    """
    containers = datastore.containers.all()
    if names is None:
        return list(containers.order_by("name"))
    by_name = {c.name: c for c in containers.filter(name__in=names)}
    return [by_name[name] for name in names if name in by_name]


def open_enrichment(ctx) -> SourceConnection:
    """The Run's enrichment connection (cancellable, closed when the Run ends)."""
    if "enrichment" not in ctx.state:
        if not ctx.datastore.enrichment_url:
            # Unlinked after launch: a Run-level failure with a clear cause.
            raise SourceError(f"Datastore {ctx.datastore.name} has no enrichment datastore.")
        try:
            ctx.state["enrichment"] = ctx.connect(ctx.datastore.enrichment_url)
        except SourceError as exc:
            raise SourceError(f"Enrichment datastore: {exc}") from None
    return ctx.state["enrichment"]


def enrichment_failure(ctx, what: str, exc: Exception, **metrics) -> UnitFailed:
    """A unit failure whose message cannot leak the enrichment URL's password."""
    cause = describe_error(exc, ctx.datastore.enrichment_url)
    return UnitFailed(f"{what} in the enrichment datastore failed: {cause}", metrics=metrics)
