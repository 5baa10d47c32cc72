"""Messages to workers. A message only names a Run; the Run's row says everything else, and is
the outbox: a Run whose message could not be sent (``send_count`` 0) is sent by housekeeping
once the broker answers again.

Tasks are sent by name, so neither the web nor housekeeping imports the task module.
"""

import logging

from celery import current_app
from django.conf import settings
from django.db.models import F
from django.db.models.functions import Now
from kombu.exceptions import ChannelError, KombuError

from runs.models import ACTIVE_STATUSES, Run

logger = logging.getLogger(__name__)

EXECUTE_TASK = "runs.execute_run"
RUNS_QUEUE = "celery"
HOUSEKEEPING_QUEUE = "housekeeping"


def send_execute(run_id: int) -> bool:
    """Send "execute Run #id"; False (logged) when the broker cannot take it now."""
    try:
        current_app.send_task(
            EXECUTE_TASK, args=[run_id], queue=RUNS_QUEUE,
            retry_policy={"max_retries": 1, "interval_start": 0.2},
        )
    except (KombuError, OSError):
        logger.warning("broker unavailable: Run %s stays in the outbox", run_id, exc_info=True)
        return False
    return True


def send_or_keep(run_id: int) -> None:
    """Send a queued Run's message; if the broker refuses it, mark the Run unsent (the outbox:
    housekeeping sends it as soon as the broker is back). Never raises for the broker."""
    if not send_execute(run_id):
        Run.objects.filter(pk=run_id, worker_token=None, status__in=ACTIVE_STATUSES).update(
            send_count=0)


def resend(run_id: int) -> bool:
    """Count a send, then send (housekeeping). False: the Run was claimed or ended meanwhile, or
    the broker refused (the count is then taken back)."""
    unclaimed = Run.objects.filter(pk=run_id, worker_token=None, status__in=ACTIVE_STATUSES)
    if not unclaimed.update(send_count=F("send_count") + 1, enqueued_at=Now()):
        return False
    if send_execute(run_id):
        return True
    Run.objects.filter(pk=run_id, worker_token=None, status__in=ACTIVE_STATUSES).update(
        send_count=F("send_count") - 1)
    raise BrokerDown


class BrokerDown(Exception):
    """The broker refused a message; the Run stays in the outbox."""


def queue_length(queue: str = RUNS_QUEUE) -> int | None:
    """Messages waiting in the broker's queue; None when the broker does not answer."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.BROKER_PROBE_TIMEOUT)
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError as exc:
        if "NOT_FOUND" in str(exc):  # no consumer ever declared the queue: nothing waits in it
            return 0
        logger.warning("broker queue length unavailable: %s", exc)
        return None
    except (KombuError, OSError) as exc:
        logger.warning("broker queue length unavailable: %s", exc)
        return None
