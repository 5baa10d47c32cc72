"""The Activity page filtered by who launched its Runs (``?by=``, ``?schedule=``) at 10^6 or
10^7 Runs: with and without the indexes run_by_user_created / run_by_schedule_created,
alternating request by request in one run (a shared machine's load lands on both alike).

    .venv/bin/python bench/actor_indexes.py --rounds 30     # on bench/activity.py's database

"Without" drops both indexes inside a transaction that is rolled back after the request (the
pages' queries run on that same connection), so both sides read the same table and cache.
Every scenario runs warm (heatmap cached) and cold (cache emptied before each request).
Prints p50/p95 per side and their ratio, and the plan of the heatmap's count with the indexes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INDEXES = ("run_by_user_created", "run_by_schedule_created")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/assay_bench")
    parser.add_argument("--rounds", type=int, default=30, help="timed requests per side")
    args = parser.parse_args(argv)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "assay.settings", "DATABASE_URL": args.database,
        "DEBUG": "0", "ASSAY_VAR_DIR": str(ROOT / "var" / "bench"), "LOG_LEVEL": "WARNING",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "assay-bench-not-a-secret"),
    })
    import django

    django.setup()
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from bench.activity import _getter, explain, scenarios

    cases = [s for s in scenarios() if "by=" in s.name or "schedule=" in s.name]
    load = os.getloadavg()[0]
    print(f"load average (1 min) before: {load:.1f}")
    for case in cases:
        get = _getter(case)
        sides = {"without": [], "with": []}
        for round_ in range(args.rounds + 3):
            for side in ("without", "with") if round_ % 2 else ("with", "without"):
                with transaction.atomic():
                    if side == "without":
                        with connection.cursor() as cursor:
                            for name in INDEXES:
                                cursor.execute(f'DROP INDEX "{name}"')
                    started = time.perf_counter()
                    get()
                    elapsed = (time.perf_counter() - started) * 1000
                    transaction.set_rollback(True)
                if round_ >= 3:  # warm-up
                    sides[side].append(elapsed)
        p50 = {k: statistics.median(v) for k, v in sides.items()}
        p95 = {k: statistics.quantiles(v, n=20)[-1] for k, v in sides.items()}
        print(f"| {case.name} | {case.user} | {p50['without']:.1f} | {p50['with']:.1f} | "
              f"{p50['without'] / p50['with']:.1f}x | {p95['without']:.1f} | {p95['with']:.1f} |",
              flush=True)
        if case.cold:
            with CaptureQueriesContext(connection) as captured:
                get()
            for query in captured.captured_queries:
                if "COUNT" in query["sql"] and "runs_run" in query["sql"]:
                    plan = explain(query["sql"])
                    if plan["execution_ms"] > 1:
                        print(f"    heatmap count {plan['execution_ms']:.1f} ms via "
                              f"{', '.join(plan['indexes'])}; seq scans: {plan['seq_scans']}")
    print(f"load average (1 min) after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
