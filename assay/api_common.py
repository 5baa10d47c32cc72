"""Schema pieces every API router shares."""

from datetime import UTC, datetime
from typing import Annotated

from django.utils import timezone
from ninja import Field, Path, Schema
from pydantic import ConfigDict, StrictInt

from runs.errors import InvalidInput

MAX_ID = 2**63 - 1  # the largest id the databases store; bigger ones would be a driver error
Id = Annotated[int, Field(ge=1, le=MAX_ID)]  # query strings: "12" is read as 12
BodyId = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]  # JSON: true, 1.0 or "12" are refused
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]


class Strict(Schema):
    """Request bodies reject unknown keys: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Error(Schema):
    detail: str
    code: str
    errors: dict[str, list[str]] | None = None


ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 409: Error, 422: Error}


def utc_filter(value: datetime | None, name: str) -> datetime | None:
    """The filter as UTC. A naive time is read as UTC (the API speaks UTC); any offset ISO 8601
    allows is accepted, although PostgreSQL refuses offsets beyond 15:59."""
    if value is None:
        return None
    if timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        raise InvalidInput(
            f"{name} is out of range.", errors={name: ["Out of range."]}
        ) from None


class PageQuery(Schema):
    """``cursor`` and ``limit`` of a paged list (``next_cursor`` of the previous page)."""

    cursor: str | None = Field(None, max_length=100)
    limit: int = Field(50, ge=1, le=100)
