"""The one call a Run's ending makes: queue its notifications once the ending has committed."""

import logging

from django.db import transaction

logger = logging.getLogger(__name__)


def run_finished(run_id: int, datastore_id: int | None = None) -> None:
    transaction.on_commit(lambda: _queue(run_id, datastore_id))


def _queue(run_id: int, datastore_id: int | None) -> None:
    from notifications.models import NotificationRule
    from notifications.tasks import dispatch

    try:
        rules = NotificationRule.objects.filter(enabled=True)
        if datastore_id is not None:
            rules = rules.filter(datastore_id=datastore_id)
        if rules.exists():  # no message at all for datastores nobody subscribed to
            dispatch.delay(run_id)
    except Exception:  # the Run has ended either way; a lost notification is only logged
        logger.exception("run %s: notifications could not be queued", run_id)
