"""Errors raised by run services; each maps to one HTTP status in the API and views."""


class RunServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, errors: dict[str, list[str]] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or {}


class NotFound(RunServiceError):
    status_code = 404
    code = "not_found"


class PermissionDenied(RunServiceError):
    status_code = 403
    code = "permission_denied"


class ActionNotAllowed(RunServiceError):
    """The action does not apply to this Run's state or operation, or another actor won."""

    status_code = 409
    code = "conflict"


class InvalidConfig(RunServiceError):
    status_code = 422
    code = "invalid_config"


class InvalidInput(RunServiceError):
    """Well-formed but unacceptable input (an unknown container, a bad datastore URL...)."""

    status_code = 422
    code = "invalid"


class Unavailable(RunServiceError):
    """Something Assay needs is briefly unavailable (the broker, a Run row held by its worker):
    nothing was changed, and the same request may be sent again."""

    status_code = 503
    code = "unavailable"
