"""Notification rules of a datastore (its editors) and their delivery log (admins)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from datastores.models import Datastore
from notifications import services
from notifications.forms import RuleForm
from notifications.models import Delivery, NotificationRule
from runs import errors
from runs.services import authorize_datastore


def _editable(request, datastore_id: int) -> Datastore:
    datastore = get_object_or_404(Datastore, pk=datastore_id)
    try:
        authorize_datastore(request.user, datastore)
    except errors.NotFound as exc:
        raise Http404(exc.detail) from None
    except errors.PermissionDenied as exc:
        raise PermissionDenied(exc.detail) from None
    return datastore


@login_required
@require_http_methods(["GET", "POST"])
def rules(request, datastore_id: int):
    datastore = _editable(request, datastore_id)
    form = RuleForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                rule = services.rule_create(user=request.user, datastore=datastore,
                                            **form.cleaned_data)
            except errors.InvalidInput as exc:
                form.add_service_errors(exc.errors)
            else:
                messages.success(request, f"Notification rule {rule.name} added.")
                return redirect("notifications:rules", datastore.pk)
        status = 422
    return render(request, "notifications/rules.html", {
        "datastore": datastore, "form": form,
        "rules": NotificationRule.objects.filter(datastore=datastore),
    }, status=status)


@login_required
@require_POST
def rule_delete(request, datastore_id: int, rule_id: int):
    datastore = _editable(request, datastore_id)
    rule = get_object_or_404(NotificationRule, pk=rule_id, datastore=datastore)
    services.rule_delete(user=request.user, rule=rule)
    messages.success(request, f"Notification rule {rule.name} deleted.")
    return redirect("notifications:rules", datastore.pk)


@login_required
@require_http_methods(["GET"])
def deliveries(request, datastore_id: int):
    if not request.user.is_admin_role:
        raise PermissionDenied("Only admins see the delivery log.")
    datastore = get_object_or_404(Datastore, pk=datastore_id)
    log = (Delivery.objects.filter(rule__datastore=datastore).select_related("rule")
           .prefetch_related("attempt_log")[:200])
    return render(request, "notifications/deliveries.html",
                  {"datastore": datastore, "deliveries": log})
