"""Notifications: signed webhooks against a local receiver, retries with backoff, a hanging
receiver that delays no Run, the delivery log; rules managed by editors, hostile URLs refused."""

import hashlib
import hmac
import json
import os

import pytest
from django.core import mail
from django.test import Client

from notifications import delivery as notify
from notifications.models import Delivery, DeliveryStatus, NotificationRule
from notifications.services import rule_create
from runs.models import Run
from runs.services import run_launch
from tests.conftest import wait_for
from tests.ops_support import QueueWorkerProcess, Receiver
from tests.ui_support import client_for, csrf_token, make_run

SECRET = "s3cret-signing-key-of-the-receiver"
START = 60


@pytest.fixture
def receiver():
    made = []

    def make(script):
        made.append(Receiver(script))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def failing_datastore(datastore, demo_source_url):
    """A datastore whose source file disappears after it was saved: every Run fails."""
    datastore.source_url = demo_source_url
    datastore.save()
    os.remove(demo_source_url.removeprefix("sqlite:///"))
    return datastore


def verifies(headers: dict, body: bytes) -> bool:
    expected = hmac.new(SECRET.encode(), headers["X-Assay-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Assay-Signature"], f"sha256={expected}")


def status(run) -> str:
    return Run.objects.values_list("status", flat=True).get(pk=run.pk)


# -- with real workers -------------------------------------------------------------------------
@pytest.mark.worker
@pytest.mark.both_backends
def test_signed_webhook_retried_with_backoff_and_logged(
    worker_process, tmp_path, receiver, editor, admin, datastore, demo_source_url
):
    hook = receiver([500, 500, 200])
    rule_create(user=editor, datastore=failing_datastore(datastore, demo_source_url),
                name="on call", events=["failure"], webhook_url=hook.url, webhook_secret=SECRET)
    backoff = 0.5
    worker_process()
    notifier = QueueWorkerProcess(tmp_path, "notifications",
                                  extra_env={"WEBHOOK_RETRY_BACKOFF": str(backoff)})
    notifier.start()
    try:
        run = run_launch(user=editor, datastore=datastore, operation="sync", config={})
        wait_for(lambda: len(hook.requests) == 3, timeout=START,
                 message=f"3 attempts not received: {len(hook.requests)}")
    finally:
        notifier.stop()
    assert status(run) == "failure"

    times = [t for t, _, _ in hook.requests]
    for (_, headers, body) in hook.requests:
        assert verifies(headers, body)
        sent = json.loads(body)
        assert sent["events"] == ["failure"] and sent["run"]["id"] == run.pk
        assert sent["run"]["status"] == "failure"
    # Exponential backoff: at least 0.5 s, then at least 1 s between attempts.
    assert times[1] - times[0] >= backoff and times[2] - times[1] >= 2 * backoff, times
    # A forged body does not verify.
    assert not verifies(hook.requests[0][1], hook.requests[0][2] + b" ")

    sent = Delivery.objects.get(run_id=run.pk)
    wait_for(lambda: Delivery.objects.get(pk=sent.pk).status == DeliveryStatus.DELIVERED,
             timeout=10)
    attempts = list(sent.attempt_log.values_list("number", "status_code", "error"))
    assert attempts == [(1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 200, "")]

    page = client_for(admin).get(f"/datastores/{datastore.pk}/notifications/deliveries/")
    text = page.content.decode()
    assert page.status_code == 200
    assert f"#{run.pk}" in text and text.count("HTTP 500 HTTP 500") == 2 and "Delivered" in text
    assert client_for(editor).get(
        f"/datastores/{datastore.pk}/notifications/deliveries/").status_code == 403


@pytest.mark.worker
def test_hanging_receiver_delays_no_run(worker_process, tmp_path, receiver, editor, datastore,
                                        demo_source_url):
    hook = receiver(["hang"])
    rule_create(user=editor, datastore=failing_datastore(datastore, demo_source_url),
                name="slow", events=["failure"], webhook_url=hook.url, webhook_secret=SECRET)
    worker_process()
    notifier = QueueWorkerProcess(tmp_path, "notifications",
                                  extra_env={"WEBHOOK_TIMEOUT": "3", "WEBHOOK_RETRY_BACKOFF": "30"})
    notifier.start()
    try:
        first = run_launch(user=editor, datastore=datastore, operation="sync", config={})
        wait_for(lambda: hook.requests, timeout=START, message="the webhook was not called")
        # The receiver holds the first notification; the next Runs start and end regardless.
        more = [run_launch(user=editor, datastore=datastore, operation="sync", config={})
                for _ in range(2)]
        wait_for(lambda: all(status(r) == "failure" for r in more), timeout=START)
        assert not hook.released.is_set() and status(first) == "failure"
        sent = Delivery.objects.get(run_id=first.pk)
        attempt = wait_for(lambda: sent.attempt_log.first(), timeout=15)
        assert attempt.error == "No answer within 3 s." and attempt.status_code is None
        assert 3000 <= attempt.duration_ms < 10000
        assert Delivery.objects.get(pk=sent.pk).status == DeliveryStatus.PENDING  # retried later
    finally:
        hook.release()
        notifier.stop()


# -- in this process ---------------------------------------------------------------------------
@pytest.mark.both_backends
def test_events_matched_slack_payload_and_email(db, settings, receiver, editor, datastore):
    settings.NOTIFY_BY_EMAIL = True
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    hook = receiver([200])
    rule_create(user=editor, datastore=datastore, name="slack", events=["warnings", "aborted"],
                webhook_url=hook.url, webhook_secret=SECRET, payload_format="slack",
                email_to="owner@example.com")
    rule_create(user=editor, datastore=datastore, name="failures only", events=["failure"],
                email_to="other@example.com")
    quiet = make_run(datastore, operation="scan", status="success")
    warned = make_run(datastore, operation="scan", status="success", has_warnings=True)
    assert notify.dispatch(quiet.pk) == []
    created = notify.dispatch(warned.pk)
    assert len(created) == 2 and notify.dispatch(warned.pk) == []  # once only
    for delivery_id in created:
        assert notify.attempt(delivery_id) is notify.Outcome.DONE
    (_, headers, body), = hook.requests
    assert verifies(headers, body)
    text = json.loads(body)["text"]
    assert f"Scan #{warned.pk} on {datastore.name} ended Success with warnings" in text
    assert [m.to for m in mail.outbox] == [["owner@example.com"]]
    assert f"#{warned.pk}" in mail.outbox[0].subject


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/x", "file:///etc/passwd", "http://user:pw@127.0.0.1/x", "javascript:1",
    "http://127.0.0.1:99999/", "http:///nohost", "http://no-such-host.invalid/",
    "http://a,b/", "http://10.1.2.3/",
])
def test_hostile_webhook_urls_are_refused_uniformly(db, settings, url, editor, admin, datastore):
    settings.DATASTORE_DENIED_HOSTS = ["10.0.0.0/8"]
    from runs.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        rule_create(user=editor, datastore=datastore, name="x", events=["failure"],
                    webhook_url=url, webhook_secret=SECRET)
    assert refused.value.errors["webhook_url"] == [
        "Assay cannot post to this webhook URL: it is not allowed here. An admin can see why."
    ]
    with pytest.raises(InvalidInput) as for_admin:
        rule_create(user=admin, datastore=datastore, name="x", events=["failure"],
                    webhook_url=url, webhook_secret=SECRET)
    assert "An admin can see why" not in for_admin.value.errors["webhook_url"][0]
    assert not NotificationRule.objects.exists()


def test_rules_page_for_editors_only_csrf_and_no_secret(db, editor, viewer, outsider, datastore,
                                                       receiver):
    hook = receiver([200])
    url = f"/datastores/{datastore.pk}/notifications/"
    assert client_for(viewer).get(url).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    assert Client().get(url).status_code == 302  # to the login page

    client = client_for(editor, csrf=True)
    form = {"name": "on call", "events": ["failure", "new_anomalies"], "webhook_url": hook.url,
            "webhook_secret": SECRET, "payload_format": "assay", "email_to": ""}
    assert client.post(url, form).status_code == 403  # no CSRF token
    form["csrfmiddlewaretoken"] = csrf_token(client, url)
    short = client.post(url, {**form, "webhook_secret": "short"})
    assert short.status_code == 422 and "at least 16 characters" in short.content.decode()
    assert "short" not in short.content.decode().replace("short>", "")
    email = client.post(url, {**form, "email_to": "x@example.com"})
    assert "No email backend is configured" in email.content.decode()

    page = client.post(url, form, follow=True)
    text = page.content.decode()
    assert "Notification rule on call added." in text
    assert "Failure, New anomalies" in text and hook.url in text
    assert SECRET not in text
    rule = NotificationRule.objects.get()
    assert SECRET not in rule.webhook_secret_encrypted

    delete = f"{url}{rule.pk}/delete/"
    assert client_for(viewer, csrf=False).post(delete).status_code == 403
    assert client.post(delete, {"csrfmiddlewaretoken": form["csrfmiddlewaretoken"]},
                       follow=True).status_code == 200
    assert not NotificationRule.objects.exists()


@pytest.mark.both_backends
def test_an_attempt_connects_to_the_address_it_vetted(db, receiver, editor, datastore,
                                                      monkeypatch):
    """DNS rebinding: the name answers the receiver's address while it is vetted (when the rule
    is saved and before the attempt), then another. The attempt connects to the vetted
    address, naming the host in the Host header."""
    import socket

    hook = receiver([200])
    port = int(hook.url.rsplit(":", 1)[1].split("/")[0])
    real = socket.getaddrinfo
    answers = []

    def rebinding(host, *args, **kwargs):
        if host != "hooks.example.test":
            return real(host, *args, **kwargs)
        answers.append(host)
        # Nothing listens there: a connection to it is refused at once.
        address = "127.0.0.1" if len(answers) <= 2 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    rule_create(user=editor, datastore=datastore, name="rebind", events=["failure"],
                webhook_url=hook.url.replace("127.0.0.1", "hooks.example.test"),
                webhook_secret=SECRET)
    run = make_run(datastore, operation="scan", status="failure")
    (delivery_id,) = notify.dispatch(run.pk)
    assert notify.attempt(delivery_id) is notify.Outcome.DONE
    assert len(answers) == 2  # saved, then vetted before the attempt; never by the client
    (_, headers, body), = hook.requests
    assert headers["Host"] == f"hooks.example.test:{port}" and verifies(headers, body)
    assert Delivery.objects.get(pk=delivery_id).status == DeliveryStatus.DELIVERED
