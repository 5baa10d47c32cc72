"""Each Celery worker stamps a row every ``WORKER_HEARTBEAT_INTERVAL`` seconds while it runs
(and beat stamps its start: see ``monitoring.housekeeping``).

Written by a thread of the worker's main process (not a task: a worker whose slots are all
busy with long Runs is still alive), with the database's clock; removed on a clean shutdown.
A killed worker's row simply goes stale, which is what ``/healthz`` looks for.
"""

import logging
import threading

from celery.signals import beat_init, worker_ready, worker_shutdown
from django.conf import settings
from django.db import connection
from django.db.models.functions import Now

logger = logging.getLogger(__name__)
_stop = threading.Event()


def _queues(consumer) -> list[str]:
    declared = consumer.app.amqp.queues
    names = list(declared.consume_from or declared)
    return sorted(names) or [consumer.app.conf.task_default_queue]


def beat_once(hostname: str, queues: list[str]) -> None:
    from monitoring.models import WorkerHeartbeat

    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname[:255], defaults={"seen_at": Now(), "queues": ",".join(queues)[:500]}
    )


def _beat_forever(hostname: str, queues: list[str]) -> None:
    while True:
        try:
            beat_once(hostname, queues)
        except Exception:  # the database may be away for a moment: beat again next time
            logger.exception("worker heartbeat failed")
        finally:
            connection.close()
        if _stop.wait(settings.WORKER_HEARTBEAT_INTERVAL):
            return


@worker_ready.connect
def _start(sender, **kwargs) -> None:
    _stop.clear()
    args = (sender.hostname, _queues(sender))
    threading.Thread(target=_beat_forever, args=args, name="assay-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _stop_and_forget(sender, **kwargs) -> None:
    from monitoring.models import WorkerHeartbeat

    _stop.set()
    try:
        WorkerHeartbeat.objects.filter(hostname=sender.hostname).delete()
    except Exception:
        logger.exception("could not remove the worker heartbeat")
    finally:
        connection.close()


@beat_init.connect
def _beat_started(sender, **kwargs) -> None:
    from monitoring.housekeeping import BEAT_STARTED, record_pass

    try:
        record_pass(BEAT_STARTED)
    except Exception:  # the database may be away: freshness then counts from older passes
        logger.exception("could not record beat's start")
    finally:
        connection.close()
