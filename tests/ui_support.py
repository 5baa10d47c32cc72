"""Helpers for the web UI tests: Runs in any state, and logged-in clients."""

import datetime as dt
import re

from django.test import Client
from django.utils import timezone

from runs.logs import append_log
from runs.models import ACTIVE_STATUSES, ActorKind, Run, RunContainer, Via


def make_run(datastore, *, status="success", operation="scan", user=None, created_at=None,
             logs=(), units=(), **fields) -> Run:
    """A Run built the way the system builds one: active first, then (maybe) terminal.

    Terminal rows are immutable in the database, so everything is written while the Run is
    still running, and the final status lands in the last UPDATE.
    """
    run = Run.objects.create(
        destination_datastore=fields.pop("destination_datastore", None),
        operation=operation,
        status="queued" if status == "queued" else "running",
        datastore=datastore,
        triggered_by_kind=ActorKind.USER if user else ActorKind.SYSTEM,
        triggered_by_user=user,
        triggered_via=Via.WEB,
    )
    for line in logs:
        message, _, level = line.partition("|")
        append_log(run.pk, message, level=level or "info")
    for position, (name, unit_status, metrics) in enumerate(units):
        RunContainer.objects.create(run=run, name=name, status=unit_status, metrics=metrics,
                                    position=position)
    now = timezone.now()
    final = {"created_at": created_at or now, **fields}
    if status != "queued":
        final.setdefault("started_at", (created_at or now) + dt.timedelta(seconds=1))
    if status not in ACTIVE_STATUSES:
        final.setdefault("finished_at", final["started_at"] + dt.timedelta(seconds=42))
        if status == "aborted":
            final.setdefault("aborted_by_kind", ActorKind.USER if user else ActorKind.SYSTEM)
            final.setdefault("aborted_by_user", user)
    Run.objects.filter(pk=run.pk).update(status=status, **final)
    return Run.objects.get(pk=run.pk)


def client_for(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def csrf_token(client: Client, url: str) -> str:
    """The token a real browser would post back, read from a page's form."""
    html = client.get(url).content.decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, f"no CSRF token in {url}"
    return match.group(1)


def run_ids(html: str) -> list[int]:
    """Run ids of the Activity rows, in page order."""
    return [int(i) for i in re.findall(r'<div class="run" id="run-(\d+)">', html)]
