"""What the heatmap's rollup (runs.rollup) must hold, counted from the Runs."""

import datetime as dt
from collections import Counter

from runs.models import (
    TERMINAL_STATUSES,
    Run,
    RunActorDayCount,
    RunDayCount,
    RunHourCount,
    RunQuarterCount,
    hour_count_column,
    quarter_of_day_column,
)
from runs.rollup import QUARTER_OF_DAY_COLUMNS

UTC = dt.UTC


def counted(period: str) -> dict:
    """Finished Runs grouped by UTC quarter hour, hour or day (and actor) and datastore,
    counted one by one."""
    out: dict = {}
    for run in Run.objects.filter(status__in=TERMINAL_STATUSES):
        utc = run.created_at.astimezone(UTC)
        by_schedule = run.triggered_by_kind == "schedule"
        key = {
            "quarter": utc.replace(minute=utc.minute // 15 * 15, second=0, microsecond=0),
            "hour": utc.replace(minute=0, second=0, microsecond=0),
            "day": utc.date(),
            "actor": (utc.date(), run.triggered_by_user_id or 0,
                      (run.schedule_id or 0) if by_schedule else 0),
        }[period]
        cell = out.setdefault((key, run.datastore_id), Counter())
        cell[hour_count_column(run.operation, run.status, run.triggered_by_kind)] += 1
        cell["n"] += 1
        if period in ("day", "actor"):  # and the quarter-hour totals of the day
            cell[quarter_of_day_column(utc.hour * 4 + utc.minute // 15)] += 1
    return out


def stored(period: str) -> dict:
    out = {}
    model = {"quarter": RunQuarterCount, "hour": RunHourCount, "day": RunDayCount,
             "actor": RunActorDayCount}[period]
    for row in model.objects.values():
        cells = Counter({k: v for k, v in row.items()
                         if (k.startswith("n") or k in QUARTER_OF_DAY_COLUMNS) and v})
        assert all(v > 0 for v in cells.values()), row
        if cells:
            if period == "actor":
                key = (row["day"], row["user_key"], row["schedule_key"])
            else:
                key = row["day"] if period == "day" else row[period].astimezone(UTC)
            out[(key, row["datastore_id"])] = cells
    return out


def assert_rollup_matches(expected_n: int | None = None) -> None:
    for period in ("quarter", "hour", "day", "actor"):
        want = counted(period)
        assert stored(period) == want, period
        if expected_n is not None:
            assert sum(cell["n"] for cell in want.values()) == expected_n
