"""Scan and Profile benchmark: Assay's push-down evaluation against a hand-written single pass.

    .venv/bin/python bench/scan_profile.py --sizes 100000,1000000,10000000 \\
        --backends sqlite,postgresql,mariadb,duckdb

For each backend and size it generates ``bench_events`` (``generate_bench_table``), catalogues
it with a Sync, authors the ten checks the table is made for, and measures:

* ``count``: a plain ``SELECT count(*)``;
* ``hand``: the hand-written SQL, two statements one after the other: a single pass computing
  the failing counts (``SUM(CASE WHEN ...)``), then ``count(DISTINCT col)`` for unique;
* ``eval``: Assay's ``evaluate_sql`` over the same table (what a Scan runs per container), on
  the datastore's ``connection_limit`` connections as a Scan Run has them;
* a whole Scan Run and a whole Profile Run, each in a fresh Python process, launched with
  ``run_launch`` and executed in that process by ``execute_run`` (the Celery task's body, minus
  the broker). The Run time is claim to finish (``finished_at - started_at``); the time spent
  in ``evaluate_sql``/``fetch_examples`` (Scan) or ``profile_table`` (Profile) is timed inside
  the Run, and the overhead is the rest (the garbage collector's pauses within it are shown
  in brackets). Each process first runs a one-row Run (imports, the
  source dialect's first connection: what a long-lived worker pays once), reported apart; the
  peak RSS is the process's ``ru_maxrss``.

SQL timings are ``--repeat`` alternations of the hand-written pass and ``evaluate_sql`` after
one warm-up ``count``: the report gives the median of the per-alternation ratios (each
``evaluate_sql`` over the hand-written pass taken just before it) with their range, the medians
and ranges of both sides, and the best-of ratio; for SQLite and DuckDB, which run in this
process, also the median ratio of this process's CPU time (all its threads). ``fixed`` is
``evaluate_sql`` over no rows (``WHERE false``): its cost per call that does not grow with the
table (building and compiling the statement, binding, fetching). Every count is checked
against ``bench_defect_counts``. Both sides use one connection opened as a Scan opens it
(``datastores.sources``: vetted URL, DuckDB read-only with its settings locked). Assay's own
database is a throw-away SQLite file. The PostgreSQL and MariaDB sources are throw-away
databases at 127.0.0.1:5432 (user postgres) and 127.0.0.1:3306 (user root), named
``--postgres-prefix``/``--mariadb-prefix`` plus a random suffix, dropped after; SQLite and
DuckDB sources are files in a throw-away folder.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLE = "bench_events"
POSTGRES_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
MARIADB_SERVER_URL = "mysql+pymysql://root@127.0.0.1:3306"
# Engines that run inside this process: their CPU time is this process's, a measure that load
# from other processes disturbs far less than wall time.
IN_PROCESS = ("sqlite", "duckdb")


def django_setup(var_dir: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "assay.settings"
    os.environ["ASSAY_VAR_DIR"] = str(var_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{var_dir / 'assay.sqlite3'}"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django

    django.setup()


# -- the ten checks ----------------------------------------------------------------------------
def bench_checks(rows: int) -> list[tuple[str, str | None, dict]]:
    from datastores.demo_source import (
        BENCH_CODE_PATTERN,
        BENCH_NOTE_MAX_LENGTH,
        BENCH_SCORE_RANGE,
        BENCH_STATUSES,
    )

    return [
        ("not_null", "user_id", {}),
        ("not_null", "session_id", {}),
        ("not_negative", "amount", {}),
        ("between", "score", {"min": BENCH_SCORE_RANGE[0], "max": BENCH_SCORE_RANGE[1]}),
        ("expected_values", "status", {"values": list(BENCH_STATUSES)}),
        ("matches_pattern", "code", {"pattern": BENCH_CODE_PATTERN}),
        ("not_future", "occurred_at", {}),
        ("unique", "event_key", {}),
        ("max_length", "note", {"length": BENCH_NOTE_MAX_LENGTH}),
        ("row_count_between", None, {"min": rows, "max": rows}),
    ]


def expected_counts(rows: int) -> dict[str, int]:
    from datastores.demo_source import bench_defect_counts

    defects = bench_defect_counts(rows, TABLE)
    by_field = {key.split(".")[1]: count for key, count in defects.items()}
    counts = {f"{type_}:{field}": by_field.get(field, 0) for type_, field, _ in bench_checks(rows)}
    counts["row_count_between:None"] = 0
    return counts


def hand_written_sql(dialect: str) -> str:
    from datastores.demo_source import BENCH_NOTE_MAX_LENGTH, BENCH_SCORE_RANGE, BENCH_STATUSES

    statuses = ", ".join(f"'{s}'" for s in BENCH_STATUSES)
    no_match = {
        "postgresql": "code !~ :pattern",
        "duckdb": "NOT regexp_matches(code, :pattern)",
    }.get(dialect, "NOT (code REGEXP :pattern)")  # SQLite (Python's re), MariaDB (PCRE2)
    length = "char_length" if dialect == "mysql" else "length"  # MySQL's length() is bytes
    low, high = BENCH_SCORE_RANGE
    return f"""
SELECT count(*) AS records,
       SUM(CASE WHEN user_id IS NULL THEN 1 ELSE 0 END) AS user_id_null,
       SUM(CASE WHEN session_id IS NULL THEN 1 ELSE 0 END) AS session_id_null,
       SUM(CASE WHEN amount < 0 THEN 1 ELSE 0 END) AS amount_negative,
       SUM(CASE WHEN score < {low} OR score > {high} THEN 1 ELSE 0 END) AS score_range,
       SUM(CASE WHEN status NOT IN ({statuses}) THEN 1 ELSE 0 END) AS status_unexpected,
       SUM(CASE WHEN {no_match} THEN 1 ELSE 0 END) AS code_pattern,
       SUM(CASE WHEN occurred_at > :now THEN 1 ELSE 0 END) AS occurred_future,
       count(event_key) AS event_keys,
       SUM(CASE WHEN {length}(note) > {BENCH_NOTE_MAX_LENGTH} THEN 1 ELSE 0 END) AS note_long
FROM {TABLE}"""


HAND_DISTINCT_SQL = f"SELECT count(DISTINCT event_key) FROM {TABLE}"


def hand_written_pass(conn, dialect: str, params: dict) -> list[int]:
    """The hand-written two statements, one after the other on one connection: the failing
    counts in the order of HAND_ORDER."""
    import sqlalchemy as sa

    row = list(conn.execute(sa.text(hand_written_sql(dialect)), params).one())
    distinct = conn.execute(sa.text(HAND_DISTINCT_SQL)).scalar_one()
    event_keys = row.pop(8)
    row.insert(8, event_keys - distinct)
    return [int(value) for value in row[1:]]


HAND_ORDER = ["not_null:user_id", "not_null:session_id", "not_negative:amount",
              "between:score", "expected_values:status", "matches_pattern:code",
              "not_future:occurred_at", "unique:event_key", "max_length:note"]  # fmt: skip


def timed_call(work):
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def best_of(repeat: int, work):
    return min((timed_call(work) for _ in range(repeat)), key=lambda run: run[0])


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- one Run in a fresh process ----------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    """Launch and execute one Run here; print its figures as JSON."""
    django_setup(Path(args.var_dir))
    from accounts.models import User
    from datastores.models import Datastore
    from runs import execution
    from runs.models import Run
    from runs.operations import profile as profile_module
    from runs.operations import scan as scan_module
    from runs.services import run_launch

    timed: dict[str, float] = {}

    def timing(module, name: str):
        original = getattr(module, name)

        def wrapper(*a, **kw):
            started = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                timed[name] = timed.get(name, 0.0) + time.perf_counter() - started

        setattr(module, name, wrapper)

    for name in ("evaluate_sql", "fetch_examples"):
        timing(scan_module, name)
    timing(profile_module, "profile_table")

    # Garbage-collection pauses inside the Run: a young process (as here) runs full
    # collections that a long-lived worker runs rarely; reported apart from the overhead.
    collecting: list[float] = []

    def gc_pause(phase: str, info: dict) -> None:
        if phase == "start":
            collecting.append(time.perf_counter())
        elif collecting:
            pause = time.perf_counter() - collecting.pop()
            timed["gc"] = timed.get("gc", 0.0) + pause

    gc.callbacks.append(gc_pause)

    user = User.objects.get(username="bench")
    datastore = Datastore.objects.get(pk=args.datastore)
    config = {"containers": [TABLE]}
    if args.child == "profile":
        config["inference_level"] = 2

    def launch(config: dict) -> Run:
        run = run_launch(user=user, datastore=datastore, operation=args.child, config=config)
        execution.execute_run(run.pk)
        return Run.objects.get(pk=run.pk)

    # A worker process serves many Runs; the first Run of a new process also pays imports and
    # the source dialect's first connection. A one-row Run pays that first, so the measured
    # Run shows what every Run costs.
    first = launch({**config, "record_limit": 1})
    timed.clear()
    run = launch(config)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "status": run.status,
        "error": run.error,
        "run_s": (run.finished_at - run.started_at).total_seconds(),
        "first_run_s": (first.finished_at - first.started_at).total_seconds(),
        "timed": timed,
        "metrics": run.metrics,
        "rss_mib": rss_kib / 1024,
    }))  # fmt: skip


def run_in_child(var_dir: Path, datastore_id: int, operation: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", operation, "--var-dir", str(var_dir),
         "--datastore", str(datastore_id)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if output.returncode:
        raise RuntimeError(f"{operation} Run process failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


# -- the parent --------------------------------------------------------------------------------
class Source:
    """A throw-away source database for one backend."""

    def __init__(self, backend: str, folder: Path, prefixes: dict[str, str]):
        self.backend = backend
        self.folder = folder
        self.database = ""
        if backend in ("postgresql", "mariadb"):
            self.database = f"{prefixes[backend]}{secrets.token_hex(4)}"

    def __enter__(self) -> str:
        if self.backend in ("sqlite", "duckdb"):
            sources = self.folder / "var" / "sources"  # a folder datastore files may live in
            sources.mkdir(parents=True, exist_ok=True)
            path = sources / f"bench_source.{self.backend}"
            if self.backend == "duckdb":
                import duckdb

                duckdb.connect(str(path)).close()  # Assay opens existing files only
            return f"{self.backend}:///{path}"
        if self.backend == "mariadb":
            self._mariadb(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
            return f"{MARIADB_SERVER_URL}/{self.database}?charset=utf8mb4"
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.database}"

    def __exit__(self, *exc_info) -> None:
        if self.backend == "mariadb":
            self._mariadb(f"DROP DATABASE IF EXISTS `{self.database}`")
        elif self.backend == "postgresql":
            import psycopg

            with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    @staticmethod
    def _mariadb(statement: str) -> None:
        import sqlalchemy as sa

        admin = sa.create_engine(f"{MARIADB_SERVER_URL}/")
        with admin.connect() as conn:
            conn.exec_driver_sql(statement)
        admin.dispose()


def measure(backend: str, rows: int, url: str, var_dir: Path, repeat: int, runs: bool) -> dict:
    import sqlalchemy as sa

    from accounts.models import User
    from datastores import sources
    from datastores.containers import container_selectable
    from datastores.demo_source import BENCH_CODE_PATTERN, generate_bench_table
    from datastores.models import Check, Container, Datastore
    from datastores.quality import CheckSpec, evaluate_sql
    from runs import execution
    from runs.services import run_launch

    started = time.perf_counter()
    generate_bench_table(url, rows=rows, table=TABLE)
    generated_s = time.perf_counter() - started
    engine = sources.create_engine(url)
    if backend == "postgresql":  # fresh statistics and visibility map, as a live table has
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"VACUUM ANALYZE {TABLE}"))

    user = User.objects.get(username="bench")
    datastore = Datastore.objects.create(
        name=f"bench-{backend}-{rows}-{secrets.token_hex(2)}", source_url=url, created_by=user
    )
    sync = run_launch(user=user, datastore=datastore, operation="sync", config={})
    assert execution.execute_run(sync.pk) == "success"
    container = Container.objects.get(datastore=datastore, name=TABLE)
    checks = bench_checks(rows)
    for type_, field, params in checks:
        Check.objects.create(container=container, type=type_, field_name=field or "",
                             params=params)  # fmt: skip
    expected = expected_counts(rows)
    now = datetime.now(UTC)

    figures: dict = {"backend": backend, "rows": rows, "generate_s": generated_s,
                     "load_before": os.getloadavg()[0]}  # fmt: skip
    with engine.connect() as conn:
        conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()  # warm-up
        figures["count_s"], count = best_of(
            repeat, lambda: conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()
        )
        assert count == rows, count

        dialect = conn.dialect.name
        hand_params = {"pattern": BENCH_CODE_PATTERN,
                       "now": now.strftime("%Y-%m-%d %H:%M:%S.%f") if dialect == "sqlite"
                       else now.replace(tzinfo=None)}  # fmt: skip
        table = container_selectable(container, conn)
        specs = [CheckSpec(f"{t}:{f}", t, f, p) for t, f, p in checks]
        # What a Scan gets: the datastore's connection limit (extra connections opened once
        # per Run and reused, as Scan does).
        extra = [engine.connect() for _ in range(datastore.connection_limit - 1)]

        def evaluate():
            for other in extra:
                other.rollback()
            return evaluate_sql(conn, table, specs, now=now,
                                more_connections=extra.__getitem__,
                                max_connections=datastore.connection_limit)  # fmt: skip

        # Alternated, so a burst of load on a shared machine hits both sides alike.
        hand_runs, eval_runs, hand_cpu, eval_cpu = [], [], [], []
        for _ in range(repeat):
            cpu = time.process_time()
            hand_runs.append(timed_call(lambda: hand_written_pass(conn, dialect, hand_params)))
            hand_cpu.append(time.process_time() - cpu)
            conn.rollback()
            cpu = time.process_time()
            eval_runs.append(timed_call(evaluate))
            eval_cpu.append(time.process_time() - cpu)
            conn.rollback()
        figures["hand_s"], hand = min(hand_runs, key=lambda run: run[0])
        figures["eval_s"], evaluation = min(eval_runs, key=lambda run: run[0])
        figures["hand_runs_s"] = [run[0] for run in hand_runs]
        figures["eval_runs_s"] = [run[0] for run in eval_runs]
        figures["ratios"] = [e / h for e, h in
                             zip(figures["eval_runs_s"], figures["hand_runs_s"], strict=True)]
        if backend in IN_PROCESS:
            figures["cpu_ratios"] = [e / h for e, h in zip(eval_cpu, hand_cpu, strict=True)]

        def evaluate_no_rows():
            result = evaluate_sql(conn, table, specs, now=now, where=sa.false())
            conn.rollback()
            return result

        fixed = [timed_call(evaluate_no_rows) for _ in range(max(repeat, 5))]
        assert all(run[1].records_scanned == 0 for run in fixed)
        figures["fixed_s"] = median([run[0] for run in fixed])
        assert dict(zip(HAND_ORDER, hand, strict=True)) == {k: expected[k] for k in HAND_ORDER}
        found = {key: result.failed_count for key, result in evaluation.results.items()}
        assert found == expected, (found, expected)
        for other in extra:
            other.close()
    engine.dispose()
    if not runs:
        return figures

    scan = run_in_child(var_dir, datastore.pk, "scan")
    assert scan["status"] == "success", scan
    assert scan["metrics"]["records_scanned"] == rows
    scan_work = scan["timed"].get("evaluate_sql", 0) + scan["timed"].get("fetch_examples", 0)
    figures["scan"] = {**scan, "overhead_s": scan["run_s"] - scan_work}
    profile = run_in_child(var_dir, datastore.pk, "profile")
    assert profile["status"] == "success", profile
    assert profile["metrics"]["records_profiled"] == rows
    figures["profile"] = {
        **profile, "overhead_s": profile["run_s"] - profile["timed"].get("profile_table", 0)
    }  # fmt: skip
    return figures


def load() -> str:
    return "load average {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min)".format(*os.getloadavg())


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return (
        f"{os.cpu_count()} CPUs (nproc), {mem_kib / 1024 / 1024:.1f} GiB RAM, {cpu}; "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def report(results: list[dict], command: str, total_s: float) -> str:
    lines = [
        f"Command: `{command}` ({total_s / 60:.1f} min in total).",
        "",
        f"Machine: {machine()}. At the end: {load()}.",
        "",
        "Evaluation: the same table, the same ten checks, the hand-written pass and "
        "evaluate_sql alternating; medians (range) of the repeats, the median of the "
        "per-alternation ratios (range), the ratio of the best runs, and evaluate_sql's fixed "
        "cost (over no rows).",
        "",
        "| backend | rows | count(*) | hand-written pass | evaluate_sql | evaluate / hand, "
        "median of pairs | best / best | CPU time, median of pairs | fixed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['rows']:,} | {r['count_s']:.3f} s | "
            f"{_spread(r['hand_runs_s'], 's')} | {_spread(r['eval_runs_s'], 's')} | "
            f"**{_spread(r['ratios'], 'x')}** | {r['eval_s'] / r['hand_s']:.2f}x | "
            f"{_spread(r['cpu_ratios'], 'x') if 'cpu_ratios' in r else 'n/a (server)'} | "
            f"{r['fixed_s'] * 1000:.1f} ms |"
        )
    results = [r for r in results if "scan" in r]
    if not results:
        return "\n".join(lines)
    lines += [
        "",
        "Whole Runs, claim to finish (one measured Run per process, after a one-row Run):",
        "",
        "| backend | rows | Scan Run | evaluate_sql | examples | Scan overhead (GC) | "
        "Profile Run | profile_table | Profile overhead (GC) | "
        "first Run of a process (Scan / Profile) | peak RSS (Scan / Profile) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        scan, profile = r["scan"], r["profile"]
        lines.append(
            f"| {r['backend']} | {r['rows']:,} | {scan['run_s']:.3f} s | "
            f"{scan['timed'].get('evaluate_sql', 0):.3f} s | "
            f"{scan['timed'].get('fetch_examples', 0):.3f} s | "
            f"{_overhead(scan)} | {profile['run_s']:.3f} s | "
            f"{profile['timed'].get('profile_table', 0):.3f} s | {_overhead(profile)} | "
            f"{scan['first_run_s'] * 1000:.0f} / {profile['first_run_s'] * 1000:.0f} ms | "
            f"{scan['rss_mib']:.0f} / {profile['rss_mib']:.0f} MiB |"
        )
    return "\n".join(lines)


def _spread(values: list[float], unit: str) -> str:
    low, high = min(values), max(values)
    digits = 2 if unit == "x" else 3
    return f"{median(values):.{digits}f}{unit} ({low:.{digits}f}–{high:.{digits}f})"


def _overhead(run: dict) -> str:
    return f"{run['overhead_s'] * 1000:.0f} ms ({run['timed'].get('gc', 0) * 1000:.0f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-runs", action="store_true",
                        help="measure the SQL only, not whole Scan and Profile Runs")
    parser.add_argument("--postgres-prefix", default="assay_bench_",
                        help="name prefix of the throw-away PostgreSQL source database")
    parser.add_argument("--mariadb-prefix", default="assay_bench_",
                        help="name prefix of the throw-away MariaDB source database")
    parser.add_argument("--child", choices=["scan", "profile"], help=argparse.SUPPRESS)
    parser.add_argument("--var-dir", help=argparse.SUPPRESS)
    parser.add_argument("--datastore", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sizes = [int(size) for size in args.sizes.split(",")]
    backends = args.backends.split(",")
    command = " ".join(["bench/scan_profile.py", *sys.argv[1:]])
    began = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as folder:
        var_dir = Path(folder) / "var"
        var_dir.mkdir()
        django_setup(var_dir)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from accounts.models import Role, User

        User.objects.create(username="bench", role=Role.ADMIN)
        for backend in backends:
            prefixes = {"postgresql": args.postgres_prefix, "mariadb": args.mariadb_prefix}
            with Source(backend, Path(folder), prefixes) as url:
                for rows in sizes:
                    figures = measure(backend, rows, url, var_dir, args.repeat,
                                      not args.skip_runs)
                    results.append(figures)
                    print(json.dumps(figures), file=sys.stderr, flush=True)
    print(report(results, command, time.perf_counter() - began))


if __name__ == "__main__":
    main()
