"""Datastore create and edit pages (managers and admins); writes go through the services."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.permissions import can_create_datastore
from datastores import services
from datastores.forms import DatastoreForm
from datastores.models import Datastore, url_without_password
from runs import errors


@login_required
@require_http_methods(["GET", "POST"])
def datastore_new(request):
    if not can_create_datastore(request.user):
        raise PermissionDenied("Only managers and admins may add datastores.")
    form = DatastoreForm(request.POST or None, user=request.user)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                datastore = services.datastore_create(
                    user=request.user, **form.service_arguments(editing=False)
                )
            except errors.InvalidInput as exc:
                form.add_service_errors(exc.errors, exc.detail)
            else:
                messages.success(request, f"Datastore {datastore.name} added.")
                return redirect("datastores:list")
        status = 422
    return render(request, "datastores/form.html", {"form": form, "datastore": None},
                  status=status)


@login_required
@require_http_methods(["GET", "POST"])
def datastore_edit(request, datastore_id: int):
    datastore = _editable(request, datastore_id)
    initial = {
        "name": datastore.name,
        "source_url": url_without_password(datastore.source_url),
        "enrichment_url": url_without_password(datastore.enrichment_url),
        "enrichment_prefix": datastore.enrichment_prefix,
        "run_limit": datastore.run_limit,
        "connection_limit": datastore.connection_limit,
    }
    form = DatastoreForm(request.POST or None, initial=initial, user=request.user, editing=True)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.datastore_update(
                    user=request.user, datastore=datastore,
                    **form.service_arguments(editing=True),
                )
            except errors.InvalidInput as exc:
                form.add_service_errors(exc.errors, exc.detail)
            else:
                messages.success(request, f"Datastore {datastore.name} saved.")
                return redirect("datastores:edit", datastore.pk)
        status = 422
    return render(request, "datastores/form.html", {"form": form, "datastore": datastore},
                  status=status)


@login_required
@require_POST
def datastore_test(request, datastore_id: int):
    datastore = _editable(request, datastore_id)
    try:
        result = services.datastore_test_connection(user=request.user, datastore=datastore)
    except errors.InvalidInput as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, result)
    return redirect("datastores:edit", datastore.pk)


def _editable(request, datastore_id: int) -> Datastore:
    datastore = get_object_or_404(Datastore, pk=datastore_id)
    try:
        services.authorize_datastore_edit(request.user, datastore)
    except errors.NotFound as exc:
        raise Http404(exc.detail) from None
    except errors.PermissionDenied as exc:
        raise PermissionDenied(exc.detail) from None
    return datastore
