"""What Export and Materialize share: the enrichment datastore they write into."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from datastores.models import Datastore
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


def open_enrichment(ctx) -> SourceConnection:
    """The Run's enrichment connection (cancellable, closed when the Run ends)."""
    if "enrichment" not in ctx.state:
        if not ctx.datastore.enrichment_url:
            # Unlinked after launch: a Run-level failure with a clear cause.
            raise SourceError(f"Datastore {ctx.datastore.name} has no enrichment datastore.")
        try:
            ctx.state["enrichment"] = ctx.connect(ctx.datastore.enrichment_url, writable=True)
        except SourceError as exc:
            raise SourceError(f"Enrichment datastore: {exc}") from None
    return ctx.state["enrichment"]


def enrichment_failure(ctx, what: str, exc: Exception, **metrics) -> UnitFailed:
    """A unit failure whose message cannot leak the enrichment URL's password."""
    cause = describe_error(exc, ctx.datastore.enrichment_url)
    return UnitFailed(f"{what} in the enrichment datastore failed: {cause}", metrics=metrics)
