"""The one way an audit event is written.

Callers record inside the transaction of the change they describe: the change and its record
commit together, or neither does.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from audit.models import AuditEvent

SYSTEM = "System"


def record(
    actor,
    action: str,
    obj: models.Model | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    *,
    object_type: str = "",
    object_name: str = "",
) -> AuditEvent:
    """Record that ``actor`` (a user, or None for Assay itself) did ``action`` to ``obj``.

    ``before``/``after`` hold only the fields that matter (never a secret).
    """
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    return AuditEvent.objects.create(
        action=action,
        actor_id=user.pk if user else None,
        actor_name=user.username if user else SYSTEM,
        object_type=object_type or (obj._meta.model_name if obj is not None else ""),
        object_id=obj.pk if obj is not None else None,
        object_name=(object_name or str(obj))[:255] if obj is not None else object_name[:255],
        before=before,
        after=after,
    )
