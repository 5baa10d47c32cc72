"""Checks and anomalies benchmark: list pages with 10^6 anomalies and 10^5 checks in PostgreSQL.

    .venv/bin/python bench/checks_anomalies.py            # or: make bench-checks

1. Recreates the database ``assay_bench_checks``, migrates it and seeds, with server-side SQL:
   20 datastores of 50 containers, ``--checks`` checks (60 % active, 30 % draft, 10 % archived;
   70 % inferred), 6 evaluations per active check, and ``--anomalies`` anomalies over the last
   365 days (ids follow time). The newest ``--checks`` anomalies hold one per check, 80 % of
   them open; every older one is resolved (one open anomaly per check is a constraint).
   ``--reuse`` skips this when the database already holds that many anomalies.
2. Calls the pages and the API in-process with Django's test client (server time, no network),
   as an admin and as an editor who sees 3 of the 20 datastores, pooled over passes.
3. Runs ``EXPLAIN (ANALYZE, BUFFERS)`` on every SELECT and fails if a plan reads
   ``datastores_anomaly``, ``datastores_check`` or ``datastores_checkevaluation`` with a
   sequential scan. Writes a Markdown report (``--report``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.activity import (  # noqa: E402 -- after the path set-up
    Scenario,
    machine,
    measure,
    migrate,
    recreate_database,
    timed,
)

DATASTORES = 20
CONTAINERS_PER_DATASTORE = 50
EDITOR_DATASTORES = (2, 9, 17)
EVALUATIONS_PER_CHECK = 6
TABLES = ("datastores_anomaly", "datastores_check", "datastores_checkevaluation")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anomalies", type=int, default=1_000_000)
    parser.add_argument("--checks", type=int, default=100_000)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL (without database)")
    parser.add_argument("--database", default="assay_bench_checks",
                        help="database to (re)create")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per scenario")
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the database if it already holds --anomalies anomalies")
    parser.add_argument("--report", type=Path,
                        default=ROOT / "var" / "bench" / "checks_anomalies.md")
    args = parser.parse_args(argv)
    if args.checks < 1000 or args.anomalies < args.checks:
        parser.error("need at least 1000 checks and as many anomalies as checks")
    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and _ only (it is dropped and recreated)")
    return args


# -- seeding -----------------------------------------------------------------------------------
CHECK_TYPES = ("not_null", "unique", "between", "not_negative", "expected_values",
               "matches_pattern", "max_length", "not_future", "row_count_between")

CHECK_INSERT = """
INSERT INTO datastores_check (container_id, datastore_id, type, field_name, params, status,
                              origin, description, created_at, updated_at)
SELECT c.id, c.datastore_id,
       (%(types)s::text[])[1 + n %% 9],
       CASE WHEN n %% 9 = 8 THEN '' ELSE 'field_' || n / %(containers)s END,
       CASE n %% 9 WHEN 2 THEN '{"min": 0, "max": 100}'::jsonb
                   WHEN 4 THEN '{"values": ["a", "b", "c"]}'::jsonb
                   WHEN 6 THEN '{"length": 40}'::jsonb
                   WHEN 8 THEN '{"min": 1, "max": 1000000}'::jsonb
                   ELSE '{}'::jsonb END,
       CASE WHEN n %% 10 < 6 THEN 'active' WHEN n %% 10 < 9 THEN 'draft' ELSE 'archived' END,
       CASE WHEN n %% 10 < 7 AND n %% 9 <> 8 THEN 'inferred' ELSE 'authored' END,
       'bench check ' || n,
       now() - interval '400 days' + n * interval '1 second',
       now() - interval '400 days' + n * interval '1 second'
FROM generate_series(0, %(checks)s - 1) AS n
JOIN datastores_container c ON c.id = %(first_container)s + n %% %(containers)s
"""

EVALUATION_INSERT = """
INSERT INTO datastores_checkevaluation (check_rule_id, run_id, failed_count, error,
                                        anomaly_id, evaluated_at)
SELECT ch.id, 1000000 + k, CASE WHEN (ch.id + k) %% 3 = 0 THEN (ch.id %% 50) + 1 ELSE 0 END,
       '', NULL, now() - (%(per)s - k) * interval '1 day'
FROM datastores_check ch CROSS JOIN generate_series(1, %(per)s) AS k
WHERE ch.status = 'active'
ORDER BY k, ch.id
"""

# The anomaly of row n belongs to check (n mod checks): the newest ``checks`` rows hold each
# check once (80 %% open), older rows are all resolved, so the partial unique index holds.
ANOMALY_INSERT = """
INSERT INTO datastores_anomaly (container_id, datastore_id, check_rule_id, check_type, field_name,
                                run_id, last_run_id, status, failed_count, examples, description,
                                times_seen, created_at, last_seen_at, resolved_at)
SELECT ch.container_id, ch.datastore_id, ch.id, ch.type, ch.field_name,
       n / 50 + 1, n / 50 + 1,
       CASE WHEN n < %(old)s THEN 'resolved'
            WHEN n %% 10 < 6 THEN 'active' WHEN n %% 10 < 8 THEN 'acknowledged'
            ELSE 'resolved' END,
       1 + n %% 997,
       jsonb_build_array(jsonb_build_object('id', n, 'value', -n),
                         jsonb_build_object('id', n + 1, 'value', -n - 1)),
       'bench anomaly ' || n, 1 + n %% 4,
       now() - interval '365 days' + n * %(step)s * interval '1 second',
       now() - interval '365 days' + n * %(step)s * interval '1 second',
       CASE WHEN n < %(old)s THEN now() END
FROM generate_series(%(start)s, %(stop)s - 1) AS n
JOIN datastores_check ch ON ch.id = %(first_check)s + n %% %(checks)s
ORDER BY n
"""


def seed(args: argparse.Namespace) -> None:
    from django.db import connection, transaction

    from accounts.models import Level, Role, Team, User
    from datastores.models import Container, Datastore

    started = time.perf_counter()
    with transaction.atomic():
        User.objects.create(username="bench-admin", role=Role.ADMIN, is_staff=True)
        editor = User.objects.create(username="bench-editor")
        datastores = Datastore.objects.bulk_create(
            Datastore(name=f"warehouse-{i:02d}", source_url=f"postgresql://db{i}/warehouse")
            for i in range(DATASTORES)
        )
        containers = Container.objects.bulk_create(
            Container(datastore=d, name=f"table_{j:02d}", kind="table")
            for d in datastores for j in range(CONTAINERS_PER_DATASTORE)
        )
        team = Team.objects.create(name="Bench editors", level=Level.EDITOR)
        team.members.add(editor)
        team.datastores.add(*(datastores[i] for i in EDITOR_DATASTORES))
        with connection.cursor() as cursor:
            seed_rows(cursor, checks=args.checks, anomalies=args.anomalies,
                      container_ids=[c.pk for c in containers],
                      progress=lambda text: print(f"  {text}", flush=True))
    print(f"Seeded in {time.perf_counter() - started:.0f} s; VACUUM ANALYZE...", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def seed_rows(cursor, *, checks: int, anomalies: int, container_ids: list[int],
              progress=lambda text: None) -> None:
    """Checks, evaluations and anomalies over the given containers (consecutive ids)."""
    if sorted(container_ids) != list(range(min(container_ids), max(container_ids) + 1)):
        raise ValueError("the containers' ids must be consecutive")
    cursor.execute(CHECK_INSERT, {
        "types": list(CHECK_TYPES), "checks": checks,
        "first_container": min(container_ids), "containers": len(container_ids),
    })
    progress(f"{checks:,} checks")
    cursor.execute(EVALUATION_INSERT, {"per": EVALUATIONS_PER_CHECK})
    cursor.execute("SELECT min(id) FROM datastores_check")
    first_check = cursor.fetchone()[0]
    step = 365 * 24 * 3600 / anomalies
    batch = 200_000
    for start in range(0, anomalies, batch):
        cursor.execute(ANOMALY_INSERT, {
            "start": start, "stop": min(start + batch, anomalies), "old": anomalies - checks,
            "step": step, "first_check": first_check, "checks": checks,
        })
        progress(f"{min(start + batch, anomalies):>9,} anomalies")


def existing_anomalies() -> int:
    from django.db import OperationalError, ProgrammingError, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM datastores_anomaly")
            return cursor.fetchone()[0]
    except (OperationalError, ProgrammingError):
        return -1


# -- scenarios ---------------------------------------------------------------------------------
def scenarios() -> list[Scenario]:
    from datastores.models import Anomaly, Check, Container, Datastore

    quiet = Datastore.objects.get(name=f"warehouse-{EDITOR_DATASTORES[-1]:02d}")
    busy = Datastore.objects.get(name="warehouse-00")
    container = Container.objects.filter(datastore=quiet).order_by("id")[7]
    newest_anomaly = Anomaly.objects.order_by("-id").values_list("id", flat=True).first()
    newest_check = Check.objects.order_by("-id").values_list("id", flat=True).first()
    deep_anomaly = newest_anomaly - int(newest_anomaly * 0.9)
    deep_check = newest_check - int(newest_check * 0.9)
    old = dt.date.today() - dt.timedelta(weeks=11)
    old_day, old_day_3 = old.isoformat(), (old + dt.timedelta(days=2)).isoformat()
    api = {"HTTP_AUTHORIZATION": ""}  # filled per user in _api_headers
    out = []
    for user in ("bench-admin", "bench-editor"):
        ds = busy if user == "bench-admin" else quiet
        out += [
            Scenario("anomalies: first page", user, "/anomalies/"),
            Scenario("anomalies: status=active", user, "/anomalies/?status=active"),
            Scenario(f"anomalies: datastore={ds.name}", user, f"/anomalies/?datastore={ds.pk}"),
            Scenario("anomalies: container, status=active", user,
                     f"/anomalies/?datastore={quiet.pk}&container={container.pk}&status=active"),
            Scenario("anomalies: check_type=unique&status=acknowledged", user,
                     "/anomalies/?check_type=unique&status=acknowledged"),
            Scenario(f"anomalies: found {old_day}..+2 days", user,
                     f"/anomalies/?found_from={old_day}&found_to={old_day_3}"),
            Scenario(f"anomalies: deep page (before={deep_anomaly})", user,
                     f"/anomalies/?before={deep_anomaly}"),
            Scenario("anomalies: deep page, status=resolved", user,
                     f"/anomalies/?status=resolved&before={deep_anomaly}"),
            Scenario("checks: first page", user, "/checks/"),
            Scenario("checks: status=draft", user, "/checks/?status=draft"),
            Scenario("checks: drafts of one container", user,
                     f"/checks/?datastore={quiet.pk}&container={container.pk}&status=draft"),
            Scenario("checks: type=not_null&origin=inferred", user,
                     "/checks/?type=not_null&origin=inferred"),
            Scenario(f"checks: deep page (before={deep_check})", user,
                     f"/checks/?before={deep_check}"),
            Scenario("API: GET /anomalies?limit=50", user, "/api/v1/anomalies?limit=50",
                     api),
            Scenario("API: GET /anomalies?status=active&limit=50", user,
                     "/api/v1/anomalies?status=active&limit=50", api),
            Scenario("API: GET /checks?limit=50", user, "/api/v1/checks?limit=50", api),
        ]
    return out


def bind_tokens(cases: list[Scenario]) -> None:
    """API scenarios authenticate with a real token of their user."""
    from accounts.models import ApiToken, User

    keys: dict[str, str] = {}
    for case in cases:
        if "HTTP_AUTHORIZATION" in case.headers:
            if case.user not in keys:
                _, keys[case.user] = ApiToken.issue(user=User.objects.get(username=case.user),
                                                    name="bench")
            case.headers = {"Authorization": f"Bearer {keys[case.user]}"}


# -- report ------------------------------------------------------------------------------------
def report(results, args) -> str:
    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with "
        f"`.venv/bin/python bench/checks_anomalies.py {' '.join(args.argv)}` "
        f"({args.warmup} warm-up + {args.requests} timed requests per scenario, in "
        f"{args.passes} passes{'; database seeded by an earlier run' if args.reused else ''}).",
        "",
        f"Machine: {machine()}. Load average (1 min): {args.load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after. {args.sizes}",
        "",
        "| Scenario | User | p50 ms | p95 ms | min ms | SQL ms | Queries | Indexes used | "
        "Seq Scan |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        ours = [p for p in r.plans if _touches(p)]
        indexes = sorted({i for p in ours for i in p["indexes"]})
        seq = sorted({t for p in r.plans for t in p["seq_scans"] if t in TABLES})
        lines.append(
            f"| {r.scenario.name} | {r.scenario.user} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
            f"{r.min_ms:.1f} | {r.sql_ms:.1f} | {len(r.queries)} | {', '.join(indexes) or '-'} "
            f"| {'**' + ', '.join(seq) + '**' if seq else 'no'} |"
        )
    lines += ["", "Plans of the queries on anomalies, checks and evaluations "
                  "(`EXPLAIN (ANALYZE, BUFFERS)`):"]
    for r in results:
        for p in (p for p in r.plans if _touches(p)):
            lines += ["", f"{r.scenario.name} as {r.scenario.user} "
                          f"({p['execution_ms']:.2f} ms):", "", "```", *p["text"], "```"]
    return "\n".join(lines) + "\n"


def _touches(plan: dict) -> bool:
    return any(table in plan["sql"] for table in TABLES)


def sizes() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        parts = []
        for table in TABLES:
            cursor.execute(f"SELECT count(*), pg_size_pretty(pg_total_relation_size('{table}')) "
                           f"FROM {table}")
            count, size = cursor.fetchone()
            parts.append(f"{table}: {count:,} rows, {size} with indexes")
    return "; ".join(parts) + "."


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    var_dir = ROOT / "var" / "bench"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assay.settings",
        "DATABASE_URL": f"{args.server}/{args.database}",
        "DEBUG": "0",
        "ASSAY_VAR_DIR": str(var_dir),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "assay-bench-not-a-secret"),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    var_dir.joinpath("static").mkdir(parents=True, exist_ok=True)
    import django

    django.setup()
    args.reused = args.reuse and existing_anomalies() == args.anomalies
    if not args.reused:
        print(f"Recreating {args.database} and migrating...", flush=True)
        from django.db import connections

        connections.close_all()
        recreate_database(args.server, args.database)
        migrate(env)
        seed(args)
    args.sizes = sizes()
    args.load_before = os.getloadavg()[0]
    cases = scenarios()
    bind_tokens(cases)
    pooled: list[list[float]] = [[] for _ in cases]
    per_pass = max(1, args.requests // args.passes)
    for round_ in range(args.passes):
        print(f"Pass {round_ + 1} of {args.passes}...", flush=True)
        for scenario, timings in zip(cases, pooled, strict=True):
            timings += timed(scenario, requests=per_pass,
                             warmup=args.warmup if round_ == 0 else 2)
    results = []
    for scenario, timings in zip(cases, pooled, strict=True):
        result = measure(scenario, timings)
        results.append(result)
        print(f"{scenario.name:<52} {scenario.user:<13} p50 {result.p50_ms:7.2f} ms  "
              f"p95 {result.p95_ms:7.2f} ms  min {result.min_ms:6.2f} ms  "
              f"SQL {result.sql_ms:6.2f} ms  {len(result.queries)} queries", flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report(results, args))
    print(f"Report: {args.report}")
    bad = [(r, t) for r in results for p in r.plans for t in p["seq_scans"] if t in TABLES]
    for r, table in bad:
        print(f"Seq Scan on {table}: {r.scenario.name} as {r.scenario.user}", file=sys.stderr)
    slow = [r for r in results if r.p50_ms >= 50]
    for r in slow:
        print(f"p50 >= 50 ms: {r.scenario.name} as {r.scenario.user}", file=sys.stderr)
    return 1 if bad or slow else 0


if __name__ == "__main__":
    sys.exit(main())
