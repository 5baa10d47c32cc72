"""Notification tasks, routed to their own ``notifications`` queue (``CELERY_TASK_ROUTES``): a
slow or dead receiver never holds a worker slot that a Run needs."""

from celery import shared_task

from notifications import delivery


@shared_task(name="notifications.dispatch", ignore_result=True)
def dispatch(run_id: int) -> int:
    created = delivery.dispatch(run_id)
    for delivery_id in created:
        deliver.delay(delivery_id)
    return len(created)


@shared_task(bind=True, name="notifications.deliver", ignore_result=True,
             max_retries=None)
def deliver(self, delivery_id: int) -> str:
    outcome = delivery.attempt(delivery_id)
    if outcome is delivery.Outcome.RETRY:
        raise self.retry(countdown=delivery.backoff(self.request.retries + 1))
    return outcome.value
