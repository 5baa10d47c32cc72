"""Schema pieces every API router shares."""

from typing import Annotated

from ninja import Field, Path, Schema
from pydantic import ConfigDict, StrictInt

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
