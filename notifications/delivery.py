"""What a finished Run notifies, and one attempt at delivering it.

``dispatch`` runs in the notifications worker, never in the Run's: it matches the Run's outcome
against the datastore's rules and creates one Delivery per rule and channel (once: a repeated
dispatch finds them made). ``attempt`` tries one delivery once and logs the attempt; the task
retries with exponential backoff until ``WEBHOOK_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from enum import Enum

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F

from datastores.credentials import decrypt
from notifications.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    NotificationRule,
    PayloadFormat,
)
from notifications.webhook_url import WebhookRefused, vetted_target
from runs.models import Run, RunStatus

logger = logging.getLogger(__name__)


class Outcome(Enum):
    DONE = "done"  # delivered, given up, or nothing left to do
    RETRY = "retry"


def events_of(run: Run) -> list[str]:
    from datastores.models import Anomaly

    events = []
    if run.status == RunStatus.FAILURE:
        events.append(Event.FAILURE)
    elif run.status == RunStatus.ABORTED:
        events.append(Event.ABORTED)
    elif run.status == RunStatus.SUCCESS and run.has_warnings:
        events.append(Event.WARNINGS)
    if Anomaly.objects.filter(run_id=run.pk).exists():
        events.append(Event.NEW_ANOMALIES)
    return [str(e) for e in events]


def dispatch(run_id: int) -> list[int]:
    """Create the deliveries a finished Run calls for; return their ids (new ones only)."""
    run = Run.objects.select_related("datastore").filter(pk=run_id).first()
    if run is None or not run.is_terminal:
        return []
    events = events_of(run)
    created = []
    for rule in NotificationRule.objects.filter(datastore_id=run.datastore_id, enabled=True):
        matched = [e for e in events if e in rule.events]
        if not matched:
            continue
        channels = (["webhook"] if rule.webhook_url else []) + (
            ["email"] if rule.email_to and settings.NOTIFY_BY_EMAIL else []
        )
        for channel in channels:
            try:
                with transaction.atomic():
                    delivery = Delivery.objects.create(
                        rule=rule, run_id=run.pk, channel=channel, events=matched
                    )
            except IntegrityError:
                continue  # dispatched before
            created.append(delivery.pk)
    return created


def summary_of(run: Run, events: list[str]) -> str:
    labels = ", ".join(Event(e).label for e in events)
    return (
        f"Assay: {run.get_operation_display()} #{run.pk} on {run.datastore.name} ended "
        f"{run.get_status_display()}{' with warnings' if run.has_warnings else ''} ({labels})."
    )


def payload(rule: NotificationRule, run: Run, events: list[str]) -> dict:
    from datastores.models import Anomaly

    summary = summary_of(run, events)
    if rule.payload_format == PayloadFormat.SLACK:
        return {"text": summary}
    return {
        "events": events,
        "summary": summary,
        "run": {
            "id": run.pk,
            "operation": run.operation,
            "status": run.status,
            "has_warnings": run.has_warnings,
            "datastore": {"id": run.datastore_id, "name": run.datastore.name},
            "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "error": run.error,
        },
        "new_anomalies": Anomaly.objects.filter(run_id=run.pk).count(),
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>`` (what receivers verify)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def attempt(delivery_id: int) -> Outcome:
    delivery = (
        Delivery.objects.select_related("rule", "rule__datastore")
        .filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .first()
    )
    if delivery is None:
        return Outcome.DONE
    run = Run.objects.select_related("datastore").filter(pk=delivery.run_id).first()
    number = delivery.attempts + 1
    Delivery.objects.filter(pk=delivery.pk).update(attempts=F("attempts") + 1)
    started = time.monotonic()
    status_code, error, final = None, "", False
    try:
        if run is None:
            error, final = "The Run was deleted before its notification went out.", True
        elif delivery.channel == "email":
            body = summary_of(run, delivery.events)
            recipients = [a.strip() for a in delivery.rule.email_to.split(",") if a.strip()]
            send_mail(body[:150], body, None, recipients)
        else:
            status_code = _post(delivery, run)
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
    except WebhookRefused as exc:
        error, final = f"Refused: {exc.detail}", True
    except httpx.TimeoutException:
        error = f"No answer within {settings.WEBHOOK_TIMEOUT:g} s."
    except (httpx.HTTPError, OSError) as exc:
        error = f"Could not deliver ({type(exc).__name__})."
    duration_ms = int((time.monotonic() - started) * 1000)
    DeliveryAttempt.objects.create(delivery=delivery, number=number, status_code=status_code,
                                   error=error[:300], duration_ms=duration_ms)
    if not error:
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.DELIVERED)
        return Outcome.DONE
    if final or number >= settings.WEBHOOK_MAX_ATTEMPTS:
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.FAILED)
        logger.warning("notification %s gave up after %s attempt(s): %s", delivery.pk, number,
                       error)
        return Outcome.DONE
    return Outcome.RETRY


def _post(delivery: Delivery, run: Run) -> int:
    rule = delivery.rule
    target = vetted_target(rule.webhook_url)
    body = json.dumps(payload(rule, run, delivery.events), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": "Assay-Webhook",
        "X-Assay-Delivery": str(delivery.pk),
        "X-Assay-Timestamp": timestamp,
        "X-Assay-Signature": signature(decrypt(rule.webhook_secret_encrypted), timestamp, body),
    }
    # No redirects: a vetted URL could otherwise send the request anywhere.
    with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT, follow_redirects=False) as client:
        request = client.build_request(
            "POST", target.url, content=body, headers=headers,
            extensions={"sni_hostname": target.hostname},
        )
        return client.send(request).status_code


def backoff(attempts_made: int) -> float:
    return settings.WEBHOOK_RETRY_BACKOFF * 2 ** (attempts_made - 1)
