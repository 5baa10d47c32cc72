from datetime import UTC, datetime, time, timedelta

from django.db.models import QuerySet

from audit.models import AuditEvent


def filtered_events(data: dict) -> QuerySet[AuditEvent]:
    """Events matching the cleaned filters of ``AuditFilterForm`` (newest first)."""
    events = AuditEvent.objects.all()
    if data.get("action"):
        events = events.filter(action__in=data["action"])
    if data.get("actor"):
        events = events.filter(actor_name=data["actor"].strip())
    if data.get("object"):
        events = events.filter(object_name__icontains=data["object"].strip())
    if data.get("after"):
        events = events.filter(at__gte=datetime.combine(data["after"], time.min, tzinfo=UTC))
    if data.get("before"):
        end = datetime.combine(data["before"], time.min, tzinfo=UTC) + timedelta(days=1)
        events = events.filter(at__lt=end)
    return events.order_by("-id")
