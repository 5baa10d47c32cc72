"""Bearer-token authentication for the REST API.

The API authenticates *only* with ``Authorization: Bearer <token>``: a browser's session cookie
never authenticates an API call, so the API needs no CSRF protection (a cross-site page cannot
make the browser attach a bearer token).
"""

from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from accounts.models import ApiToken, User
from runs.errors import RunServiceError

# Writing last_used_at on every call would turn each read into a write (and, on SQLite, a
# database-wide write lock); a minute's precision is plenty for "is this token still used?".
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenRefused(RunServiceError):
    """A known token that no longer authenticates: the client is told why (401)."""

    status_code = 401
    code = "token_refused"


def user_for_key(key: str) -> User | None:
    """The active user a clear-text API key belongs to; None for an unknown key.

    Raises TokenRefused for a revoked or expired token, or one of a deactivated user: a
    pipeline's owner then learns that the token must be replaced, not that it was mistyped.
    """
    if not key or len(key) > 200:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=ApiToken.hash_key(key))
        .first()
    )
    if token is None:
        return None
    if token.revoked_at is not None:
        raise TokenRefused(f"This API token ({token.prefix}…) was revoked; create a new one.")
    if token.is_expired:
        raise TokenRefused(
            f"This API token ({token.prefix}…) expired on "
            f"{token.expires_at:%Y-%m-%d %H:%M} UTC; create a new one."
        )
    if not token.user.is_active:
        raise TokenRefused("The user of this API token is deactivated.")
    now = timezone.now()
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_PRECISION:
        # Conditional, so concurrent calls with the same token write at most once a minute.
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_PRECISION),
            pk=token.pk,
        ).update(last_used_at=now)
    return token.user


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        return user_for_key(token.strip())
