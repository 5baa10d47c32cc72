"""The audit log (admins): filtered, keyset-paged, exported as CSV with the same filters."""

import csv
import json

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.views import admin_required
from assay.paging import keyset_page
from audit.forms import AuditFilterForm
from audit.selectors import filtered_events

PAGE_SIZE = 50


@admin_required
@require_GET
def audit_list(request):
    form = AuditFilterForm(request.GET or None)
    status = 200
    if form.is_bound and not form.is_valid():
        events, page, status = [], None, 400
    else:
        data = form.cleaned_data if form.is_bound else {}
        page = keyset_page(filtered_events(data), before=data.get("cursor"), limit=PAGE_SIZE)
        events = page.items
    query = request.GET.copy()
    query.pop("cursor", None)
    return render(request, "audit/list.html", {
        "form": form, "events": events, "page": page, "query": query.urlencode(),
    }, status=status)


class _Echo:
    def write(self, value):
        return value


def _cell(value) -> str:
    text = "" if value is None else (value if isinstance(value, str) else json.dumps(value))
    # A spreadsheet must not run a cell as a formula (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@admin_required
@require_GET
def audit_export(request):
    form = AuditFilterForm(request.GET or None)
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    if form.is_bound and not form.is_valid():
        return render(request, "audit/list.html", {"form": form, "events": []}, status=400)
    writer = csv.writer(_Echo())
    columns = ["id", "at", "action", "actor", "object_type", "object_id", "object", "before",
               "after"]

    def rows():
        yield writer.writerow(columns)
        for event in filtered_events(data).iterator(chunk_size=1000):
            yield writer.writerow([_cell(v) for v in (
                event.pk, event.at.isoformat(), event.action, event.actor_name,
                event.object_type, event.object_id, event.object_name, event.before, event.after,
            )])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="assay-audit.csv"'
    return response
