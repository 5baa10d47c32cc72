"""Writes on notification rules: editors of the datastore only; every input vetted."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.models import User
from datastores.credentials import encrypt
from datastores.models import Datastore
from notifications.models import Event, NotificationRule, PayloadFormat
from notifications.webhook_url import WebhookRefused, vet_webhook_url
from runs.errors import InvalidInput
from runs.services import authorize_datastore

MIN_SECRET_LENGTH = 16


def rule_create(*, user: User, datastore: Datastore, name: str, events: list[str],
                webhook_url: str = "", webhook_secret: str = "",
                payload_format: str = PayloadFormat.ASSAY, email_to: str = "") -> NotificationRule:
    authorize_datastore(user, datastore)
    errors: dict[str, list[str]] = {}
    name = name.strip()
    if not name:
        errors["name"] = ["This field is required."]
    if not events or set(events) - set(Event.values):
        errors["events"] = ["Choose at least one event."]
    if payload_format not in PayloadFormat.values:
        errors["payload_format"] = ["Unknown format."]
    webhook_url, email_to = webhook_url.strip(), email_to.strip()
    if not webhook_url and not email_to:
        errors["webhook_url"] = ["Give a webhook URL, an email address, or both."]
    if webhook_url:
        try:
            webhook_url = vet_webhook_url(webhook_url)
        except WebhookRefused as exc:
            errors["webhook_url"] = [exc.detail if user.is_admin_role else str(exc)]
        if len(webhook_secret) < MIN_SECRET_LENGTH:
            errors["webhook_secret"] = [
                f"The signing secret needs at least {MIN_SECRET_LENGTH} characters."
            ]
    if email_to:
        if not settings.NOTIFY_BY_EMAIL:
            errors["email_to"] = ["No email backend is configured on this Assay."]
        else:
            errors.update(_email_errors(email_to))
    if errors:
        raise InvalidInput("The rule has errors.", errors=errors)
    return NotificationRule.objects.create(
        datastore=datastore, name=name[:100], events=sorted(set(events)),
        webhook_url=webhook_url,
        webhook_secret_encrypted=encrypt(webhook_secret) if webhook_url else "",
        payload_format=payload_format, email_to=email_to, created_by=user,
    )


def _email_errors(email_to: str) -> dict[str, list[str]]:
    for address in (a.strip() for a in email_to.split(",")):
        try:
            validate_email(address)
        except ValidationError:
            return {"email_to": [f"{address!r} is not an email address."]}
    return {}


def rule_delete(*, user: User, rule: NotificationRule) -> None:
    authorize_datastore(user, rule.datastore)
    rule.delete()
