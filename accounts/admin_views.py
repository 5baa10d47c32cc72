"""Users (admins) and everyone's own profile: password and API tokens.

Every change goes through ``accounts.users`` / ``accounts.tokens``; views only translate.
"""

from datetime import UTC, datetime, time

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import tokens, users
from accounts.access import access_of_user
from accounts.forms import RoleForm, TokenForm, UserCreateForm
from accounts.models import ApiToken, Team, User
from accounts.views import admin_required
from runs import errors


def _token_expiry(day) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day else None


# -- profile -----------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def profile(request):
    """The user's password and tokens. A new token's key is in this one answer only."""
    password_form = PasswordChangeForm(request.user)
    token_form = TokenForm()
    new_key = ""
    status = 200
    if request.method == "POST" and request.POST.get("form") == "password":
        password_form = PasswordChangeForm(request.user, request.POST)
        if password_form.is_valid():
            password_form.save()
            update_session_auth_hash(request, password_form.user)
            users.password_changed(user=request.user)
            messages.success(request, "Password changed.")
            return redirect("profile:home")
        status = 422
    elif request.method == "POST" and request.POST.get("form") == "token":
        token_form = TokenForm(request.POST)
        if token_form.is_valid():
            try:
                token, new_key = tokens.token_create(
                    actor=request.user, user=request.user, name=token_form.cleaned_data["name"],
                    expires_at=_token_expiry(token_form.cleaned_data["expires_on"]),
                )
            except errors.InvalidInput as exc:
                token_form.add_error("expires_on" if "expires_at" in exc.errors else "name",
                                     exc.detail)
            else:
                token_form = TokenForm()
                messages.success(request, f"Token {token.name} created. Copy its key now: "
                                 "it is shown only once.")
        if not new_key:
            status = 422
    elif request.method == "POST":
        status = 400
    # The page is mostly about tokens: the password field must not take the focus.
    password_form.fields["old_password"].widget.attrs.pop("autofocus", None)
    response = render(request, "accounts/profile.html", {
        "password_form": password_form,
        "token_form": token_form,
        "new_key": new_key,
        "tokens": ApiToken.objects.filter(user=request.user),
    }, status=status)
    if new_key:
        response["Cache-Control"] = "no-store"  # the key must not stay in any cache
    return response


@login_required
@require_POST
def token_revoke(request, token_id: int):
    try:
        token = tokens.visible_token(request.user, token_id)
    except errors.NotFound:
        raise Http404("Token not found.") from None
    if tokens.token_revoke(actor=request.user, token=token):
        messages.success(request, f"Token {token.name} of {token.user.username} revoked.")
    else:
        messages.info(request, f"Token {token.name} was revoked already.")
    if token.user_id != request.user.pk:
        return redirect("users:detail", token.user_id)
    return redirect("profile:home")


# -- users (admins) ----------------------------------------------------------------------------
@admin_required
@require_http_methods(["GET", "POST"])
def user_list(request):
    form = UserCreateForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                user, link = users.user_create(actor=request.user, **form.cleaned_data)
            except errors.InvalidInput as exc:
                for key, msgs in exc.errors.items():
                    for message in msgs:
                        form.add_error(key if key in form.fields else None, message)
            else:
                if not link:
                    messages.success(request, f"User {user.username} created.")
                    return redirect("users:detail", user.pk)
                response = render(request, "accounts/user_created.html", {
                    "created": user, "link": request.build_absolute_uri(link),
                })
                response["Cache-Control"] = "no-store"
                return response
        status = 422
    people = User.objects.order_by("username").prefetch_related(
        Prefetch("teams", queryset=Team.objects.order_by("name"))
    )
    return render(request, "accounts/users.html", {"people": people, "form": form},
                  status=status)


@admin_required
@require_http_methods(["GET"])
def user_detail(request, user_id: int):
    person = get_object_or_404(User, pk=user_id)
    return render(request, "accounts/user.html", {
        "person": person,
        "role_form": RoleForm(initial={"role": person.role}),
        "tokens": ApiToken.objects.filter(user=person),
        "access": access_of_user(person),
        "teams": person.teams.order_by("name"),
    })


@admin_required
@require_POST
def user_role(request, user_id: int):
    person = get_object_or_404(User, pk=user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown role.")
        return redirect("users:detail", person.pk)
    try:
        users.user_set_role(actor=request.user, user=person, role=form.cleaned_data["role"])
    except errors.RunServiceError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"{person.username} is now {person.get_role_display()}.")
    return redirect("users:detail", person.pk)


@admin_required
@require_POST
def user_active(request, user_id: int, state: str):
    person = get_object_or_404(User, pk=user_id)
    try:
        if state == "deactivate":
            users.user_deactivate(actor=request.user, user=person)
            messages.success(request, f"{person.username} deactivated: their sessions and "
                             "tokens stopped working, their schedules were re-checked.")
        elif state == "reactivate":
            users.user_reactivate(actor=request.user, user=person)
            messages.success(request, f"{person.username} reactivated.")
        else:
            raise Http404("Unknown action.")
    except errors.RunServiceError as exc:
        messages.error(request, exc.detail)
    return redirect("users:detail", person.pk)


@admin_required
@require_POST
def user_set_password_link(request, user_id: int):
    """A fresh one-time link for a user who lost theirs (or their password)."""
    person = get_object_or_404(User, pk=user_id)
    if not person.is_active:
        messages.error(request, f"{person.username} is deactivated.")
        return redirect("users:detail", person.pk)
    response = render(request, "accounts/user_created.html", {
        "created": person,
        "link": request.build_absolute_uri(users.set_password_path(person)),
        "renewed": True,
    })
    response["Cache-Control"] = "no-store"
    return response
