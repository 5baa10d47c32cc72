"""Finished Runs counted per UTC day, hour and quarter hour and datastore: the Activity
heatmap reads these counts instead of counting Runs (2.3 million over its 12 weeks at 10^7
Runs a year).

Three tables, runs_rundaycount, runs_runhourcount and runs_runquartercount, one row per
(period, datastore) with one column per (operation, final status, trigger kind), named
``n_<operation>_<status>_<kind>``, and ``n`` their sum. The filters of the Activity page
that the heatmap honours are sums of columns (an operation, a status, a trigger kind) and a
row filter (datastores, which is also what an editor may see), so the heatmap reads about 20
rows per period whatever the filters, where a row per combination would be 15 times as many.

Days for viewers in UTC (1,700 rows for 12 weeks). For the others, whose days start at
another time, a local day is UTC days plus or minus a part of a day at each end. Each day row
also holds the total of each quarter hour of its day (``q00`` .. ``q95``), so without other
filters those parts come from the same 1,700 rows; with filters, from the hour rows (at most
12 at each end) and, where a zone's midnight falls inside an hour (India +5:30, Nepal +5:45,
Newfoundland -3:30, Chatham +12:45), the quarter rows (at most 3 more at each end)
(``activity.selectors._finished_per_day``).

A fourth table, runs_runactordaycount, holds the same columns per UTC day, datastore and
actor (the Run's user, and its schedule when a schedule launched it): the heatmap's "by" and
schedule filters sum its rows. Days only: hour rows per actor would be about as many as the
Runs themselves. Its rows hold the quarter-of-day totals too, so that those filters without
others read no more rows off UTC either; with others, they count the actor's Runs there.

Database triggers keep the rows in step with runs_run in the same transaction, whatever
writes it (a worker finishing a Run, Delete, bulk Delete, retention, a raw DELETE):

* a Run that becomes terminal (UPDATE from queued/running, or INSERT of a terminal row as a
  restore does) adds 1 to its creation quarter, hour and day (and its day and actor, and those
  two rows' quarter-of-day totals); an active Run is not in the rollup (the heatmap counts those
  live);
* a terminal Run deleted subtracts 1;
* a terminal Run never changes otherwise (migration 0002 refuses the UPDATE), so its periods,
  datastore, operation, status and trigger kind are fixed.

Counting is an upsert on the (quarter|hour|day, datastore) rows: concurrent finishes
in the same hour and datastore wait for each other's row lock (PostgreSQL) or the database
lock (SQLite), and both counts land. A new operation, status or trigger kind needs a
migration that adds its columns and recreates the triggers (``trigger_sql`` reads the current
choices).

The SQL is that of a version of the rollup, the migration that made it: 9 (quarter, hour and
day rows), 11 (and the day rows' quarter-of-day totals, and the actor rows), 12 (and the actor
rows' quarter-of-day totals). A migration passes its own version, so that it does the same
whatever the code becomes; the default is the latest.
"""

from __future__ import annotations

from runs.models import (
    QUARTERS_OF_DAY,
    TERMINAL_STATUSES,
    ActorKind,
    Operation,
    RunActorDayCount,
    RunDayCount,
    RunHourCount,
    RunQuarterCount,
    quarter_of_day_column,
)
from runs.models import hour_count_column as column

QUARTERS = RunQuarterCount._meta.db_table
HOURS = RunHourCount._meta.db_table
DAYS = RunDayCount._meta.db_table
ACTOR_DAYS = RunActorDayCount._meta.db_table

COMBINATIONS = [
    (operation, str(status), kind)
    for operation in Operation.values
    for status in TERMINAL_STATUSES
    for kind in ActorKind.values
]
COLUMNS = [column(*combination) for combination in COMBINATIONS]
QUARTER_OF_DAY_COLUMNS = [quarter_of_day_column(i) for i in range(QUARTERS_OF_DAY)]
VERSIONS = (9, 11, 12)
LATEST = VERSIONS[-1]


def columns_for(
    operations: tuple[str, ...], statuses: tuple[str, ...], kind: str
) -> list[str]:
    """The columns whose sum is the count of Runs matching these filters (empty means any)."""
    return [
        column(o, s, k) for o, s, k in COMBINATIONS
        if (not operations or o in operations) and (not statuses or s in statuses)
        and (not kind or k == kind)
    ]


TERMINAL_SQL = "(" + ", ".join(f"'{s}'" for s in TERMINAL_STATUSES) + ")"


def _hour(vendor: str, ref: str) -> str:
    """SQL for the start of the UTC hour of ``ref``.created_at."""
    if vendor == "postgresql":
        # AT TIME ZONE 'UTC' twice: date_trunc on a timestamptz truncates in the session's
        # zone, which may be half an hour off UTC.
        return f"date_trunc('hour', {ref}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    # Django stores SQLite datetimes as UTC text.
    return f"strftime('%Y-%m-%d %H:00:00', {ref}.created_at)"


def _quarter(vendor: str, ref: str) -> str:
    """SQL for the start of the UTC quarter hour of ``ref``.created_at."""
    if vendor == "postgresql":
        utc = f"{ref}.created_at AT TIME ZONE 'UTC'"
        return (f"(date_trunc('hour', {utc}) + floor(extract(minute FROM {utc}) / 15)"
                f" * interval '15 minutes') AT TIME ZONE 'UTC'")
    return (f"strftime('%Y-%m-%d %H:', {ref}.created_at) || printf('%02d', "
            f"CAST(strftime('%M', {ref}.created_at) AS INTEGER) / 15 * 15) || ':00'")


def _day(vendor: str, ref: str) -> str:
    """SQL for the UTC date of ``ref``.created_at."""
    if vendor == "postgresql":
        return f"({ref}.created_at AT TIME ZONE 'UTC')::date"
    return f"date({ref}.created_at)"


def _actor_keys(ref: str) -> str:
    """SQL for RunActorDayCount's (user_key, schedule_key) of ``ref``: 0 for none."""
    return ", ".join(_actor_key_pair(ref))


def _actor_key_pair(ref: str) -> tuple[str, str]:
    return (f"COALESCE({ref}.triggered_by_user_id, 0)",
            f"CASE WHEN {ref}.triggered_by_kind = '{ActorKind.SCHEDULE}' "
            f"THEN COALESCE({ref}.schedule_id, 0) ELSE 0 END")


def _quarter_of_day(vendor: str, value: str) -> str:
    """SQL for the index (0..95) of the UTC quarter hour of the day of the timestamp
    ``value`` (a Run's created_at, or a quarter row's quarter)."""
    if vendor == "postgresql":
        utc = f"({value} AT TIME ZONE 'UTC')"
        return (f"(extract(hour FROM {utc}) * 4 + floor(extract(minute FROM {utc}) / 15))"
                f"::integer")
    return (f"(CAST(strftime('%H', {value}) AS INTEGER) * 4"
            f" + CAST(strftime('%M', {value}) AS INTEGER) / 15)")


def _cells(ref: str, value: str) -> list[str]:
    """SQL for each combination's column of ``ref``: ``value`` in its own column, else 0."""
    return [
        f"CASE WHEN {ref}.operation = '{o}' AND {ref}.status = '{s}' "
        f"AND {ref}.triggered_by_kind = '{k}' THEN {value} ELSE 0 END"
        for o, s, k in COMBINATIONS
    ]


def _check(version: int) -> None:
    if version not in VERSIONS:
        raise ValueError(f"No rollup version {version}: {VERSIONS}")


def _upsert(vendor: str, ref: str, delta: int, *, version: int = LATEST) -> str:
    """INSERT ... ON CONFLICT adding ``delta`` to the rows of ``ref``'s quarter, hour and day;
    from ``version`` 11, to its row of day and actor and its day row's quarter-of-day total;
    from 12, to its actor row's quarter-of-day total too."""
    _check(version)
    counts = {"n": str(delta), **dict(zip(COLUMNS, _cells(ref, str(delta)), strict=True))}
    day_counts = counts
    if version >= 11:
        index = _quarter_of_day(vendor, f"{ref}.created_at")
        day_counts = {**counts, **{
            name: f"CASE WHEN {index} = {i} THEN {delta} ELSE 0 END"
            for i, name in enumerate(QUARTER_OF_DAY_COLUMNS)
        }}
    rows = [  # (table, key columns, key values, counted columns and their values)
        (QUARTERS, "quarter, datastore_id", f"{_quarter(vendor, ref)}, {ref}.datastore_id",
         counts),
        (HOURS, "hour, datastore_id", f"{_hour(vendor, ref)}, {ref}.datastore_id", counts),
        (DAYS, "day, datastore_id", f"{_day(vendor, ref)}, {ref}.datastore_id", day_counts),
    ]
    if version >= 11:
        rows.append((ACTOR_DAYS, "day, datastore_id, user_key, schedule_key",
                     f"{_day(vendor, ref)}, {ref}.datastore_id, {_actor_keys(ref)}",
                     day_counts if version >= 12 else counts))
    statements = []
    for table, key, key_values, cells in rows:
        sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in cells)
        statements.append(
            f"INSERT INTO {table} ({key}, {', '.join(cells)}) "
            f"VALUES ({key_values}, {', '.join(cells.values())}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {sets}"
        )
    return "; ".join(statements)


def trigger_sql(vendor: str, *, version: int = LATEST) -> list[str]:
    """The triggers of rollup ``version`` (see ``_upsert``)."""
    if vendor == "postgresql":
        return [
            f"""
            CREATE FUNCTION assay_run_hour_count() RETURNS trigger AS $$
            BEGIN
                IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN {TERMINAL_SQL} THEN
                    {_upsert(vendor, "OLD", -1, version=version)};
                END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN {TERMINAL_SQL} THEN
                    {_upsert(vendor, "NEW", 1, version=version)};
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql
            """,
            """
            CREATE TRIGGER run_hour_count AFTER INSERT OR UPDATE OF status OR DELETE
            ON runs_run FOR EACH ROW EXECUTE FUNCTION assay_run_hour_count()
            """,
        ]
    # SQLite: one trigger per event. (An UPDATE of a terminal row never gets this far: the
    # immutability trigger aborts it.)
    return [
        f"""
        CREATE TRIGGER run_hour_count_insert AFTER INSERT ON runs_run
        FOR EACH ROW WHEN NEW.status IN {TERMINAL_SQL}
        BEGIN {_upsert(vendor, "NEW", 1, version=version)}; END
        """,
        f"""
        CREATE TRIGGER run_hour_count_finish AFTER UPDATE OF status ON runs_run
        FOR EACH ROW WHEN NEW.status IN {TERMINAL_SQL} AND OLD.status NOT IN {TERMINAL_SQL}
        BEGIN {_upsert(vendor, "NEW", 1, version=version)}; END
        """,
        f"""
        CREATE TRIGGER run_hour_count_delete AFTER DELETE ON runs_run
        FOR EACH ROW WHEN OLD.status IN {TERMINAL_SQL}
        BEGIN {_upsert(vendor, "OLD", -1, version=version)}; END
        """,
    ]


def drop_trigger_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [
            "DROP TRIGGER IF EXISTS run_hour_count ON runs_run",
            "DROP FUNCTION IF EXISTS assay_run_hour_count()",
        ]
    return [
        f"DROP TRIGGER IF EXISTS run_hour_count_{event}"
        for event in ("insert", "finish", "delete")
    ]


def _sums(ref: str) -> str:
    return ", ".join(f"SUM({cell})" for cell in _cells(ref, "1"))


# Rows made from quarter rows ``c`` (refill_sql's hours and days, actor_refill_sql's days).
QUARTER_TOTALS = ", ".join(f"SUM(c.{name})" for name in ["n", *COLUMNS])


def _day_of_quarter(vendor: str) -> str:
    """SQL for the UTC date of a quarter row ``c``."""
    return "(c.quarter AT TIME ZONE 'UTC')::date" if vendor == "postgresql" else "date(c.quarter)"


def _quarter_of_day_totals(vendor: str) -> str:
    """SQL for the ``q00`` .. ``q95`` totals of the quarter rows ``c`` of a day."""
    index = _quarter_of_day(vendor, "c.quarter")
    return ", ".join(f"SUM(CASE WHEN {index} = {i} THEN c.n ELSE 0 END)"
                     for i in range(QUARTERS_OF_DAY))


def refill_sql(vendor: str, *, version: int = LATEST) -> list[str]:
    """Recount every row from runs_run (the backfill; also after a bulk load that bypassed
    the triggers, as the benchmark's seeding does): the tables and columns of rollup
    ``version``."""
    _check(version)
    names, totals = ", ".join(["n", *COLUMNS]), QUARTER_TOTALS
    if vendor == "postgresql":
        hour = "date_trunc('hour', c.quarter AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    else:
        hour = "strftime('%Y-%m-%d %H:00:00', c.quarter)"
    day = _day_of_quarter(vendor)
    day_names, day_totals = names, totals
    if version >= 11:
        day_names += ", " + ", ".join(QUARTER_OF_DAY_COLUMNS)
        day_totals += ", " + _quarter_of_day_totals(vendor)
    statements = [
        *(f"DELETE FROM {table}" for table in (QUARTERS, HOURS, DAYS)),
        f"INSERT INTO {QUARTERS} (quarter, datastore_id, {names}) "
        f"SELECT {_quarter(vendor, 'r')}, r.datastore_id, COUNT(*), {_sums('r')} "
        f"FROM runs_run r WHERE r.status IN {TERMINAL_SQL} "
        f"GROUP BY {_quarter(vendor, 'r')}, r.datastore_id",
        # Hours and days from the quarters: each pass reads a fraction of the rows.
        f"INSERT INTO {HOURS} (hour, datastore_id, {names}) "
        f"SELECT {hour}, c.datastore_id, {totals} FROM {QUARTERS} c "
        f"GROUP BY {hour}, c.datastore_id",
        f"INSERT INTO {DAYS} (day, datastore_id, {day_names}) "
        f"SELECT {day}, c.datastore_id, {day_totals} FROM {QUARTERS} c "
        f"GROUP BY {day}, c.datastore_id",
    ]
    if version >= 11:
        statements += actor_refill_sql(vendor, version=version)
    return statements


def actor_refill_sql(vendor: str, *, version: int = LATEST) -> list[str]:
    """Recount RunActorDayCount from runs_run (rollup ``version`` 11 or later)."""
    _check(version)
    names = ", ".join(["n", *COLUMNS])
    if version < 12:
        keys = f"{_day(vendor, 'r')}, r.datastore_id, {_actor_keys('r')}"
        return [
            f"DELETE FROM {ACTOR_DAYS}",
            f"INSERT INTO {ACTOR_DAYS} (day, datastore_id, user_key, schedule_key, {names}) "
            f"SELECT {keys}, COUNT(*), {_sums('r')} "
            f"FROM runs_run r WHERE r.status IN {TERMINAL_SQL} GROUP BY {keys}",
        ]
    # Per quarter hour and actor first, then the days from those, as refill_sql makes the
    # day rows from the quarter rows: the quarter of the day is worked out once a group, not
    # once a Run.
    quarter_keys = f"{_quarter(vendor, 'r')}, r.datastore_id, {_actor_keys('r')}"
    user_key, schedule_key = _actor_key_pair("r")
    quarter_sums = ", ".join(f"SUM({cell}) AS {name}"
                             for name, cell in zip(COLUMNS, _cells("r", "1"), strict=True))
    keys = f"{_day_of_quarter(vendor)}, c.datastore_id, c.user_key, c.schedule_key"
    return [
        f"DELETE FROM {ACTOR_DAYS}",
        f"INSERT INTO {ACTOR_DAYS} (day, datastore_id, user_key, schedule_key, {names}, "
        f"{', '.join(QUARTER_OF_DAY_COLUMNS)}) "
        f"SELECT {keys}, {QUARTER_TOTALS}, {_quarter_of_day_totals(vendor)} "
        f"FROM (SELECT {_quarter(vendor, 'r')} AS quarter, r.datastore_id, "
        f"{user_key} AS user_key, {schedule_key} AS schedule_key, COUNT(*) AS n, "
        f"{quarter_sums} FROM runs_run r WHERE r.status IN {TERMINAL_SQL} "
        f"GROUP BY {quarter_keys}) c GROUP BY {keys}",
    ]


def refill(cursor, vendor: str, *, version: int = LATEST) -> None:
    for statement in refill_sql(vendor, version=version):
        cursor.execute(statement)
