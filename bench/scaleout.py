"""Scale-out benchmark (BENCHMARKS.md, "Scale-out"): 1, 2 and 4 Celery Run worker processes
draining a backlog of small Runs on PostgreSQL + Redis.

    .venv/bin/python bench/scaleout.py         # or: make bench-scaleout

1. Recreates the PostgreSQL database ``assay_loadbench_scaleout`` on an existing server and
   starts a private Redis (``--redis-port``); tests/fault_stack.py's ``Deployment`` migrates
   and makes a small demo source (200 orders). ``--datastores`` datastores read that source
   (default fair-sharing limit of 4 Runs each, so the limit is never what holds workers back);
   a Sync of each makes their catalogues. Housekeeping and beat run as in production.
2. For each worker count in ``--order`` (alternating, e.g. 1,2,4,4,2,1): starts that many
   ``worker`` processes of the Procfile with concurrency 1, launches ``--runs`` one-table
   Profiles through the service layer (``runs.services.run_launch``, what the API and the web
   call), round-robin over datastores and tables, and waits until every one has ended.
3. Then ``--idle`` Runs one at a time (launch, wait for it to end, next) for the launch-to-claim
   latency of an idle deployment.

Per Run, from the database's own timestamps: *claim* = ``started_at`` (set in the claim's
UPDATE), *finish* = ``finished_at``; the operation's *work* is its one unit, the RunContainer's
``started_at`` to ``finished_at`` (reading the table's rows and profiling it, and saving the
profile in the unit's transaction). *Overhead* = (finish - claim) - work: everything else a Run
costs (the claim, planning, the watchdog threads, finishing, the dispatch of the next in line).
Runs/s = Runs / (last finish - first claim). Exits non-zero unless every Run ends Success,
executed exactly once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fault_stack import Deployment, ServerDatabase, wait_until  # noqa: E402

TABLES = ["regions", "categories", "suppliers", "stores", "employees"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="Runs per drain")
    parser.add_argument("--order", default="1,2,4,4,2,1",
                        help="worker counts, one drain each, in this order")
    parser.add_argument("--idle", type=int, default=20,
                        help="Runs launched one at a time after each drain")
    parser.add_argument("--datastores", type=int, default=4)
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="assay_loadbench_scaleout")
    parser.add_argument("--redis-port", type=int, default=6432)
    parser.add_argument("--db-reuse", default="",
                        help="CELERY_DB_REUSE_MAX values to compare, e.g. 1000,0 (0: a new "
                        "database connection per task); each worker count runs each, "
                        "alternating")
    parser.add_argument("--label", default="", help="a name for this set of figures")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="instead of the drains: execute N Runs in this process under "
                        "cProfile, counting each Run's queries (what the overhead is made of)")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench" / "scaleout.json")
    return parser.parse_args(argv)


def setup(stack: Deployment, count: int) -> list[int]:
    """Django in this process on the deployment's database; the datastores, catalogued."""
    os.environ.update(stack.env)
    import django

    django.setup()
    from datastores.models import Datastore

    demo = Datastore.objects.get(pk=stack.datastore_id)
    ids = [demo.pk] + [
        Datastore.objects.create(name=f"demo-{i}", source_url=demo.source_url).pk
        for i in range(1, count)
    ]
    stack.start("worker", key="worker-setup", env={"ASSAY_WORKER_NAME": "setup"})
    stack.wait_ready("worker-setup")
    runs = [launch(datastore, "sync", {}) for datastore in ids]
    for run in runs:
        stack.wait_for_status(run, {"success"}, timeout=120)
    stack.stop("worker-setup")
    return ids


def launch(datastore_id: int, operation: str, config: dict) -> int:
    from accounts.models import User
    from datastores.models import Datastore
    from runs.services import run_launch

    user = User.objects.get(username="ops")
    return run_launch(user=user, datastore=Datastore.objects.get(pk=datastore_id),
                      operation=operation, config=config, via="api").pk


def start_workers(stack: Deployment, count: int, env: dict[str, str]) -> list[str]:
    keys = [f"worker-{count}-{i}" for i in range(count)]
    for i, key in enumerate(keys):
        stack.start("worker", key=key, env={"ASSAY_WORKER_NAME": f"runs{i}",
                                            "ASSAY_WORKER_CONCURRENCY": "1", **env})
    stack.wait_ready(*keys)
    return keys


def ended(ids: list[int]) -> bool:
    from runs.models import Run, RunStatus

    return not Run.objects.filter(pk__in=ids, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
                                  ).exists()


def drain(stack: Deployment, workers: int, datastores: list[int], runs: int,
          env: dict[str, str]) -> dict:
    from accounts.models import User
    from datastores.models import Datastore
    from runs.services import run_launch

    keys = start_workers(stack, workers, env)
    sessions_before = sessions(stack)
    user = User.objects.get(username="ops")
    stores = list(Datastore.objects.filter(pk__in=datastores).order_by("pk"))
    try:
        launched = [
            run_launch(user=user, datastore=stores[i % len(stores)], operation="profile",
                       config={"containers": [TABLES[(i // len(stores)) % len(TABLES)]]},
                       via="api").pk
            for i in range(runs)
        ]
        wait_until(lambda: ended(launched), timeout=3600, interval=0.5, what="drain")
        result = measure(stack, launched)
        # Database sessions opened during the drain, per Run (workers' threads, web-less).
        result["sessions_per_run"] = round((sessions(stack) - sessions_before) / runs, 2)
        idle = []
        for i in range(ARGS.idle):
            run = launch(stores[i % len(stores)].pk, "profile", {"containers": [TABLES[0]]})
            wait_until(lambda r=run: ended([r]), timeout=120, interval=0.02, what="idle run")
            idle.append(run)
        result["idle"] = measure(stack, idle)
    finally:
        for key in keys:
            stack.stop(key)
    result["workers"] = workers
    return result


def run_drain(stack: Deployment, workers: int, datastores: list[int], runs: int,
              env: dict[str, str]) -> dict:
    load = os.getloadavg()[0]
    started = time.monotonic()
    result = drain(stack, workers, datastores, runs, env)
    result["load_before"] = round(load, 1)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def sessions(stack: Deployment) -> int:
    """Sessions PostgreSQL has counted on the database (ended ones; PostgreSQL 14+)."""
    return stack.cluster.query("SELECT sessions FROM pg_stat_database WHERE datname = %s",
                               (stack.cluster.name,))[0][0]


def measure(stack: Deployment, ids: list[int]) -> dict:
    """Figures of these Runs from the database's own timestamps (see the module's docstring)."""
    rows = stack.cluster.query(
        """
        SELECT r.status, r.created_at, r.started_at, r.finished_at,
               (SELECT sum(c.finished_at - c.started_at) FROM runs_runcontainer c
                 WHERE c.run_id = r.id),
               (SELECT count(*) FROM runs_runlogentry l
                 WHERE l.run_id = r.id AND l.message LIKE %s)
          FROM runs_run r WHERE r.id = ANY(%s)
        """, ("% started on datastore %", ids))
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row[0]] = statuses.get(row[0], 0) + 1
    executions = sorted({row[5] for row in rows})
    ms = dt.timedelta(milliseconds=1)
    work = [row[4] / ms for row in rows if row[4] is not None]
    total = [(row[3] - row[2]) / ms for row in rows]
    overhead = [(row[3] - row[2] - row[4]) / ms for row in rows if row[4] is not None]
    wait = [(row[2] - row[1]) / ms for row in rows]
    span = (max(row[3] for row in rows) - min(row[2] for row in rows)).total_seconds()
    return {
        "runs": len(rows),
        "statuses": statuses,
        "executions": executions,
        "runs_per_s": round(len(rows) / span, 2) if span else None,
        "work_ms": _summary(work),
        "claim_to_finish_ms": _summary(total),
        "overhead_ms": _summary(overhead),
        "launch_to_claim_ms": _summary(wait),
    }


def _summary(values: list[float]) -> dict:
    if len(values) < 2:
        return {}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"p50": round(statistics.median(values), 1), "p95": round(cuts[18], 1),
            "mean": round(statistics.fmean(values), 1)}


def main(argv=None) -> int:
    global ARGS
    ARGS = args = parse_args(argv)
    order = [int(n) for n in args.order.split(",")]
    root = Path(tempfile.mkdtemp(prefix="assay-scaleout-"))
    os.chmod(root, 0o755)
    stack = Deployment(root, web_port=0, redis_port=args.redis_port,
                       database=ServerDatabase(args.server, args.database), timings={},
                       extra_env={"LOG_LEVEL": "WARNING", "DEBUG": "0"})
    results = []
    try:
        stack.prepare(demo_rows=200)
        datastores = setup(stack, args.datastores)
        if args.profile:
            return profile(datastores, args.profile)
        stack.start("housekeeping")
        stack.start("beat")
        stack.wait_ready("housekeeping")
        variants = args.db_reuse.split(",") if args.db_reuse else [""]
        for index, workers in enumerate(order):
            # Alternate which variant goes first, so neither always follows the other.
            for reuse in variants if index % 2 == 0 else variants[::-1]:
                env = {"CELERY_DB_REUSE_MAX": reuse} if reuse else {}
                results.append(run_drain(stack, workers, datastores, args.runs, env))
                results[-1]["db_reuse_max"] = reuse
                print(json.dumps(results[-1]), flush=True)
    except Exception:
        for name in stack.procs:
            print(f"--- {name}.log (end) ---\n{stack.log(name)[-2000:]}", file=sys.stderr)
        raise
    finally:
        from django.db import connections

        connections.close_all()
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"label": args.label, "order": order,
                                     "results": results}, indent=2))
    print_table(results)
    bad = [r for r in results for part in (r, r["idle"])
           if set(part["statuses"]) != {"success"} or part["executions"] != [1]]
    if bad:
        print("FAILED: a Run did not end Success exactly once", file=sys.stderr)
        return 1
    return 0


def profile(datastores: list[int], runs: int) -> int:
    """Execute ``runs`` Profiles here, one after the other (no worker runs: their messages are
    left in the broker), timing each phase of ``execute_run`` and counting the queries of each
    Run; then once more under cProfile (main thread only)."""
    import cProfile
    import functools
    import pstats

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from runs import execution, fairness
    from runs.operations.context import RunContext

    phases: dict[str, list[float]] = {}

    def timed(owner, name, label):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                phases.setdefault(label, []).append((time.perf_counter() - started) * 1000)

        setattr(owner, name, wrapper)

    for owner, name, label in [
        (execution, "bound_idle_transactions", "set idle timeout"),
        (execution, "claim", "claim (fair-share check + UPDATE)"),
        (execution, "_execute", "operation, logs, units, finalise"),
        (execution, "_process_unit", "  of which the unit (work)"),
        (execution.Watchdog, "start", "watchdog start"),
        (execution.Watchdog, "stop", "watchdog stop"),
        (RunContext, "close", "close source connections"),
        (fairness, "dispatch_line", "dispatch the next in line"),
        (execution, "execute_run", "execute_run, total"),
    ]:
        timed(owner, name, label)

    ids = [launch(datastores[i % len(datastores)], "profile",
                  {"containers": [TABLES[i % len(TABLES)]]}) for i in range(runs)]
    execution.execute_run(ids[0])  # warm-up: imports, the source's first connection
    phases.clear()
    queries: list[int] = []
    for run_id in ids[1:-10]:
        with CaptureQueriesContext(connection) as captured:
            outcome = execution.execute_run(run_id)
        assert outcome == "success", outcome
        queries.append(len(captured.captured_queries))
    print(f"Phases of execute_run over {len(queries)} Runs (ms), queries per Run on the main "
          f"connection: {statistics.median(queries)}")
    for label, values in phases.items():
        print(f"  {label:<40} p50 {statistics.median(values):7.1f}   "
              f"mean {statistics.fmean(values):7.1f}")
    profiler = cProfile.Profile()
    for run_id in ids[-10:]:
        profiler.runcall(execution.execute_run, run_id)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


def print_table(results: list[dict]) -> None:
    print("| Workers | DB reuse | Runs/s | sessions/Run | work p50 ms | overhead p50 / p95 ms | "
          "launch-to-claim idle p50 / p95 ms | load before |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['workers']} | {r['db_reuse_max'] or 'default'} | {r['runs_per_s']} | "
              f"{r['sessions_per_run']} | {r['work_ms']['p50']} | "
              f"{r['overhead_ms']['p50']} / {r['overhead_ms']['p95']} | "
              f"{r['idle']['launch_to_claim_ms'].get('p50')} / "
              f"{r['idle']['launch_to_claim_ms'].get('p95')} | {r['load_before']} |")


if __name__ == "__main__":
    sys.exit(main())
