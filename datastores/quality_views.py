"""Datastore, container, check and anomaly pages.

Thin: reads from ``datastores.selectors``, writes through ``datastores.checks`` and
``datastores.anomalies`` (which ask ``runs.policy``). htmx endpoints render a fragment of the
page's own template. Reporters get the same pages with counts and statuses only: every
template shows source values (examples, profile min/max/top values, check parameters) only
where ``shows_values`` says the viewer's level allows it.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.permissions import can_see_connection
from activity.selectors import visible_datastores
from activity.views import _go, _positive_int, _safe_next
from datastores import selectors
from datastores.anomalies import anomalies_bulk_transition, anomaly_transition
from datastores.checks import check_create, check_transition, check_update, checks_bulk_transition
from datastores.models import CheckStatus, Container
from datastores.quality import CHECK_TYPES
from datastores.quality_forms import (
    TYPE_CHOICES,
    AnomalyFilterForm,
    CheckFilterForm,
    CheckForm,
    initial_for,
)
from runs import errors
from runs.policy import (
    AnomalyAction,
    CheckAction,
    can_see_source_values,
    can_write_check,
)
from runs.policy import level_allows as can_launch

LAUNCHABLE_OPERATIONS = ["sync", "profile", "scan", "export", "materialize", "promote"]


def _refuse(exc: errors.RunServiceError):
    if isinstance(exc, errors.NotFound):
        raise Http404(exc.detail) from None
    if isinstance(exc, errors.PermissionDenied):
        raise PermissionDenied(exc.detail) from None


# -- datastore and container -------------------------------------------------------------------
@login_required
@require_GET
def datastore_detail(request, datastore_id: int):
    datastore, level = selectors.visible_datastore(request.user, datastore_id)
    return render(request, "datastores/datastore.html", {
        "datastore": datastore,
        "level": level,
        "connection": datastore.display_url if can_see_connection(request.user, level) else "",
        "containers": selectors.datastore_overview(datastore),
        "can_launch": can_launch(level),
        "operations": LAUNCHABLE_OPERATIONS,
    })


@login_required
@require_GET
def container_detail(request, datastore_id: int, container_id: int):
    container, level = selectors.visible_container(request.user, datastore_id, container_id)
    checks = list(container.checks.select_related("datastore", "container").order_by("id"))
    selectors.attach_check_access(request.user, checks)
    selectors.recent_evaluations(checks)
    page = selectors.anomaly_page(
        request.user,
        selectors.AnomalyFilters(container=container.pk),
        before=None,
        limit=10,
        stores=[datastore_id],
    )
    return render(request, "datastores/container.html", {
        "container": container,
        "datastore": container.datastore,
        "level": level,
        "shows_values": can_see_source_values(level),
        "can_draft": can_write_check(level, CheckStatus.DRAFT),
        "fields": selectors.container_fields(container),
        "checks": checks,
        "anomalies": page.items,
        "more_anomalies": page.next_before is not None,
        "units": selectors.container_runs(container),
        "check_types": TYPE_CHOICES,
    })


# -- checks ------------------------------------------------------------------------------------
def _list_filters(request, form_class):
    stores = list(visible_datastores(request.user))
    store_id = _positive_int(request.GET, "datastore")
    containers = (
        list(Container.objects.filter(datastore_id=store_id).order_by("name").only("id", "name"))
        if any(s.pk == store_id for s in stores)
        else []
    )
    form = form_class(request.GET, datastores=stores, containers=containers)
    return form, [s.pk for s in stores]


@login_required
@require_GET
def check_list(request):
    form, store_ids = _list_filters(request, CheckFilterForm)
    page = selectors.check_page(
        request.user, form.filters(), before=_positive_int(request.GET, "before"),
        stores=store_ids,
    )
    selectors.recent_evaluations(page.items)
    return render(request, "datastores/checks.html", {
        "form": form,
        "page": page,
        "checks": page.items,
        "selectable": True,
        "bulk_actions": sorted({a for c in page.items for a in c.actions},
                               key=list(CheckAction).index),
        "filtered": any(v for v in form.cleaned_data.values()),
        "paged": "before" in request.GET,
        "next_url": request.get_full_path(),
    })


@login_required
@require_POST
def check_bulk(request):
    back = _safe_next(request) or reverse("checks:list")
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit() and 0 < int(i) < 2**62]
    try:
        result = checks_bulk_transition(
            user=request.user, ids=ids, action=request.POST.get("action", "")
        )
    except errors.RunServiceError as exc:
        _refuse(exc)
        messages.error(request, exc.detail)
        return _go(request, back)
    _report(request, result, "check")
    return _go(request, back)


def _report(request, result, noun: str) -> None:
    if result.changed:
        count = len(result.changed)
        messages.success(request, f"{count} {noun}{'' if count == 1 else 's'} updated.")
    for reason in result.skipped.values():
        messages.error(request, reason)


@login_required
@require_GET
def check_detail(request, check_id: int):
    check = selectors.visible_check(request.user, check_id)
    evaluations = selectors.check_evaluations(check)
    page = selectors.anomaly_page(
        request.user, selectors.AnomalyFilters(check=check.pk), before=None, limit=10,
        stores=[check.datastore_id],
    )
    return render(request, "datastores/check.html", {
        "check": check,
        "evaluations": evaluations,
        "anomalies": page.items,
        "next_url": request.get_full_path(),
    })


@login_required
@require_http_methods(["GET", "POST"])
def check_new(request, datastore_id: int, container_id: int):
    container, level = selectors.visible_container(request.user, datastore_id, container_id)
    statuses = [s for s in CheckStatus.values if can_write_check(level, s)]
    if not statuses:
        raise PermissionDenied("You need the Drafter permission to author checks.")
    check_type = request.POST.get("type") or request.GET.get("type") or ""
    if check_type not in CHECK_TYPES:
        return render(request, "datastores/check_form.html", {
            "container": container, "datastore": container.datastore, "check_types": TYPE_CHOICES,
        })
    form = CheckForm(request.POST if request.method == "POST" else None, type=check_type,
                     container=container, statuses=statuses[:2])
    if request.method == "POST" and form.is_valid():
        try:
            check = check_create(user=request.user, container=container, type=check_type,
                                 status=form.cleaned_data["status"], **form.definition())
        except errors.InvalidInput as exc:
            form.add_service_errors(exc.errors, exc.detail)
        except errors.RunServiceError as exc:
            _refuse(exc)
            form.add_error(None, exc.detail)
        else:
            messages.success(request, f"Check #{check.pk} created as {check.status}.")
            return redirect("checks:detail", check.pk)
    return render(request, "datastores/check_form.html", {
        "container": container, "datastore": container.datastore, "form": form,
        "check_type": check_type, "check_types": TYPE_CHOICES,
    }, status=422 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def check_edit(request, check_id: int):
    check = selectors.visible_check(request.user, check_id)
    if not check.can_edit:
        raise PermissionDenied(
            "Only authored checks can be edited, drafts by drafters, others by authors."
        )
    form = CheckForm(request.POST if request.method == "POST" else None, type=check.type,
                     container=check.container, initial=initial_for(check))
    if request.method == "POST" and form.is_valid():
        try:
            check_update(user=request.user, check=check, **form.definition())
        except errors.InvalidInput as exc:
            form.add_service_errors(exc.errors, exc.detail)
        except errors.RunServiceError as exc:
            _refuse(exc)
            form.add_error(None, exc.detail)
        else:
            messages.success(request, f"Check #{check.pk} saved.")
            return redirect("checks:detail", check.pk)
    return render(request, "datastores/check_form.html", {
        "check": check, "container": check.container, "datastore": check.datastore,
        "form": form, "check_type": check.type,
    }, status=422 if form.errors else 200)


@login_required
@require_POST
def check_action(request, check_id: int, action: str):
    try:
        action = CheckAction(action)
    except ValueError:
        raise Http404("Unknown action.") from None
    check = selectors.visible_check(request.user, check_id)
    back = _safe_next(request) or reverse("checks:detail", args=[check.pk])
    try:
        check_transition(user=request.user, check=check, action=action)
    except errors.RunServiceError as exc:
        _refuse(exc)
        messages.error(request, exc.detail)
        return _go(request, back)
    messages.success(request, f"Check #{check.pk}: {action.label.lower()} done.")
    return _go(request, back)


# -- anomalies ---------------------------------------------------------------------------------
@login_required
@require_GET
def anomaly_list(request):
    form, store_ids = _list_filters(request, AnomalyFilterForm)
    check = _positive_int(request.GET, "check")
    filters = form.filters(check=check)
    page = selectors.anomaly_page(
        request.user, filters, before=_positive_int(request.GET, "before"), stores=store_ids
    )
    return render(request, "datastores/anomalies.html", {
        "form": form,
        "page": page,
        "anomalies": page.items,
        "selectable": True,
        "check_filter": check,
        "bulk_actions": sorted({a for x in page.items for a in x.actions},
                               key=list(AnomalyAction).index),
        "filtered": check is not None or any(v for v in form.cleaned_data.values()),
        "paged": "before" in request.GET,
        "next_url": request.get_full_path(),
    })


@login_required
@require_POST
def anomaly_bulk(request):
    back = _safe_next(request) or reverse("anomalies:list")
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit() and 0 < int(i) < 2**62]
    try:
        result = anomalies_bulk_transition(
            user=request.user, ids=ids, action=request.POST.get("action", ""),
            comment=request.POST.get("comment", ""),
        )
    except errors.RunServiceError as exc:
        _refuse(exc)
        messages.error(request, exc.detail)
        return _go(request, back)
    _report(request, result, "anomaly")
    return _go(request, back)


@login_required
@require_GET
def anomaly_detail(request, anomaly_id: int):
    anomaly = selectors.visible_anomaly(request.user, anomaly_id)
    present = selectors.runs_present([anomaly.run_id, anomaly.last_run_id])
    return render(request, "datastores/anomaly.html", {
        "anomaly": anomaly,
        "events": selectors.anomaly_events(anomaly),
        "columns": selectors.example_columns(anomaly.examples) if anomaly.shows_values else [],
        "found_run_exists": anomaly.run_id in present,
        "last_run_exists": anomaly.last_run_id in present,
        "next_url": request.get_full_path(),
    })


@login_required
@require_GET
def anomaly_examples(request, anomaly_id: int):
    """The examples table alone (an anomaly row expanded in the list)."""
    anomaly = selectors.visible_anomaly(request.user, anomaly_id)
    return render(request, "datastores/anomaly.html#examples", {
        "anomaly": anomaly,
        "columns": selectors.example_columns(anomaly.examples) if anomaly.shows_values else [],
    })


@login_required
@require_POST
def anomaly_action(request, anomaly_id: int, action: str):
    try:
        action = AnomalyAction(action)
    except ValueError:
        raise Http404("Unknown action.") from None
    anomaly = selectors.visible_anomaly(request.user, anomaly_id, examples=False)
    back = _safe_next(request) or reverse("anomalies:detail", args=[anomaly.pk])
    try:
        anomaly_transition(user=request.user, anomaly=anomaly, action=action,
                           comment=request.POST.get("comment", ""))
    except errors.RunServiceError as exc:
        _refuse(exc)
        messages.error(request, exc.detail)
        return _go(request, back)
    messages.success(request, f"Anomaly #{anomaly.pk}: {action.label.lower()} done.")
    return _go(request, back)
