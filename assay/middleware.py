"""Middleware of Assay's own."""

from django.http import JsonResponse


def api_method_not_allowed_as_json(get_response):
    """A method an API path does not support answers JSON like every other API error.

    django-ninja leaves that answer to Django, whose 405 is an empty text response; API
    clients parse errors as ``{"detail", "code"}`` and need the ``Allow`` header.
    """

    def middleware(request):
        response = get_response(request)
        if (
            response.status_code == 405
            and request.path.startswith("/api/")
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            allowed = response.get("Allow", "")
            response = JsonResponse(
                {
                    "detail": f"{request.method} is not supported here (allowed: {allowed}).",
                    "code": "method_not_allowed",
                },
                status=405,
            )
            response["Allow"] = allowed
        return response

    return middleware
