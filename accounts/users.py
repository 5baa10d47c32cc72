"""User administration (admins): create, change role, deactivate and reactivate.

Deactivation takes effect at once: the user's sessions are deleted, their tokens revoked and
their schedules re-checked (they fire as their owner, who may no longer launch anything).
"""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import ApiToken, Role, User
from audit.models import AuditAction
from audit.services import record
from runs.errors import InvalidInput, PermissionDenied


def require_admin(actor: User) -> None:
    if not (actor.is_authenticated and actor.is_active and actor.role == Role.ADMIN):
        raise PermissionDenied("Only admins manage users.")


def _role(role: str) -> str:
    if role not in Role.values:
        raise InvalidInput("Unknown role.", errors={"role": ["Unknown role."]})
    return role


def user_create(
    *, actor: User, username: str, email: str = "", role: str = Role.MEMBER,
    password: str = "",
) -> tuple[User, str]:
    """The new user, and the path of a one-time set-password link ("" when a password was
    given). The link is built from the user's state, so it stops working once used."""
    require_admin(actor)
    username = (username or "").strip()
    errors: dict[str, list[str]] = {}
    try:
        User.username_validator(username)
    except ValidationError as exc:
        errors["username"] = list(exc.messages)
    if not username:
        errors["username"] = ["This field is required."]
    elif User.objects.filter(username__iexact=username).exists():
        errors["username"] = [f"A user named {username!r} already exists."]
    candidate = User(username=username, email=email, role=_role(role))
    if password:
        try:
            validate_password(password, candidate)
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise InvalidInput("Invalid user: " + "; ".join(
            f"{k}: {' '.join(v)}" for k, v in errors.items()), errors=errors)
    try:
        with transaction.atomic():
            if password:
                candidate.set_password(password)
            else:
                candidate.set_unusable_password()
            candidate.save()
            record(actor, AuditAction.USER_CREATED, candidate, None,
                   {"username": username, "email": email, "role": role,
                    "password": "set" if password else "set-password link"})
    except IntegrityError:
        raise InvalidInput(f"A user named {username!r} already exists.",
                           errors={"username": ["Taken."]}) from None
    return candidate, "" if password else set_password_path(candidate)


def set_password_path(user: User) -> str:
    return reverse("set-password", kwargs={
        "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user),
    })


def _last_admin(user: User) -> bool:
    return user.role == Role.ADMIN and not User.objects.filter(
        role=Role.ADMIN, is_active=True).exclude(pk=user.pk).exists()


def user_set_role(*, actor: User, user: User, role: str) -> None:
    require_admin(actor)
    role = _role(role)
    if role == user.role:
        return
    if role != Role.ADMIN and _last_admin(user):
        raise InvalidInput("Assay needs at least one active admin.")
    with transaction.atomic():
        before = user.role
        User.objects.filter(pk=user.pk).update(role=role)
        user.role = role
        record(actor, AuditAction.USER_ROLE_CHANGED, user, {"role": before}, {"role": role})


def user_deactivate(*, actor: User, user: User) -> None:
    """Sessions and tokens stop working now; schedules they own are re-checked now."""
    from runs.schedules import recheck_owner_schedules

    require_admin(actor)
    if user.pk == actor.pk:
        raise InvalidInput("You cannot deactivate yourself.")
    if not user.is_active:
        return
    if _last_admin(user):
        raise InvalidInput("Assay needs at least one active admin.")
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
        user.is_active = False
        now = timezone.now()
        revoked = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=actor
        )
        ended = end_sessions(user)
        record(actor, AuditAction.USER_DEACTIVATED, user, {"active": True},
               {"active": False, "tokens_revoked": revoked, "sessions_ended": ended})
        for schedule in recheck_owner_schedules(user):
            record(None, AuditAction.SCHEDULE_DISABLED, schedule, {"enabled": True},
                   {"enabled": False, "reason": schedule.disabled_reason})


def user_reactivate(*, actor: User, user: User) -> None:
    """Their revoked tokens and disabled schedules stay so: each is renewed deliberately."""
    require_admin(actor)
    if user.is_active:
        return
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=True)
        user.is_active = True
        record(actor, AuditAction.USER_REACTIVATED, user, {"active": False}, {"active": True})


def password_changed(*, user: User) -> None:
    record(user, AuditAction.USER_PASSWORD_CHANGED, user)


def end_sessions(user: User) -> int:
    """Delete the user's open sessions (database sessions store the user id inside)."""
    ended = 0
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            session.delete()
            ended += 1
    return ended
