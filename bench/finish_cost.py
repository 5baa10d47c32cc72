"""What a Run's finish costs the database with the heatmap's rollup triggers (BENCHMARKS.md, "What
a Run's finish costs the rollup"): the triggers of runs 0010 against those of the latest
migration, side by side in one run.

    .venv/bin/python bench/finish_cost.py          # or: make bench-finish

1. Recreates one PostgreSQL database per variant (``--prefix`` + ``_before``, ``_after``,
   ``_none``): *before* is migrated to ``runs 0010`` (the rollup triggers of 0009: one upsert
   each into the quarter, hour and day rows), *after* to the latest migration (0011 adds 96
   quarter-of-day terms to the day row's upsert and a fourth upsert, into the actor-day rows;
   0012 the same 96 terms to that fourth upsert),
   *none* to the latest with the rollup trigger dropped (the floor: the finish's own UPDATE and
   the terminal-Run guard of 0002). Every other app is at its latest migration in all three.
2. Seeds each the same way (fixed random seed): users, datastores, a schedule per datastore,
   ``--history`` finished Runs over ``--days`` days (bench/seed.py's server-side INSERT, then
   the rollup recounted) and the Runs to finish: ``running``, created over the last
   ``--recent-days`` days, spread over the datastores, users and schedules. VACUUM ANALYZE.
3. Finishes Runs the way a worker ends one: an UPDATE of its status, ``finished_at`` and the
   other final fields, one Run per transaction (autocommit), on a kept connection. The same
   Runs in the same order and with the same outcomes in every database: after ``--warmup``
   untimed finishes each, ``--rounds`` rounds; in each, ``--batch`` finishes per database and
   per ``synchronous_commit`` of ``--commit-modes`` (set on this benchmark's own sessions:
   ``off`` does not wait for the WAL flush, so the statement's own cost shows), the databases
   alternating and their order rotating from round to round. Timed: the statement's wall time
   at the client, commit included.
4. Then ``--explain`` more finishes per database under ``EXPLAIN (ANALYZE)``: the server's own
   time for the UPDATE and for the rollup trigger alone (no round trip, no commit).
5. With ``--sqlite`` (default): the same on one SQLite file per variant, opened as Assay opens
   them (WAL, ``synchronous=NORMAL``), ``--sqlite-history`` finished Runs each.

Prints Markdown tables and writes ``--json``. Drops its databases and files at the end unless
``--keep``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.activity import django_env, recreate_database  # noqa: E402 -- after the path set-up

VARIANTS = ("before", "after", "none")
RUNS_0010 = "0010_run_actor_created_indexes"
DATASTORES = 8
USERS = 12
SEED = 0.42
OPERATIONS = ["scan", "profile", "sync", "export", "materialize", "external_scan", "promote"]
# Outcomes in the proportions bench/seed.py uses for finished Runs.
OUTCOMES = [("success", 0.86), ("failure", 0.08), ("aborted", 0.06)]

RUNNING_INSERT = """
INSERT INTO runs_run (
    id, operation, status, datastore_id, destination_datastore_id, config,
    triggered_by_kind, triggered_by_user_id, triggered_via, schedule_id, aborted_by_kind,
    created_at, enqueued_at, started_at, heartbeat_at, worker_token,
    progress_done, progress_total, progress_unit, metrics, has_warnings, log_lines, error
)
SELECT
    g, op, 'running', (%(datastores)s::bigint[])[ds],
    CASE WHEN op = 'promote' THEN (%(datastores)s::bigint[])[1 + ds %% %(n_datastores)s] END,
    '{}'::jsonb,
    CASE WHEN by_schedule THEN 'schedule' ELSE 'user' END,
    CASE WHEN NOT by_schedule THEN (%(users)s::bigint[])[us] END,
    CASE WHEN by_schedule THEN 'schedule' ELSE 'web' END,
    CASE WHEN by_schedule THEN (%(schedules)s::bigint[])[ds] END,
    '',
    created_at, created_at, created_at + interval '2 seconds', %(now)s::timestamptz,
    md5(g::text)::uuid,
    0, 1, 'Tables', '{}'::jsonb, false, 2, ''
FROM (
    SELECT g,
        (%(operations)s::text[])[1 + floor(r_op * cardinality(%(operations)s::text[]))::int]
            AS op,
        1 + floor(r_ds * %(n_datastores)s)::int AS ds,
        1 + floor(r_us * cardinality(%(users)s::bigint[]))::int AS us,
        r_trig < 0.55 AS by_schedule,
        %(now)s::timestamptz - r_age * %(recent_days)s * interval '1 day' AS created_at
    FROM (
        SELECT g, random() AS r_op, random() AS r_ds, random() AS r_us, random() AS r_trig,
            random() AS r_age
        FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    ) AS r
) AS s
"""

FINISH = """
UPDATE runs_run SET status = %s, finished_at = now(), heartbeat_at = now(), worker_token = NULL,
    aborted_by_kind = %s, progress_done = 1, metrics = %s::jsonb
WHERE id = %s
"""
METRICS = json.dumps({"tables_requested": 1, "tables_profiled": 1, "records_profiled": 1200})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--prefix",
        default="assay_trigbench",
        help="database names: PREFIX_before, PREFIX_after, PREFIX_none (dropped and recreated)",
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="which of before,after,none to measure"
    )
    parser.add_argument(
        "--history", type=int, default=200_000, help="finished Runs seeded before the measurement"
    )
    parser.add_argument("--days", type=int, default=365, help="days the history spans")
    parser.add_argument(
        "--recent-days",
        type=float,
        default=3.0,
        help="the Runs to finish were created over this many last days",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=200, help="finishes per database per round")
    parser.add_argument("--warmup", type=int, default=50, help="untimed finishes per database")
    parser.add_argument(
        "--explain",
        type=int,
        default=300,
        help="finishes per database under EXPLAIN (ANALYZE) afterwards",
    )
    parser.add_argument(
        "--commit-modes",
        default="on,off",
        help="synchronous_commit of the benchmark's own sessions, one set of "
        "batches each per round (off: the commit does not wait for the WAL "
        "flush, so the statement's own cost shows)",
    )
    parser.add_argument(
        "--sqlite",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the same finishes on SQLite files (WAL, synchronous=NORMAL, "
        "as Assay opens them), without EXPLAIN",
    )
    parser.add_argument(
        "--sqlite-history",
        type=int,
        default=50_000,
        help="finished Runs seeded in each SQLite file",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench" / "finish_cost.json")
    parser.add_argument("--prepare", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--running", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sqlite-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.prefix.replace("_", "").isalnum():
        parser.error("--prefix: letters, digits and _ only (its databases are dropped)")
    args.commit_modes = [m.strip() for m in args.commit_modes.split(",") if m.strip()]
    if not args.commit_modes or set(args.commit_modes) - {"on", "off"}:
        parser.error("--commit-modes: on, off or both")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.variants or set(args.variants) - set(VARIANTS):
        parser.error(f"--variants: some of {','.join(VARIANTS)}")
    return args


# -- preparing one database (in a subprocess: Django on that database) ------------------------
def prepare(variant: str, args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    from runs import rollup

    started = time.perf_counter()
    if variant == "before":
        call_command("migrate", "runs", RUNS_0010, verbosity=0, skip_checks=True)
        others = sorted({app for app, _ in MigrationLoader(connection).graph.leaf_nodes()})
        for app in others:
            if app != "runs":
                call_command("migrate", app, verbosity=0, skip_checks=True)
    else:
        call_command("migrate", verbosity=0, skip_checks=True)
    if variant == "none":
        with connection.cursor() as cursor:
            for statement in rollup.drop_trigger_sql(connection.vendor):
                cursor.execute(statement)
    seed(args, version=9 if variant == "before" else rollup.LATEST)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    print(f"  {variant}: migrated and seeded in {time.perf_counter() - started:.0f} s", flush=True)


def seed(args: argparse.Namespace, *, version: int) -> None:
    from django.db import connection, transaction

    from accounts.models import User
    from bench.seed import ACTIVE_WINDOW, RUN_INSERT, UNIT_LABELS
    from datastores.models import Datastore
    from runs import rollup
    from runs.models import Schedule

    with transaction.atomic():
        users = User.objects.bulk_create(
            User(username=f"finisher{i:02d}", password="!") for i in range(USERS)
        )
        datastores = Datastore.objects.bulk_create(
            Datastore(name=f"warehouse-{i:02d}", source_url=f"postgresql://db{i}/warehouse")
            for i in range(DATASTORES)
        )
        schedules = Schedule.objects.bulk_create(
            Schedule(
                name=f"Nightly scan {d.name}",
                datastore=d,
                operation="scan",
                cron="0 2 * * *",
                created_by=users[0],
            )
            for d in datastores
        )
        population = {
            "datastores": [d.pk for d in datastores],
            "n_datastores": len(datastores),
            "schedules": [s.pk for s in schedules],
            "users": [u.pk for u in users],
        }
        now = dt.datetime.fromisoformat(args.now)  # the same in every database
        span = args.days * 86400.0
        history = args.history
        if connection.vendor == "sqlite":
            seed_sqlite(args, population, now)
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT setseed(%s)", [SEED])
            # Finished Runs inserted final, triggers off for the statement (as bench/seed.py
            # does), then the rollup recounted: every Run of the history is in it.
            cursor.execute("SET session_replication_role = replica")
            try:
                for first in range(1, history + 1, 100_000):
                    cursor.execute(
                        RUN_INSERT,
                        {
                            **population,
                            "unit_labels": json.dumps(UNIT_LABELS),
                            "total": history,
                            "active_share": 0.0,  # no queued or running Run in the history
                            "detail_every": history + ACTIVE_WINDOW + 1,  # no detailed Run
                            "start": now - dt.timedelta(seconds=span),
                            "step": span / max(history, 1),
                            "first": first,
                            "last": min(first + 99_999, history),
                        },
                    )
            finally:
                cursor.execute("RESET session_replication_role")
            # The Runs to finish, with the triggers on (an active Run is not counted).
            cursor.execute(
                RUNNING_INSERT,
                {
                    **population,
                    "operations": OPERATIONS,
                    "recent_days": args.recent_days,
                    "now": now,
                    "first": history + 1,
                    "last": history + args.running,
                },
            )
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('runs_run', 'id'), %s)",
                [history + args.running],
            )
            rollup.refill(cursor, "postgresql", version=version)


def seed_sqlite(args: argparse.Namespace, population: dict, now: dt.datetime) -> None:
    """SQLite: the same population from Python's random (fixed seed). The history is inserted
    running and finished by one UPDATE, which the rollup triggers count (SQLite has no way to
    insert a finished Run with the triggers off)."""
    from django.db import connection

    rng = random.Random(SEED)
    stamp = "%Y-%m-%d %H:%M:%S.%f"
    datastores, users = population["datastores"], population["users"]
    rows = []
    total = args.history + args.running
    for run_id in range(1, total + 1):
        if run_id <= args.history:
            created = now - dt.timedelta(days=args.days) * (1 - run_id / args.history)
        else:
            created = now - dt.timedelta(days=args.recent_days) * rng.random()
        op = rng.choice(OPERATIONS)
        ds = rng.randrange(len(datastores))
        by_schedule = rng.random() < 0.55
        rows.append(
            (
                run_id,
                op,
                datastores[ds],
                datastores[(ds + 1) % len(datastores)] if op == "promote" else None,
                "schedule" if by_schedule else "user",
                None if by_schedule else rng.choice(users),
                "schedule" if by_schedule else "web",
                population["schedules"][ds] if by_schedule else None,
                created.strftime(stamp),
                (created + dt.timedelta(seconds=2)).strftime(stamp),
                f"{run_id:032x}",
            )
        )
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO runs_run (id, operation, status, datastore_id, "
            "destination_datastore_id, config, triggered_by_kind, triggered_by_user_id, "
            "triggered_via, schedule_id, aborted_by_kind, created_at, enqueued_at, started_at, "
            "heartbeat_at, worker_token, progress_done, progress_total, progress_unit, metrics, "
            "has_warnings, log_lines, error, send_count, progress_failed) "
            "VALUES (%s, %s, 'running', %s, %s, '{}', %s, %s, %s, %s, '', %s, %s, %s, %s, %s, "
            "0, 1, 'Tables', '{}', 0, 2, '', 1, 0)",
            [(*r[:8], r[8], r[8], r[9], r[9], r[10]) for r in rows],
        )
        cursor.execute(
            "UPDATE runs_run SET status = CASE WHEN id %% 50 < 43 THEN 'success' "
            "WHEN id %% 50 < 47 THEN 'failure' ELSE 'aborted' END, "
            "aborted_by_kind = CASE WHEN id %% 50 < 47 THEN '' ELSE 'system' END, "
            "finished_at = strftime('%%Y-%%m-%%d %%H:%%M:%%f', started_at, '+90 seconds'), "
            "worker_token = NULL WHERE id <= %s",
            [args.history],
        )


# -- measuring ---------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def finishes(args: argparse.Namespace, total: int) -> list[tuple[int, str, str]]:
    """(Run id, status, aborted_by_kind) of every finish, in order: the same in each database."""
    rng = random.Random(SEED)
    ids = list(range(args.history + 1, args.history + total + 1))
    rng.shuffle(ids)
    statuses = rng.choices([s for s, _ in OUTCOMES], [w for _, w in OUTCOMES], k=total)
    return [(i, s, "system" if s == "aborted" else "") for i, s in zip(ids, statuses, strict=True)]


def finish(cursor, run: tuple[int, str, str]) -> float:
    run_id, status, aborted_by = run
    started = time.perf_counter()
    cursor.execute(FINISH, [status, aborted_by, METRICS, run_id])
    elapsed = time.perf_counter() - started
    if cursor.rowcount != 1:
        raise RuntimeError(f"Run {run_id} was not updated")
    return elapsed * 1000


def explain(cursor, run: tuple[int, str, str]) -> tuple[float, float]:
    """Server time of one finish under EXPLAIN (ANALYZE): (statement ms, rollup trigger ms)."""
    run_id, status, aborted_by = run
    cursor.execute(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + FINISH, [status, aborted_by, METRICS, run_id]
    )
    plan = cursor.fetchone()[0]
    plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]
    trigger = sum(
        t["Time"] for t in plan.get("Triggers", []) if t["Trigger Name"] == "run_hour_count"
    )
    return plan["Execution Time"], trigger


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p95": percentile(values, 95),
        "mean": statistics.fmean(values),
        "min": min(values),
    }


FINISH_SQLITE = """
UPDATE runs_run SET status = ?, finished_at = strftime('%Y-%m-%d %H:%M:%f', 'now'),
    heartbeat_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), worker_token = NULL,
    aborted_by_kind = ?, progress_done = 1, metrics = ?
WHERE id = ?
"""


def measure_sqlite(args: argparse.Namespace) -> dict:
    """The same finishes on one SQLite file per variant, alternating as on PostgreSQL."""
    import sqlite3
    import tempfile

    history = args.sqlite_history
    running = args.warmup + args.rounds * args.batch
    tmp = Path(tempfile.mkdtemp(prefix="assay-finish-cost-"))
    files = {v: tmp / f"{v}.sqlite3" for v in args.variants}
    print(
        f"\nSQLite: preparing {len(files)} files in {tmp}: {history:,} finished and "
        f"{running:,} running Runs each...",
        flush=True,
    )
    for variant, path in files.items():
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--prepare",
                variant,
                "--running",
                str(running),
                "--history",
                str(history),
                "--days",
                str(args.days),
                "--recent-days",
                str(args.recent_days),
                "--now",
                args.now,
                "--sqlite-file",
                str(path),
            ],
            cwd=ROOT,
            env=django_env(f"sqlite:///{path}"),
            check=True,
        )
    sub = argparse.Namespace(**{**vars(args), "history": history})
    plan = finishes(sub, running)
    warm, rest = plan[: args.warmup], plan[args.warmup :]
    conns = {}
    for variant, path in files.items():
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conns[variant] = conn

    def finish_sqlite(conn, run) -> float:
        run_id, status, aborted_by = run
        started = time.perf_counter()
        rowcount = conn.execute(FINISH_SQLITE, [status, aborted_by, METRICS, run_id]).rowcount
        elapsed = time.perf_counter() - started
        if rowcount != 1:
            raise RuntimeError(f"Run {run_id} was not updated")
        return elapsed * 1000

    load_start = os.getloadavg()
    for variant in args.variants:
        for run in warm:
            finish_sqlite(conns[variant], run)
    times: dict[str, list[float]] = {v: [] for v in args.variants}
    round_p50: dict[str, list[float]] = {v: [] for v in args.variants}
    for r in range(args.rounds):
        batch = rest[r * args.batch : (r + 1) * args.batch]
        shift = r % len(args.variants)
        for variant in args.variants[shift:] + args.variants[:shift]:
            batch_times = [finish_sqlite(conns[variant], run) for run in batch]
            times[variant] += batch_times
            round_p50[variant].append(statistics.median(batch_times))
    load_end = os.getloadavg()
    for variant, conn in conns.items():
        left = conn.execute("SELECT count(*) FROM runs_run WHERE status = 'running'").fetchone()
        if left[0] != 0:
            raise RuntimeError(f"SQLite {variant}: Runs left running")
        conn.close()
    version = sqlite3.sqlite_version
    result = {
        "sqlite": version,
        "history": history,
        "load_before": load_start,
        "load_after": load_end,
        "finish_ms": {v: summary(times[v]) for v in args.variants},
        "round_p50_ms": round_p50,
    }
    print(
        f"\nSQLite {version} (WAL, synchronous=NORMAL), load average {load_start[0]:.2f} "
        f"before, {load_end[0]:.2f} after"
    )
    print()
    print("| Rollup triggers | finish p50 ms | p95 ms | mean ms |")
    print("|---|---:|---:|---:|")
    for variant in args.variants:
        f = times[variant]
        print(
            f"| {variant} | {statistics.median(f):.3f} | {percentile(f, 95):.3f} "
            f"| {statistics.fmean(f):.3f} |"
        )
    if "before" in times and "after" in times:
        result["ratio_after_before"] = {
            "p50": statistics.median(times["after"]) / statistics.median(times["before"]),
            "round_p50_median": statistics.median(
                a / b for a, b in zip(round_p50["after"], round_p50["before"], strict=True)
            ),
        }
        ratio = result["ratio_after_before"]
        print(
            f"\nafter / before: p50 {ratio['p50']:.2f}, median of the per-round p50 ratios "
            f"{ratio['round_p50_median']:.2f}"
        )
    if not args.keep:
        for path in files.values():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        tmp.rmdir()
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    names = {v: f"{args.prefix}_{v}" for v in args.variants}
    per_round = args.batch * len(args.commit_modes)
    running = args.warmup + args.rounds * per_round + args.explain
    if args.prepare:  # the subprocess of one database
        if args.sqlite_file:
            url = f"sqlite:///{args.sqlite_file}"
        else:
            url = f"{args.server}/{args.prefix}_{args.prepare}"
        os.environ.update(django_env(url))
        prepare(args.prepare, args)
        return 0

    import psycopg

    load_before = os.getloadavg()
    started_at = dt.datetime.now(dt.UTC)
    args.now = started_at.isoformat()  # seeding's "now", for the same rows in every database
    print(
        f"Preparing {', '.join(names.values())}: {args.history:,} finished and "
        f"{running:,} running Runs each...",
        flush=True,
    )
    for variant, name in names.items():
        recreate_database(args.server, name)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--prepare",
                variant,
                "--running",
                str(running),
                "--history",
                str(args.history),
                "--days",
                str(args.days),
                "--recent-days",
                str(args.recent_days),
                "--now",
                args.now,
                "--prefix",
                args.prefix,
                "--server",
                args.server,
            ],
            cwd=ROOT,
            env=django_env(f"{args.server}/{name}"),
            check=True,
        )

    plan = finishes(args, running)
    warm, rest = plan[: args.warmup], plan[args.warmup :]
    batches = [
        rest[i * args.batch : (i + 1) * args.batch]
        for i in range(args.rounds * len(args.commit_modes))
    ]
    explained = rest[args.rounds * per_round :]

    conns = {
        v: psycopg.connect(
            f"{args.server}/{name}", autocommit=True, cursor_factory=psycopg.ClientCursor
        )
        for v, name in names.items()
    }
    cursors = {v: c.cursor() for v, c in conns.items()}
    first = cursors[args.variants[0]]
    first.execute("SHOW server_version")
    server_version = first.fetchone()[0]
    first.execute("SHOW synchronous_commit")
    server_commit = first.fetchone()[0]
    for variant, cursor in cursors.items():  # the triggers each database has on runs_run
        cursor.execute(
            "SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger "
            "WHERE tgrelid = 'runs_run'::regclass AND NOT tgisinternal"
        )
        print(f"  {variant}: triggers on runs_run: {cursor.fetchone()[0]}", flush=True)

    def set_commit(mode: str) -> None:  # this benchmark's sessions only
        for cursor in cursors.values():
            cursor.execute(f"SET synchronous_commit = {mode}")

    load_start = os.getloadavg()
    print(
        f"Measuring: {args.warmup} warm-up finishes, then {args.rounds} rounds of "
        f"{args.batch} finishes per database and synchronous_commit mode "
        f"({', '.join(args.commit_modes)})...",
        flush=True,
    )
    set_commit(args.commit_modes[0])
    for variant in args.variants:
        for run in warm:
            finish(cursors[variant], run)
    keys = [(m, v) for m in args.commit_modes for v in args.variants]
    times: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    round_p50: dict[tuple[str, str], list[float]] = {k: [] for k in keys}
    orders = []
    batch_iter = iter(batches)
    for r in range(args.rounds):
        shift = r % len(args.variants)
        order = args.variants[shift:] + args.variants[:shift]
        modes = args.commit_modes if r % 2 == 0 else args.commit_modes[::-1]
        orders.append([modes, order])
        for mode in modes:
            set_commit(mode)
            batch = next(batch_iter)
            for variant in order:
                batch_times = [finish(cursors[variant], run) for run in batch]
                times[mode, variant] += batch_times
                round_p50[mode, variant].append(statistics.median(batch_times))
        print(
            f"  round {r + 1}: "
            + "; ".join(
                f"commit {m}: " + ", ".join(f"{v} {round_p50[m, v][-1]:.2f}" for v in args.variants)
                for m in args.commit_modes
            )
            + " ms p50",
            flush=True,
        )

    set_commit(server_commit)
    server: dict[str, list[float]] = {v: [] for v in args.variants}
    trigger: dict[str, list[float]] = {v: [] for v in args.variants}
    for i, run in enumerate(explained):  # alternating one by one
        shift = i % len(args.variants)
        for variant in args.variants[shift:] + args.variants[:shift]:
            total_ms, trigger_ms = explain(cursors[variant], run)
            server[variant].append(total_ms)
            trigger[variant].append(trigger_ms)
    load_end = os.getloadavg()

    sizes = {}
    for variant, cursor in cursors.items():  # every planned finish landed
        cursor.execute("SELECT count(*) FROM runs_run WHERE status = 'running'")
        if cursor.fetchone()[0] != 0:
            raise RuntimeError(f"{variant}: Runs left running")
        cursor.execute(
            "SELECT (SELECT count(*) FROM runs_runquartercount), "
            "(SELECT count(*) FROM runs_runhourcount), (SELECT count(*) FROM runs_rundaycount)"
        )
        sizes[variant] = dict(zip(("quarter", "hour", "day"), cursor.fetchone(), strict=True))
    for conn in conns.values():
        conn.close()

    def ratios(mode: str) -> dict[str, float]:
        after, before = times[mode, "after"], times[mode, "before"]
        return {
            "p50": statistics.median(after) / statistics.median(before),
            "p95": percentile(after, 95) / percentile(before, 95),
            "round_p50_median": statistics.median(
                a / b
                for a, b in zip(round_p50[mode, "after"], round_p50[mode, "before"], strict=True)
            ),
        }

    result = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "ended_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "server_synchronous_commit": server_commit,
        "load_before_prepare": load_before,
        "load_before": load_start,
        "load_after": load_end,
        "rollup_rows": sizes,
        "orders": orders,
        "finish_ms": {f"{m}/{v}": summary(times[m, v]) for m, v in keys},
        "round_p50_ms": {f"{m}/{v}": round_p50[m, v] for m, v in keys},
        "explain_statement_ms": {v: summary(server[v]) for v in args.variants},
        "explain_trigger_ms": {v: summary(trigger[v]) for v in args.variants},
    }
    comparable = "before" in args.variants and "after" in args.variants
    if comparable:
        result["ratio_after_before"] = {m: ratios(m) for m in args.commit_modes}
        result["ratio_after_before"]["explain_trigger_p50"] = (
            result["explain_trigger_ms"]["after"]["p50"]
            / result["explain_trigger_ms"]["before"]["p50"]
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))

    print()
    print(
        f"{os.cpu_count()} CPUs, PostgreSQL {server_version} (synchronous_commit "
        f"{server_commit}), load average {load_start[0]:.2f} before, {load_end[0]:.2f} "
        f"after; {started_at:%Y-%m-%d %H:%M} UTC"
    )
    print()
    print("| Rollup triggers | synchronous_commit | finish p50 ms | p95 ms | mean ms |")
    print("|---|---|---:|---:|---:|")
    for mode, variant in keys:
        f = times[mode, variant]
        print(
            f"| {variant} | {mode} | {statistics.median(f):.2f} | {percentile(f, 95):.2f} "
            f"| {statistics.fmean(f):.2f} |"
        )
    print()
    print(
        "| Rollup triggers | server: UPDATE p50 / p95 ms | of which rollup trigger p50 / p95 ms |"
    )
    print("|---|---:|---:|")
    for variant in args.variants:
        s, t = server[variant], trigger[variant]
        print(
            f"| {variant} | {statistics.median(s):.3f} / {percentile(s, 95):.3f} "
            f"| {statistics.median(t):.3f} / {percentile(t, 95):.3f} |"
        )
    if comparable:
        print()
        for mode in args.commit_modes:
            ratio = result["ratio_after_before"][mode]
            print(
                f"after / before, synchronous_commit {mode}: p50 {ratio['p50']:.2f}, "
                f"p95 {ratio['p95']:.2f}, median of the per-round p50 ratios "
                f"{ratio['round_p50_median']:.2f}"
            )
        print(
            f"after / before, rollup trigger alone (server, p50): "
            f"{result['ratio_after_before']['explain_trigger_p50']:.2f}"
        )
    print(f"\nWritten to {args.json}")

    if args.sqlite:
        result["sqlite"] = measure_sqlite(args)
        args.json.write_text(json.dumps(result, indent=2))

    if not args.keep:
        for name in names.values():
            recreate_database(args.server, name, drop_only=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
