"""External Scan services: open a Run, register each container's results, finish it.

The scan itself ran elsewhere (the ``assay external-scan`` CLI, a pipeline step); Assay only
records it. The Run is ``running`` from the moment it is opened and has no worker, so an
Abort lands it on ``aborted`` at once (``run_abort``) and every later post gets 409.

Every write happens in one transaction that first locks the Run row and re-checks
``status='running'``: an abort or a finish racing with a post either lands before it (nothing
is stored, 409) or after it (the results are part of the record). Nothing is ever stored
half-way: results are validated in full before the transaction starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import User
from accounts.permissions import datastore_level
from datastores.anomalies import Outcome, record_results
from datastores.models import Check, CheckStatus, Container, Datastore
from runs.errors import (
    ActionNotAllowed,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RunServiceError,
)
from runs.logs import append_log
from runs.models import LogLevel, Operation, Run, RunContainer, RunStatus, Via
from runs.operations.external_scan import ExternalScan
from runs.policy import level_allows
from runs.services import run_launch, transition


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result on one container: a failed count, or why it could not run."""

    check_id: int
    failed_count: int | None = None
    error: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)


def external_scan_open(
    *, user: User, datastore: Datastore, config: dict[str, Any] | None, via: str = Via.API
) -> Run:
    """A new External Scan Run in ``running``; announced containers get a queued row each."""
    with transaction.atomic():
        run = run_launch(
            user=user,
            datastore=datastore,
            operation=Operation.EXTERNAL_SCAN,
            config=config,
            via=via,
        )
        announced = run.config.get("containers")
        if announced:
            ids = dict(
                datastore.containers.filter(name__in=announced).values_list("name", "pk")
            )
            RunContainer.objects.bulk_create(
                RunContainer(run=run, name=name, container_id=ids[name], position=position)
                for position, name in enumerate(announced)
            )
        Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            progress_total=len(announced) if announced else None,
            progress_unit=ExternalScan.unit_label,
        )
    return run


def external_scan_results(
    *,
    run: Run,
    user: User,
    container: str,
    records_scanned: int,
    results: Sequence[CheckOutcome],
) -> Run:
    """Record one container's results: its run-container row, one anomaly per failing check."""
    _authorize(user, run)
    target, checks = _validate_results(run, container, results)
    now = timezone.now()
    failing = [outcome for outcome in results if outcome.failed_count]
    broken = [outcome for outcome in results if outcome.error is not None]
    unit_metrics = {
        "records_scanned": records_scanned,
        "checks_evaluated": len(results) - len(broken),
        "anomalies_identified": len(failing),
    }
    with transaction.atomic():
        live = Run.objects.select_for_update().filter(pk=run.pk, status=RunStatus.RUNNING).first()
        if live is None:
            raise _ended(run)
        unit = RunContainer.objects.filter(run_id=run.pk, name=container).first()
        if unit is not None and unit.status != RunStatus.QUEUED:
            raise ActionNotAllowed(f"Results for {container} were already registered.")
        record_results(
            container=target,
            run_id=run.pk,
            outcomes=[
                Outcome(
                    checks[o.check_id], o.failed_count, o.examples if o.failed_count else [],
                    error=o.error or "",
                )
                for o in results
            ],
            now=now,
        )
        errors = "; ".join(f"check #{o.check_id} could not run" for o in broken)
        unit_fields = {
            "status": RunStatus.SUCCESS,
            "metrics": unit_metrics,
            "error": errors[:2000],
            "started_at": now,
            "finished_at": now,
        }
        if unit is None:
            RunContainer.objects.create(
                run_id=run.pk,
                name=container,
                container=target,
                position=RunContainer.objects.filter(run_id=run.pk).count(),
                **unit_fields,
            )
        else:
            RunContainer.objects.filter(pk=unit.pk).update(**unit_fields)
        metrics = dict(live.metrics)
        for key in ("records_scanned", "anomalies_identified"):
            metrics[key] = metrics.get(key, 0) + unit_metrics[key]
        append_log(
            run.pk,
            f"{container}: {records_scanned} records scanned, "
            f"{unit_metrics['checks_evaluated']} checks evaluated, "
            f"{len(failing)} anomalies identified.",
            container=container,
        )
        for outcome in broken:
            # The log is read at every level; the error text may quote source values, so it
            # stays with the check's evaluation (Viewer and up).
            append_log(
                run.pk,
                f"{container}: check #{outcome.check_id} "
                f"({checks[outcome.check_id].label}) could not run; its error is shown with "
                "the check's results.",
                level=LogLevel.WARNING,
                container=container,
            )
        Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            metrics=metrics, progress_done=F("progress_done") + 1, heartbeat_at=now
        )
    return _reload(run)


def external_scan_finish(*, run: Run, user: User) -> Run:
    """Close the Run as ``success``; announced containers without results are warnings."""
    _authorize(user, run)
    now = timezone.now()
    with transaction.atomic():
        live = Run.objects.select_for_update().filter(pk=run.pk, status=RunStatus.RUNNING).first()
        if live is None:
            raise _ended(run)
        missing = list(
            RunContainer.objects.filter(run_id=run.pk, status=RunStatus.QUEUED)
            .order_by("position")
            .values_list("name", flat=True)
        )
        if missing:
            RunContainer.objects.filter(run_id=run.pk, status=RunStatus.QUEUED).update(
                status=RunStatus.FAILURE,
                error="No results were registered.",
                started_at=now,
                finished_at=now,
            )
            append_log(
                run.pk,
                f"No results were registered for: {', '.join(missing)}.",
                level=LogLevel.WARNING,
            )
        metrics = live.metrics
        finished = transition(
            run.pk,
            where=Q(status=RunStatus.RUNNING),
            to=RunStatus.SUCCESS,
            fields={
                "progress_total": live.progress_total
                if live.progress_total is not None
                else live.progress_done,
                "heartbeat_at": now,
            },
            log=f"Finished: {live.progress_done} containers, "
            f"{metrics.get('records_scanned', 0)} records scanned, "
            f"{metrics.get('anomalies_identified', 0)} anomalies identified.",
        )
        if not finished:
            raise _ended(run)
    return _reload(run)


# -- helpers -----------------------------------------------------------------------------------
def _authorize(user: User, run: Run) -> None:
    """Registering results is launching work: it needs the level launching needs."""
    level = datastore_level(user, run.datastore_id)
    if level is None:
        raise NotFound("Run not found.")
    if not level_allows(level):
        raise PermissionDenied(f"You need the Editor permission on {run.datastore.name}.")
    if run.operation != Operation.EXTERNAL_SCAN:
        raise ActionNotAllowed(f"Run #{run.pk} is a {run.get_operation_display()}, "
                               "not an External Scan.")


def _validate_results(
    run: Run, container: str, results: Sequence[CheckOutcome]
) -> tuple[Container, dict[int, Check]]:
    target = Container.objects.filter(datastore_id=run.datastore_id, name=container).first()
    if target is None:
        raise InvalidInput(
            f"{run.datastore.name} has no container named {container!r}.",
            errors={"container": ["Unknown container."]},
        )
    announced = run.config.get("containers")
    if announced is not None and container not in announced:
        raise InvalidInput(
            f"{container} is not one of the containers this External Scan announced.",
            errors={"container": ["Not announced when the Run was opened."]},
        )
    ids = [outcome.check_id for outcome in results]
    if len(set(ids)) != len(ids):
        raise InvalidInput(
            "A check appears twice in the results.", errors={"results": ["Duplicate check."]}
        )
    checks = {check.pk: check for check in target.checks.filter(pk__in=ids)}
    problems: list[str] = []
    for outcome in results:
        check = checks.get(outcome.check_id)
        if check is None:
            problems.append(f"Check #{outcome.check_id} is not a check of {container}.")
        elif check.status != CheckStatus.ACTIVE:
            problems.append(f"Check #{outcome.check_id} is {check.status}, not active.")
        if (outcome.failed_count is None) == (outcome.error is None):
            problems.append(f"Check #{outcome.check_id}: give either failed_count or error.")
    if problems:
        raise InvalidInput(" ".join(problems), errors={"results": problems})
    return target, checks


def _ended(run: Run) -> RunServiceError:
    status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).first()
    if status is None:
        return NotFound("Run not found.")
    return ActionNotAllowed(f"The Run already ended ({RunStatus(status).label}).")


def _reload(run: Run) -> Run:
    return Run.objects.for_list().get(pk=run.pk)
