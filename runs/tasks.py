"""Celery tasks: thin wrappers that take an id and call a service."""

from celery import shared_task

from runs import execution, fairness, reaper, schedules


@shared_task(name="runs.execute_run", ignore_result=True)
def execute_run(run_id: int) -> str:
    return execution.execute_run(run_id)


@shared_task(name="runs.reap_runs", ignore_result=True)
def reap_runs() -> dict[str, int]:
    return reaper.reap()


@shared_task(name="runs.fire_due_schedules", ignore_result=True)
def fire_due_schedules() -> int:
    return schedules.fire_due()


@shared_task(name="runs.dispatch_waiting", ignore_result=True)
def dispatch_waiting() -> int:
    return fairness.dispatch_waiting()
