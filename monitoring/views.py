"""Operators' endpoints: no login, nothing secret, quick whatever the state of the backends."""

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
    body, content_type = exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
