"""The Schedules page: list, create, edit, enable/disable, delete. Writes go through
``runs.schedules``; a schedule's Runs are the Activity page filtered on it."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.permissions import datastore_level, datastore_levels, visible_datastore_ids
from datastores.models import Datastore
from runs import errors
from runs.models import FiringOutcome, Schedule, ScheduleFiring
from runs.policy import level_allows
from runs.schedule_forms import ScheduleForm, cron_in_words, editable_datastores, next_firings
from runs.schedules import (
    InvalidCron,
    schedule_create,
    schedule_delete,
    schedule_set_enabled,
    schedule_update,
)


def _visible_schedule(user, schedule_id: int) -> Schedule:
    schedule = (
        Schedule.objects.select_related("datastore", "destination_datastore", "created_by")
        .filter(pk=schedule_id).first()
    )
    if schedule is None or datastore_level(user, schedule.datastore_id) is None:
        raise Http404("Schedule not found.")
    return schedule


@login_required
@require_GET
def schedule_list(request):
    firings = ScheduleFiring.objects.filter(schedule=OuterRef("pk")).order_by("-pk")
    schedules = Schedule.objects.select_related(
        "datastore", "destination_datastore", "created_by"
    ).annotate(
        last_outcome=Subquery(firings.values("outcome")[:1]),
        last_run_id=Subquery(firings.values("run_id")[:1]),
        last_reason=Subquery(firings.values("reason")[:1]),
    ).order_by("name", "pk")
    visible = visible_datastore_ids(request.user)
    if visible is not None:
        schedules = schedules.filter(datastore_id__in=visible)
    schedules = list(schedules)
    levels = datastore_levels(request.user, {s.datastore_id for s in schedules})
    for schedule in schedules:
        schedule.in_words = cron_in_words(schedule.cron)
        schedule.can_edit = level_allows(levels.get(schedule.datastore_id))
    return render(request, "runs/schedules.html", {
        "schedules": schedules, "launched": FiringOutcome.LAUNCHED,
        "can_create": bool(editable_datastores(request.user)),
    })


def _save(request, form, schedule: Schedule | None):
    data = form.cleaned_data
    destination = None
    if data.get("destination_datastore"):
        destination = Datastore.objects.filter(pk=data["destination_datastore"]).first()
    arguments = dict(
        user=request.user, name=data["name"], operation=data["operation"], cron=data["cron"],
        config=data["config"], destination=destination,
    )
    if schedule is None:
        datastore = Datastore.objects.filter(pk=data["datastore"]).first()
        return schedule_create(datastore=datastore, **arguments)
    return schedule_update(schedule=schedule, **arguments)


def _form_page(request, schedule: Schedule | None):
    initial = {}
    if schedule is not None:
        initial = {
            "name": schedule.name, "datastore": schedule.datastore_id,
            "operation": schedule.operation, "cron": schedule.cron,
            "destination_datastore": schedule.destination_datastore_id,
            "config": "" if not schedule.config else json.dumps(schedule.config),
        }
    form = ScheduleForm(request.POST or None, initial=initial, user=request.user,
                        editing=schedule is not None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                saved = _save(request, form, schedule)
            except errors.RunServiceError as exc:
                for key, msgs in (exc.errors or {"": [exc.detail]}).items():
                    for message in msgs:
                        form.add_error(key if key in form.fields else None, message)
            else:
                messages.success(request, f"Schedule {saved.name} saved. Next firing: "
                                 f"{saved.next_fire_at:%Y-%m-%d %H:%M} UTC."
                                 if saved.next_fire_at else f"Schedule {saved.name} saved.")
                return redirect("schedules:list")
        status = 422
    cron = (form.data.get("cron") or form.data.get("preset") or "") if form.is_bound else (
        initial.get("cron", ""))
    return render(request, "runs/schedule_form.html", {
        "form": form, "schedule": schedule, **_preview(cron),
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def schedule_new(request):
    return _form_page(request, None)


@login_required
@require_http_methods(["GET", "POST"])
def schedule_edit(request, schedule_id: int):
    schedule = _visible_schedule(request.user, schedule_id)
    if not level_allows(datastore_level(request.user, schedule.datastore_id)):
        raise _forbidden(schedule)
    return _form_page(request, schedule)


def _forbidden(schedule: Schedule) -> PermissionDenied:
    return PermissionDenied(f"You need the Editor permission on {schedule.datastore.name}.")


def _preview(cron: str) -> dict:
    cron = (cron or "").strip()
    if not cron:
        return {"cron": "", "firings": [], "cron_error": ""}
    try:
        firings = next_firings(cron, timezone.now())
    except InvalidCron as exc:
        return {"cron": cron, "firings": [], "cron_error": str(exc)}
    return {"cron": cron, "in_words": cron_in_words(cron), "firings": firings, "cron_error": ""}


@login_required
@require_GET
def schedule_preview(request):
    """The next five firings of the cron (or preset) being typed (htmx)."""
    cron = (request.GET.get("cron") or "").strip() or request.GET.get("preset", "")
    return render(request, "runs/schedule_form.html#preview", _preview(cron[:100]))


@login_required
@require_POST
def schedule_toggle(request, schedule_id: int, state: str):
    schedule = _visible_schedule(request.user, schedule_id)
    if state not in ("enable", "disable"):
        raise Http404("Unknown action.")
    try:
        schedule_set_enabled(schedule=schedule, user=request.user, enabled=state == "enable")
    except errors.PermissionDenied as exc:
        raise _forbidden(schedule) from exc
    except errors.RunServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Schedule {schedule.name} {state}d.")
    return redirect("schedules:list")


@login_required
@require_POST
def schedule_remove(request, schedule_id: int):
    schedule = _visible_schedule(request.user, schedule_id)
    try:
        schedule_delete(schedule=schedule, user=request.user)
    except errors.PermissionDenied as exc:
        raise _forbidden(schedule) from exc
    messages.success(request, f"Schedule {schedule.name} deleted. Its Runs stay.")
    return redirect("schedules:list")
