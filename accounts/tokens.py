"""API tokens: issued to oneself, revoked by their owner or an admin; every change audited."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, Role, User
from audit.models import AuditAction
from audit.services import record
from runs.errors import InvalidInput, NotFound

NAME_MAX = ApiToken._meta.get_field("name").max_length


def _state(token: ApiToken) -> dict:
    return {
        "owner": token.user.username,
        "prefix": token.prefix,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
    }


def token_create(
    *, actor: User | None, user: User, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """A token for ``user`` and its key, to show once. ``actor`` None: a server command."""
    if actor is not None and actor.pk != user.pk:
        raise InvalidInput("Tokens are created by their owner only.")
    if not user.is_active:
        raise InvalidInput(f"User {user.username} is deactivated.")
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(f"A token needs a name of 1 to {NAME_MAX} characters.",
                           errors={"name": [f"1 to {NAME_MAX} characters."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry date must be in the future.",
                           errors={"expires_at": ["Must be in the future."]})
    with transaction.atomic():
        token, key = ApiToken.issue(user=user, name=name, expires_at=expires_at)
        record(actor, AuditAction.TOKEN_CREATED, token, None, _state(token))
    return token, key


def visible_token(actor: User, token_id: int) -> ApiToken:
    """Owners see their tokens, admins everyone's; anyone else gets 404."""
    token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
    if token is None or (token.user_id != actor.pk and actor.role != Role.ADMIN):
        raise NotFound("Token not found.")
    return token


def token_revoke(*, actor: User | None, token: ApiToken) -> bool:
    """Revoke now; False when it was revoked already (by someone else, maybe)."""
    with transaction.atomic():
        now = timezone.now()
        revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by=actor
        )
        if revoked:
            record(actor, AuditAction.TOKEN_REVOKED, token, _state(token), {"revoked_at":
                   now.isoformat()})
    token.refresh_from_db()
    return bool(revoked)
