"""Activity page benchmark (DESIGN §5): server time with 10^6 or 10^7 Runs in PostgreSQL.

    .venv/bin/python bench/activity.py --runs 1000000      # or: make bench-activity
    make bench-activity BENCH_ARGS="--runs 10000000"       # 10^7: about 15 min of seeding

1. Recreates the database ``assay_bench`` (drop + create), migrates it, and seeds users, teams,
   datastores, schedules and ``--runs`` Runs with server-side SQL (see bench/seed.py), then
   VACUUM ANALYZE. ``--reuse`` skips this when the database already holds that many Runs.
2. Calls the views in-process with Django's test client (server time, no network), logged in
   as an admin and as an editor who sees only some datastores: warm-up, then ``--requests``
   timed requests per scenario (first page, filtered pages, a deep page, an unchanged poll),
   every page both with the heatmap cache warm and emptied before each request.
3. Captures each scenario's SQL and runs ``EXPLAIN (ANALYZE, BUFFERS)`` on every SELECT,
   flagging any sequential scan of runs_run. Writes a Markdown report (``--report``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import zoneinfo
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATASTORES = 20
# The editor's teams hold these datastore positions (0 = busiest): a busy one, a middling one
# and a quiet one, so their Runs are a minority interleaved with everybody else's.
EDITOR_DATASTORES = (2, 9, 17)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="Runs to seed")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL (without database)")
    parser.add_argument("--database", default="assay_bench", help="database to (re)create")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per scenario")
    parser.add_argument("--passes", type=int, default=4,
                        help="rounds over all scenarios; the timed requests are split over them")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per scenario")
    parser.add_argument("--ab-rounds", type=int, default=10,
                        help="rounds of the heatmap count-vs-rollup comparison")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="measure only the scenarios whose name contains one of these")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database if it already holds --runs Runs (migrating it)")
    parser.add_argument("--seed-only", action="store_true",
                        help="seed (or with --reuse, migrate) the database, measure nothing")
    parser.add_argument("--report", type=Path, default=ROOT / "var" / "bench" / "activity.md",
                        help="where to write the Markdown report")
    args = parser.parse_args(argv)
    if args.runs < 10_000:
        parser.error("--runs must be at least 10000 (deep pages need depth)")
    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and _ only (it is dropped and recreated)")
    return args


# -- database ----------------------------------------------------------------------------------
def recreate_database(server: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", [name]
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def django_env(db_url: str) -> dict[str, str]:
    """The environment of a benchmark's Django: production settings on ``db_url``."""
    var_dir = ROOT / "var" / "bench"
    var_dir.joinpath("static").mkdir(parents=True, exist_ok=True)  # whitenoise wants it
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assay.settings",
        "DATABASE_URL": db_url,
        "DEBUG": "0",
        "ASSAY_VAR_DIR": str(var_dir),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "assay-bench-not-a-secret"),
        "LOG_LEVEL": "WARNING",
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--skip-checks", "-v0"],
        cwd=ROOT, env=env, check=True,
    )


def seeded_runs() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM runs_run")
        return cursor.fetchone()[0]


def seed(runs: int) -> None:
    from django.db import connection, transaction

    from accounts.models import Level, Role, Team, User
    from bench.seed import Population, seed_runs
    from datastores.models import Datastore
    from runs.models import Schedule

    started = time.perf_counter()
    with transaction.atomic():
        admin = User.objects.create(username="bench-admin", role=Role.ADMIN, is_staff=True)
        editor = User.objects.create(username="bench-editor", first_name="Edie", last_name="Tor")
        users = [admin, editor] + User.objects.bulk_create(
            User(username=f"analyst{i:02d}", first_name=f"Analyst {i}", password="!")
            for i in range(30)
        )
        datastores = Datastore.objects.bulk_create(
            Datastore(name=f"warehouse-{i:02d}", source_url=f"postgresql://db{i}/warehouse")
            for i in range(DATASTORES)
        )
        schedules = Schedule.objects.bulk_create(
            Schedule(name=f"Nightly scan {d.name}", datastore=d, operation="scan",
                     cron="0 2 * * *", created_by=admin)
            for d in datastores
        )
        editors = Team.objects.create(name="Bench editors", level=Level.EDITOR)
        editors.members.add(editor)
        editors.datastores.add(*(datastores[i] for i in EDITOR_DATASTORES))
        # Other teams exist too: the permission subquery must not depend on there being one.
        for t in range(4):
            team = Team.objects.create(name=f"Analysts {t}", level=Level.VIEWER)
            team.members.add(*users[2 + t * 7: 9 + t * 7])
            team.datastores.add(*datastores[t * 5: t * 5 + 5])

        population = Population(
            datastore_ids=[d.pk for d in datastores],
            schedule_ids=[s.pk for s in schedules],
            user_ids=[u.pk for u in users],
        )
        with connection.cursor() as cursor:
            seed_runs(
                cursor, population=population, runs=runs,
                progress=lambda n: print(f"  {n:>9,} Runs", flush=True),
            )
    print(f"Seeded {runs:,} Runs in {time.perf_counter() - started:.0f} s; VACUUM ANALYZE...")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


# -- measuring ---------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    user: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    expect: int = 200
    # Empty the cache before every request: the heatmap recounts its 12 weeks, as on the
    # first load of a page (per filter combination and web process) each day.
    cold: bool = False


@dataclass
class Result:
    scenario: Scenario
    p50_ms: float
    p95_ms: float
    min_ms: float
    sql_ms: float
    status: int
    size: int
    queries: list[str]
    plans: list[dict]


def scenarios() -> list[Scenario]:
    from django.urls import reverse

    from datastores.models import Datastore
    from runs.models import Run, Schedule

    busy = Datastore.objects.get(name="warehouse-00")
    # The editor's busy datastore's schedule: both users see its Runs.
    schedule = Schedule.objects.get(datastore__name=f"warehouse-{EDITOR_DATASTORES[0]:02d}")
    quiet = Datastore.objects.get(name=f"warehouse-{EDITOR_DATASTORES[-1]:02d}")
    newest = Run.objects.order_by("-id").values_list("id", flat=True).first()
    deep = newest - int(newest * 0.9)
    listing = reverse("activity:list")
    old = dt.date.today() - dt.timedelta(weeks=11)
    old_day, old_day_3 = old.isoformat(), (old + dt.timedelta(days=2)).isoformat()
    pages = []
    for user in ("bench-admin", "bench-editor"):
        ds = busy if user == "bench-admin" else quiet
        pages += [
            Scenario("first page", user, listing),
            Scenario("status=failure&operation=scan", user,
                     f"{listing}?status=failure&operation=scan"),
            Scenario(f"datastore={ds.name}", user, f"{listing}?datastore={ds.pk}"),
            Scenario(f"deep page (before={deep})", user, f"{listing}?before={deep}"),
            # Beyond the targets: a heatmap cell 11 weeks back, a 3-day From/To range there,
            # and a user-name filter.
            Scenario(f"extra: one day ({old_day})", user,
                     f"{listing}?date_from={old_day}&date_to={old_day}"),
            Scenario(f"extra: 3 days ({old_day}..)", user,
                     f"{listing}?date_from={old_day}&date_to={old_day_3}"),
            Scenario("extra: by=analyst07", user, f"{listing}?by=analyst07"),
            Scenario(f"extra: schedule={schedule.name}", user,
                     f"{listing}?schedule={schedule.pk}"),
        ]
    # A viewer whose midnight falls inside a UTC hour (India, +5:30): the part days at both
    # ends of each local day come from other rows, or from the Runs (see docs/ui.md, "Times").
    kolkata = _kolkata_admin()
    pages += [
        Scenario("first page, time zone Asia/Kolkata", kolkata, listing),
        Scenario("extra: status=failure&operation=scan, Asia/Kolkata", kolkata,
                 f"{listing}?status=failure&operation=scan"),
        Scenario("extra: by=analyst07, Asia/Kolkata", kolkata, f"{listing}?by=analyst07"),
        Scenario(f"extra: schedule={schedule.name}, Asia/Kolkata", kolkata,
                 f"{listing}?schedule={schedule.pk}"),
    ]
    # Every page both warm and cold: with the heatmap cache emptied before every request,
    # as on the first load of a filter combination each day.
    out = []
    for page in pages:
        out += [page, replace(page, name=f"{page.name}, heatmap not cached", cold=True)]
    out += poll_scenarios()
    return out


def _kolkata_admin() -> str:
    """An admin who reads the pages in India's time zone (made on first use)."""
    from accounts.models import Role, User

    User.objects.update_or_create(
        username="bench-admin-kolkata",
        defaults={"role": Role.ADMIN, "is_staff": True, "time_zone": "Asia/Kolkata"},
    )
    return "bench-admin-kolkata"


def poll_scenarios() -> list[Scenario]:
    """Unchanged polls of a running Run the user may see, sent as the pages' htmx triggers do:
    the Activity row (``?v=`` state version), the detail page's live region, its log tail."""
    from django.urls import reverse

    from accounts.models import User
    from activity.selectors import state_version
    from runs.models import Run, RunStatus

    out = []
    for username in ("bench-admin", "bench-editor"):
        user = User.objects.get(username=username)
        run = Run.objects.visible_to(user).filter(status=RunStatus.RUNNING).first()
        if run is None:
            raise SystemExit(f"no running Run visible to {username}: reseed")
        v = state_version(run)
        htmx = {"HX-Request": "true"}
        out += [
            Scenario("unchanged poll: Activity row", username,
                     f"{reverse('activity:run-line', args=[run.pk])}?v={v}", htmx, 204),
            Scenario("unchanged poll: Run detail", username,
                     f"{reverse('activity:run-live', args=[run.pk])}?v={v}", htmx, 204),
            Scenario("unchanged poll: Run log", username,
                     f"{reverse('activity:run-logs', args=[run.pk])}?after=0&n={run.log_lines}",
                     htmx, 204),
        ]
    return out


# -- the heatmap's past days: counting Runs vs summing the rollup, side by side --------------
@dataclass
class HeatmapAB:
    case: str
    count_ms: float  # p50, counting the Runs (the heatmap's query before the rollup)
    rollup_ms: float  # p50, summing the rollup (activity.selectors._finished_per_day)
    equal: bool


def heatmap_ab(rounds: int) -> list[HeatmapAB]:
    """The 12 weeks' finished Runs per day, both ways, alternating in one loop; and whether
    both give the same days and counts."""
    from django.utils import timezone

    from accounts.models import User
    from activity.selectors import (
        HEATMAP_WEEKS,
        _finished_per_day,
        _per_day,
        visible_datastores,
    )
    from runs.models import ACTIVE_STATUSES, Schedule
    from runs.selectors import RunFilters, day_start, visible_runs

    schedule = Schedule.objects.get(datastore__name=f"warehouse-{EDITOR_DATASTORES[0]:02d}")
    cases = {
        "no filter": RunFilters(),
        "status=failure&operation=scan": RunFilters(statuses=("failure",), operations=("scan",)),
        # Who launched the Runs: the per-actor day rows (and their quarter-of-day totals off
        # UTC).
        "by=analyst07": RunFilters(triggered_by="analyst07").resolved(),
        f"schedule={schedule.name}": RunFilters(schedule_id=schedule.pk),
    }
    out = []
    for username in ("bench-admin", "bench-editor"):
        user = User.objects.get(username=username)
        stores = list(visible_datastores(user))
        for name, filters in cases.items():
            for zone_name in ("UTC", "Asia/Kolkata"):
                zone = zoneinfo.ZoneInfo(zone_name)
                today = timezone.now().astimezone(zone).date()
                first = today - dt.timedelta(days=today.weekday() + 7 * (HEATMAP_WEEKS - 1))
                runs = filters.apply(visible_runs(user, stores), dates=False)
                past = runs.filter(
                    created_at__gte=day_start(first, zone), created_at__lt=day_start(today, zone)
                ).exclude(status__in=ACTIVE_STATUSES)
                count_ms, rollup_ms = [], []
                for _ in range(rounds):
                    started = time.perf_counter()
                    counted = _per_day(past, zone)
                    count_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    summed = _finished_per_day(user, filters, stores, runs, first, today, zone)
                    rollup_ms.append((time.perf_counter() - started) * 1000)
                out.append(HeatmapAB(f"{name}, {zone_name}", statistics.median(count_ms),
                                     statistics.median(rollup_ms), counted == summed))
                out[-1].user = username
                print(f"heatmap past days {out[-1].case:<45} {username:<13} "
                      f"count {out[-1].count_ms:7.1f} ms  rollup {out[-1].rollup_ms:6.1f} ms  "
                      f"equal: {out[-1].equal}", flush=True)
    return out


def explain(sql: str) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        text = [row[0] for row in cursor.fetchall()]
    nodes = list(_walk(plan[0]["Plan"]))
    return {
        "sql": sql,
        "text": text,
        "seq_scans": sorted({n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"}),
        "indexes": sorted({n["Index Name"] for n in nodes if "Index Name" in n}),
        "touches_runs": any(n.get("Relation Name") == "runs_run" for n in nodes),
        "execution_ms": plan[0]["Execution Time"],
    }


def _walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


def _getter(scenario: Scenario):
    """A logged-in ``get`` for the scenario (emptying the cache first when it is cold)."""
    from django.core.cache import cache
    from django.test import Client

    from accounts.models import User

    client = Client()
    client.force_login(User.objects.get(username=scenario.user))

    def get():
        if scenario.cold:
            cache.clear()
        response = client.get(scenario.url, headers=scenario.headers)
        if response.status_code != scenario.expect:
            raise SystemExit(
                f"{scenario.name} as {scenario.user}: HTTP {response.status_code}, "
                f"expected {scenario.expect}: {response.content[:300]!r}"
            )
        return response

    return get


def timed(scenario: Scenario, *, requests: int, warmup: int) -> list[float]:
    get = _getter(scenario)
    for _ in range(warmup):
        get()
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        get()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def measure(scenario: Scenario, timings: list[float]) -> Result:
    """Pooled timings, plus the SQL share (Django's own per-query timing, median of 20 more
    requests) and the plans of the last request's queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    get = _getter(scenario)
    sql_ms = []
    for _ in range(20):
        with CaptureQueriesContext(connection) as captured:
            response = get()
        sql_ms.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
    queries = [q["sql"] for q in captured.captured_queries]
    plans = [explain(sql) for sql in queries if sql.lstrip().upper().startswith("SELECT")]
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return Result(scenario, cuts[49], cuts[94], min(timings), statistics.median(sql_ms),
                  response.status_code, len(response.content), queries, plans)


# -- report ------------------------------------------------------------------------------------
def machine() -> str:
    from django.db import connection

    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown CPU",
    )
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
        cursor.execute("SHOW shared_buffers")
        buffers = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('runs_run'))")
        size = cursor.fetchone()[0]
    return (f"{os.cpu_count()} vCPU ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, "
            f"PostgreSQL {pg} (shared_buffers {buffers}; runs_run with its indexes: {size}), "
            f"Python {platform.python_version()}")


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with "
        f"`.venv/bin/python bench/activity.py {' '.join(args.argv)}` "
        f"({args.warmup} warm-up + {args.requests} timed requests per scenario, in "
        f"{args.passes} passes over all scenarios"
        f"{'; database seeded by an earlier run' if args.reused else ''}).",
        "",
        f"Machine: {machine()}. Load average (1 min): {args.load_before:.1f} before the "
        f"measurements, {os.getloadavg()[0]:.1f} after.",
        "",
        "| Scenario | User | p50 ms | p95 ms | min ms | SQL ms | HTTP | Bytes | Queries | "
        "runs_run indexes | Seq Scan on runs_run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        run_plans = [p for p in r.plans if p["touches_runs"]]
        indexes = sorted({i for p in run_plans for i in p["indexes"]})
        seq = any("runs_run" in p["seq_scans"] for p in r.plans)
        lines.append(
            f"| {r.scenario.name} | {r.scenario.user} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
            f"{r.min_ms:.1f} | {r.sql_ms:.1f} | {r.status} | {r.size} | {len(r.queries)} | "
            f"{', '.join(indexes) or '-'} | {'**yes**' if seq else 'no'} |"
        )
    lines += [
        "",
        "The heatmap's past days (12 weeks of finished Runs per day), counting the Runs vs "
        f"summing the hourly rollup, alternating, {args.ab_rounds} rounds each (p50 ms):",
        "",
        "| Case | User | Counting Runs | Rollup | Ratio | Same counts |",
        "|---|---|---:|---:|---:|---|",
    ]
    for ab in args.ab:
        lines.append(f"| {ab.case} | {ab.user} | {ab.count_ms:.1f} | {ab.rollup_ms:.1f} | "
                     f"{ab.count_ms / max(ab.rollup_ms, 0.01):.0f}x | {ab.equal} |")
    lines += ["", "Plans of the queries reading runs_run (`EXPLAIN (ANALYZE, BUFFERS)`, trimmed):"]
    for r in results:
        for p in (p for p in r.plans if p["touches_runs"]):
            lines += [
                "",
                f"{r.scenario.name} as {r.scenario.user} ({p['execution_ms']:.2f} ms):",
                "",
                "```sql",
                _short_sql(p["sql"]),
                "```",
                "```",
                *_key_lines(p["text"]),
                "```",
            ]
    return "\n".join(lines) + "\n"


def _short_sql(sql: str) -> str:
    """The SQL with a long column list folded, so the FROM/WHERE/ORDER BY parts stay readable."""
    head, sep, rest = sql.partition(" FROM ")
    if sep and len(head) > 120:
        head = f"SELECT … {head.count(',') + 1} columns …"
    return head + sep + rest


def _key_lines(plan: list[str]) -> list[str]:
    """The plan trimmed to its root, sorts and aggregates, the nodes reading runs_run (with
    their conditions and filters) and the timings: the select_related joins are left out."""
    keep, inside = [], False
    for i, line in enumerate(plan):
        node = line.lstrip().startswith("->") or i == 0
        if node:
            inside = i == 0 or " on runs_run" in line or any(
                kind in line for kind in ("Sort", "Aggregate", "Bitmap", "Gather", "Limit")
            )
        detail = line.strip().split(":")[0] in {
            "Index Cond", "Filter", "Rows Removed by Filter", "Heap Fetches", "Sort Key",
            "Recheck Cond", "Group Key",
        }
        timing = line.startswith(("Planning Time", "Execution Time"))
        if (node and inside) or (inside and detail) or timing:
            keep.append(line)
    return keep


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    env = django_env(f"{args.server}/{args.database}")
    os.environ.update(env)
    import django

    django.setup()
    args.reused = args.reuse and _existing_runs() == args.runs
    if not args.reused:
        print(f"Recreating {args.database} and migrating...", flush=True)
        from django.db import connections

        connections.close_all()
        recreate_database(args.server, args.database)
        migrate(env)
        seed(args.runs)
    else:
        migrate(env)  # new migrations (the rollup backfill) apply to the seeded database too
    if args.seed_only:
        return 0

    args.load_before = os.getloadavg()[0]
    # Every scenario is measured in each of --passes rounds, its timings pooled: a burst of
    # load from elsewhere on a shared machine then lands on all scenarios alike.
    cases = [s for s in scenarios() if not args.only or any(t in s.name for t in args.only)]
    pooled: list[list[float]] = [[] for _ in cases]
    per_pass = max(1, args.requests // args.passes)
    for round_ in range(args.passes):
        print(f"Pass {round_ + 1} of {args.passes}...", flush=True)
        for scenario, timings in zip(cases, pooled, strict=True):
            timings += timed(scenario, requests=per_pass,
                             warmup=args.warmup if round_ == 0 else 3)
    args.ab = heatmap_ab(args.ab_rounds) if args.ab_rounds else []
    results = []
    for scenario, timings in zip(cases, pooled, strict=True):
        result = measure(scenario, timings)
        results.append(result)
        print(f"{scenario.name:<40} {scenario.user:<13} p50 {result.p50_ms:7.2f} ms  "
              f"p95 {result.p95_ms:7.2f} ms  min {result.min_ms:6.2f} ms  "
              f"SQL {result.sql_ms:6.2f} ms  {len(result.queries)} queries", flush=True)
    text = report(results, args)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(f"Report: {args.report}")
    bad = [r for r in results if any("runs_run" in p["seq_scans"] for p in r.plans)]
    for r in bad:
        print(f"Seq Scan on runs_run: {r.scenario.name} as {r.scenario.user}", file=sys.stderr)
    for ab in args.ab:
        if not ab.equal:
            print(f"Heatmap rollup differs from the Runs: {ab.case} as {ab.user}",
                  file=sys.stderr)
    return 1 if bad or not all(ab.equal for ab in args.ab) else 0


def _existing_runs() -> int:
    from django.db import OperationalError, ProgrammingError

    try:
        return seeded_runs()
    except (OperationalError, ProgrammingError):  # no database yet, or not migrated
        return -1


if __name__ == "__main__":
    sys.exit(main())
