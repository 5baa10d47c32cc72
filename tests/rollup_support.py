"""What the heatmap's hourly rollup (runs.rollup) must hold, counted from the Runs."""

import datetime as dt
from collections import Counter

from runs.models import TERMINAL_STATUSES, Run, RunHourCount, hour_count_column

UTC = dt.UTC


def counted() -> dict:
    """What the rollup must hold: finished Runs grouped by UTC hour and datastore."""
    out: dict = {}
    for run in Run.objects.filter(status__in=TERMINAL_STATUSES):
        hour = run.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        cell = out.setdefault((hour, run.datastore_id), Counter())
        cell[hour_count_column(run.operation, run.status, run.triggered_by_kind)] += 1
        cell["n"] += 1
    return out


def stored() -> dict:
    out = {}
    for row in RunHourCount.objects.values():
        cells = Counter({k: v for k, v in row.items() if k.startswith("n") and v})
        assert all(v > 0 for v in cells.values()), row
        if cells:
            out[(row["hour"].astimezone(UTC), row["datastore_id"])] = cells
    return out


def assert_rollup_matches(expected_n: int | None = None) -> None:
    want = counted()
    assert stored() == want
    if expected_n is not None:
        assert sum(cell["n"] for cell in want.values()) == expected_n
