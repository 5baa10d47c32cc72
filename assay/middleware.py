"""Middleware of Assay's own."""

import zoneinfo

from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone


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


def user_time_zone(get_response):
    """Pages show times in the signed-in user's time zone (UTC for everyone else)."""

    def middleware(request):
        user = getattr(request, "user", None)
        name = getattr(user, "time_zone", "") if user is not None else ""
        try:
            timezone.activate(zoneinfo.ZoneInfo(name or "UTC"))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.activate(zoneinfo.ZoneInfo("UTC"))
        try:
            return get_response(request)
        finally:
            timezone.deactivate()

    return middleware


# Longer than any address the pages build (every filter filled in is well under 1,000
# characters), and shorter than the web server's own limit (gunicorn's --limit-request-line,
# set to 8190 in the Procfile), so an overlong address gets this page rather than a bare 414.
MAX_QUERY_STRING = 2048


def long_address(get_response):
    """An overlong query string is answered with a page in the site's own style."""

    def middleware(request):
        if len(request.META.get("QUERY_STRING", "")) > MAX_QUERY_STRING:
            if request.path.startswith("/api/"):
                return JsonResponse(
                    {"detail": "The query string is too long.", "code": "uri_too_long"},
                    status=414,
                )
            return render(request, "414.html", {"limit": MAX_QUERY_STRING}, status=414)
        return get_response(request)

    return middleware
