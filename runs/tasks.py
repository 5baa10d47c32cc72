"""Celery tasks: thin wrappers that take an id and call a service."""

from celery import shared_task

from monitoring.housekeeping import record_pass
from runs import execution, fairness, reaper, retention, schedules


@shared_task(name="runs.execute_run", ignore_result=True)
def execute_run(run_id: int) -> str:
    return execution.execute_run(run_id)


@shared_task(name="runs.reap_runs", ignore_result=True)
def reap_runs() -> dict[str, int]:
    result = reaper.reap()
    record_pass("runs.reap_runs", result)
    return result


@shared_task(name="runs.fire_due_schedules", ignore_result=True)
def fire_due_schedules() -> int:
    fired = schedules.fire_due()
    record_pass("runs.fire_due_schedules", {"fired": fired})
    return fired


@shared_task(name="runs.dispatch_waiting", ignore_result=True)
def dispatch_waiting() -> int:
    dispatched = fairness.dispatch_waiting()
    record_pass("runs.dispatch_waiting", {"dispatched": dispatched})
    return dispatched


@shared_task(name="runs.apply_retention", ignore_result=True)
def apply_retention() -> dict[str, int]:
    result = retention.apply_retention()
    record_pass("runs.apply_retention", result)
    return result
