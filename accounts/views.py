"""Teams pages (admins only). Every change goes through ``accounts.services``."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.forms import MemberForm, PreferencesForm, TeamDatastoresForm, TeamForm
from accounts.models import Role, Team, User


def admin_required(view):
    @wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        if request.user.role != Role.ADMIN:
            raise PermissionDenied("Only admins manage teams.")
        return view(request, *args, **kwargs)

    return wrapper


@admin_required
@require_http_methods(["GET", "POST"])
def team_list(request):
    form = TeamForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                team = services.team_create(actor=request.user, **form.cleaned_data)
            except services.TeamError as exc:
                form.add_error("name", exc.detail)
            else:
                messages.success(request, f"Team {team.name} created.")
                return redirect("accounts:team", team.pk)
        status = 422
    teams = Team.objects.annotate(
        members_count=Count("members", distinct=True),
        datastores_count=Count("datastores", distinct=True),
    ).order_by("-is_public", "name")
    return render(request, "accounts/teams.html", {"teams": teams, "form": form}, status=status)


@admin_required
@require_http_methods(["GET", "POST"])
def team_detail(request, team_id: int):
    team = get_object_or_404(Team, pk=team_id)
    form = TeamForm(request.POST or None, initial={"name": team.name, "level": team.level})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.team_update(actor=request.user, team=team, **form.cleaned_data)
            except services.TeamError as exc:
                form.add_error("name", exc.detail)
            else:
                messages.success(request, f"Team {team.name} saved.")
                return redirect("accounts:team", team.pk)
        status = 422
        team.refresh_from_db()
    return render(request, "accounts/team.html", {
        "team": team,
        "form": form,
        "members": team.members.order_by("username"),
        "member_form": MemberForm(team=team),
        "datastores_form": TeamDatastoresForm(initial={"datastores": team.datastores.all()}),
    }, status=status)


@admin_required
@require_POST
def team_delete(request, team_id: int):
    team = get_object_or_404(Team, pk=team_id)
    try:
        services.team_delete(actor=request.user, team=team)
    except services.TeamError as exc:
        messages.error(request, exc.detail)
        return redirect("accounts:team", team.pk)
    messages.success(request, f"Team {team.name} deleted.")
    return redirect("accounts:teams")


@admin_required
@require_POST
def member_add(request, team_id: int):
    team = get_object_or_404(Team, pk=team_id)
    form = MemberForm(request.POST, team=team)
    if not form.is_valid():
        messages.error(request, "Choose a user who is not in the team yet.")
        return redirect("accounts:team", team.pk)
    try:
        services.team_add_member(actor=request.user, team=team, user=form.cleaned_data["user"])
    except services.TeamError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{form.cleaned_data['user'].username} added to {team.name}.")
    return redirect("accounts:team", team.pk)


@admin_required
@require_POST
def member_remove(request, team_id: int, user_id: int):
    team = get_object_or_404(Team, pk=team_id)
    user = get_object_or_404(User, pk=user_id)
    try:
        services.team_remove_member(actor=request.user, team=team, user=user)
    except services.TeamError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{user.username} removed from {team.name}.")
    return redirect("accounts:team", team.pk)


@admin_required
@require_POST
def team_datastores(request, team_id: int):
    team = get_object_or_404(Team, pk=team_id)
    form = TeamDatastoresForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown datastore.")
        return redirect("accounts:team", team.pk)
    services.team_set_datastores(
        actor=request.user, team=team, datastores=form.cleaned_data["datastores"]
    )
    messages.success(request, f"Datastores of {team.name} saved.")
    return redirect("accounts:team", team.pk)


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request):
    """The signed-in user's own display preferences (their time zone)."""
    form = PreferencesForm(request.POST or None, initial={"time_zone": request.user.time_zone})
    if request.method == "POST":
        if form.is_valid():
            request.user.time_zone = form.cleaned_data["time_zone"]
            request.user.save(update_fields=["time_zone"])
            messages.success(request, f"Times are now shown in {request.user.time_zone}.")
            return redirect("preferences")
        return render(request, "accounts/preferences.html", {"form": form}, status=422)
    return render(request, "accounts/preferences.html", {"form": form})
