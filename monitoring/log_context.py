"""Which Run a log line is about: ``run_id`` on every record logged while a Run executes.

Set around each ``runs.execute_run`` task (Celery's own "received"/"succeeded" lines of the
task included) and added to every record by ``RunIdFilter``; the JSON log format prints it.
"""

import contextvars
import logging

from celery.signals import task_postrun, task_prerun

RUN_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("run_id", default=None)


class RunIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = RUN_ID.get()
        return True


@task_prerun.connect
def _enter_run(sender=None, args=None, **kwargs) -> None:
    if sender is not None and sender.name == "runs.execute_run" and args:
        RUN_ID.set(args[0])


@task_postrun.connect
def _leave_run(sender=None, **kwargs) -> None:
    RUN_ID.set(None)
