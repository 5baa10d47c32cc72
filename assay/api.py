"""REST API v1 (django-ninja). Routers live with their apps; this module assembles them.

Every error leaves as JSON ``{"detail": <message>, "code": <word>}`` (plus ``errors`` with
per-field messages when there are some), whatever raised it: a run service, ninja's own input
validation, an unparseable body or a failed authentication.
"""

import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from accounts.api_auth import BearerToken
from assay.input_checks import find_nul
from runs.errors import RunServiceError

logger = logging.getLogger(__name__)


class HostileInput(RunServiceError):
    """Text no column can store (NUL characters) or numbers JSON does not have (NaN)."""

    status_code = 400
    code = "bad_request"


def refuse_nul(value: Any, where: str) -> None:
    found = find_nul(value, where)
    if found:
        # The location names keys the client sent: printable, NUL shown as "?".
        raise HostileInput(f"Text may not contain NUL characters ({found.replace(chr(0), '?')}).")


def _no_constants(name: str):
    raise HostileInput(f"{name} is not a JSON number.")


class StrictParser(Parser):
    """JSON bodies and query strings, refusing NUL characters and NaN/Infinity."""

    def parse_body(self, request: HttpRequest) -> Any:
        data = json.loads(request.body, parse_constant=_no_constants)
        refuse_nul(data, "body")
        return data

    def parse_querydict(self, data, list_fields, request: HttpRequest) -> dict:
        for key, values in data.lists():
            refuse_nul([key, *values], f"query parameter {key}")
        return super().parse_querydict(data, list_fields, request)


api = NinjaAPI(
    title="Assay API",
    version="1",
    urls_namespace="api",
    auth=BearerToken(),
    parser=StrictParser(),
    description="Runs, datastores, schedules, External Scans, checks and anomalies. "
    "Authenticate with `Authorization: Bearer <token>`.",
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
    429: "throttled",
}


def error_response(
    request: HttpRequest,
    status: int,
    detail: str,
    code: str | None = None,
    errors: dict[str, list[str]] | None = None,
) -> HttpResponse:
    body: dict = {"detail": detail, "code": code or HTTP_CODES.get(status, "error")}
    if errors:
        body["errors"] = errors
    return api.create_response(request, body, status=status)


@api.exception_handler(RunServiceError)
def _service_error(request: HttpRequest, exc: RunServiceError) -> HttpResponse:
    response = error_response(request, exc.status_code, exc.detail, exc.code, exc.errors)
    if exc.status_code == 401:
        response["WWW-Authenticate"] = 'Bearer realm="assay"'
    return response


# Names of the view parameters that wrap a whole body or query schema (see the routers).
WRAPPER_PARAMS = {"body", "filters"}


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    for err in exc.errors:
        # loc is (source, [wrapper parameter,] *path); the input value is never echoed back
        # (it may hold a datastore password).
        loc = [str(part) for part in err.get("loc", ())][1:]
        if len(loc) > 1 and loc[0] in WRAPPER_PARAMS:
            loc = loc[1:]
        key = ".".join(loc) or "request"
        errors.setdefault(key, []).append(str(err.get("msg", "Invalid value.")))
    summary = "; ".join(f"{key}: {', '.join(msgs)}" for key, msgs in errors.items())
    return error_response(request, 422, f"Invalid input: {summary}", "invalid", errors)


@api.exception_handler(AuthenticationError)
def _authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = error_response(
        request, 401, "Missing or invalid API token (Authorization: Bearer <token>)."
    )
    response["WWW-Authenticate"] = 'Bearer realm="assay"'
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # Ninja raises HttpError(400, "Cannot parse request body") for malformed JSON, and for
    # whatever the parser refused (then the cause says what).
    if isinstance(exc.__cause__, RunServiceError):
        return _service_error(request, exc.__cause__)
    return error_response(request, exc.status_code, str(exc))


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(
        request, 413, "Request body too large: send results in smaller parts.", "too_large"
    )


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "Not found.")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # A bug: logged with its traceback for operators; the client gets the documented shape,
    # never a page or a traceback.
    logger.exception("API %s %s failed", request.method, request.path)
    return error_response(
        request, 500, "Internal error; it has been logged.", "internal_error"
    )


def unknown_endpoint(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    return JsonResponse(
        {"detail": f"No API endpoint at {request.path}.", "code": "not_found"}, status=404
    )


def _register_routers() -> None:
    from datastores.api import router as datastores_router
    from datastores.quality_api import router as quality_router
    from runs.api import router as runs_router

    api.add_router("/", runs_router)
    api.add_router("/", datastores_router)
    api.add_router("/", quality_router)


_register_routers()
