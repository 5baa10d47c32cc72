"""Operators' endpoints: no login, nothing secret, quick whatever the state of the backends."""

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from monitoring.health import health
from monitoring.metrics import exposition


@never_cache
@require_safe
def healthz(request):
    report = health()
    return JsonResponse(report, status=200 if report["ok"] else 503)


@never_cache
@require_safe
def metrics(request):
    if settings.METRICS_TOKEN and not hmac.compare_digest(
        request.headers.get("Authorization", "").encode(),
        f"Bearer {settings.METRICS_TOKEN}".encode(),
    ):
        response = HttpResponse("A bearer token is required (METRICS_TOKEN).\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
