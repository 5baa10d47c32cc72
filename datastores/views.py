"""Datastore create and edit pages (managers and admins); writes go through the services."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import access_of_datastore
from accounts.models import Level
from accounts.permissions import can_create_datastore
from datastores import services
from datastores.forms import DatastoreForm, DatastoreTeamsForm
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
    return render(request, "datastores/form.html", {
        "form": form, "datastore": datastore,
        "teams_form": DatastoreTeamsForm(
            user=request.user, datastore=datastore,
            initial={"teams": datastore.teams.all()},
        ),
    }, status=status)


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


@login_required
@require_http_methods(["GET", "POST"])
def datastore_delete(request, datastore_id: int):
    """GET: what deleting means, with a button; POST: delete."""
    from runs.models import Run, Schedule

    datastore = _editable(request, datastore_id)
    if request.method == "POST":
        try:
            services.datastore_delete(user=request.user, datastore=datastore)
        except errors.RunServiceError as exc:
            messages.error(request, exc.detail)
            return redirect("datastores:delete", datastore.pk)
        messages.success(request, f"Datastore {datastore.name} deleted. Its Runs are kept.")
        return redirect("datastores:list")
    return render(request, "datastores/delete.html", {
        "datastore": datastore,
        "runs": Run.objects.filter(datastore=datastore).count(),
        "containers": datastore.containers.count(),
        "schedules": Schedule.objects.filter(datastore=datastore).count(),
        "teams": datastore.teams.order_by("name"),
    })


@login_required
@require_POST
def datastore_teams(request, datastore_id: int):
    datastore = _editable(request, datastore_id)
    form = DatastoreTeamsForm(request.POST, user=request.user, datastore=datastore)
    if not form.is_valid():
        messages.error(request, "Unknown team.")
        return redirect("datastores:edit", datastore.pk)
    try:
        services.datastore_set_teams(
            user=request.user, datastore=datastore, teams=list(form.cleaned_data["teams"])
        )
    except errors.RunServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Teams of {datastore.name} saved.")
    return redirect("datastores:edit", datastore.pk)


@login_required
@require_GET
def datastore_access(request, datastore_id: int):
    """Who may do what on the datastore: admins, and managers who may edit it."""
    datastore = _editable(request, datastore_id)
    people, everyone = access_of_datastore(datastore)
    return render(request, "datastores/access.html", {
        "datastore": datastore, "people": people, "everyone": everyone,
        "levels": list(reversed(Level.choices)),
    })
