"""Recording one anomaly per failing check, in the shape Scan stores them (runs/operations/scan.py):
the check, its failed count, example records, and the check described as the description."""

from typing import Any

from datastores.models import Anomaly, Check
from datastores.quality import CheckSpec, describe


def check_spec(check: Check) -> CheckSpec:
    """The engine's view of a stored check, keyed by the check's id."""
    return CheckSpec(
        key=str(check.pk), type=check.type, field=check.field_name or None, params=check.params
    )


def record_anomaly(
    *, check: Check, run_id: int, failed_count: int, examples: list[dict[str, Any]]
) -> Anomaly:
    """Store the anomaly a failing check produced; call inside the unit's transaction."""
    return Anomaly.objects.create(
        container_id=check.container_id,
        check_rule=check,
        run_id=run_id,
        failed_count=failed_count,
        examples=examples,
        description=describe(check_spec(check))[:255],
    )
