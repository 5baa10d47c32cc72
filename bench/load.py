"""Load benchmark (BENCHMARKS.md, "Under load"): a production deployment with 10^6 stored Runs,
Runs executing, and locust users watching Runs and browsing Activity over loopback.

    .venv/bin/python bench/load.py            # or: make bench-load

1. Recreates the PostgreSQL database ``assay_loadbench`` on an existing server, migrates it,
   makes a small demo source with its datastore (tests/fault_stack.py's ``Deployment``), and
   seeds ``--runs`` Runs server-side (bench/seed.py, as bench/activity.py does).
2. Starts the Procfile's ``web`` (gunicorn, assay/gunicorn_conf.py) and ``worker`` (2 pool
   processes) with ``ASSAY_MODE=production``, a private Redis broker on ``--redis-port``.
   Housekeeping and beat are not started: their reaper would end the seeded "running" Runs
   (nobody heartbeats them) and resend the seeded queued Runs to datastores that do not exist.
3. While locust runs headless for ``--time`` (``--watchers`` users polling Run pages every 2 s,
   ``--browsers`` users browsing Activity; bench/locustfile.py), a Sync or a one-table Profile
   of the demo datastore is launched through the API every ``--launch-every`` seconds.
4. Exits non-zero on any failed request, or if any Run launched during the test did not end
   Success. Writes the per-endpoint table to ``--report``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fault_stack import Deployment, ServerDatabase, wait_until  # noqa: E402

PROFILE_TABLES = ["regions", "categories", "suppliers", "stores"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="Runs to seed")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL (without database)")
    parser.add_argument("--database", default="assay_loadbench", help="database to recreate")
    parser.add_argument("--redis-port", type=int, default=6432)
    parser.add_argument("--web-port", type=int, default=18600)
    parser.add_argument("--watchers", type=int, default=50, help="users polling Run pages")
    parser.add_argument("--browsers", type=int, default=5, help="users browsing Activity")
    parser.add_argument("--time", default="120s", help="locust --run-time")
    parser.add_argument("--launch-every", type=float, default=2.0,
                        help="seconds between two Runs launched during the test")
    parser.add_argument("--report", type=Path, default=ROOT / "var" / "bench" / "load.md")
    args = parser.parse_args(argv)
    if args.runs < 10_000:
        parser.error("--runs must be at least 10000")
    return args


def deployment(args: argparse.Namespace, root: Path) -> Deployment:
    from cryptography.fernet import Fernet

    return Deployment(
        root, web_port=args.web_port, redis_port=args.redis_port,
        database=ServerDatabase(args.server, args.database),
        timings={},  # production defaults, not the fault suite's short ones
        extra_env={
            "ASSAY_MODE": "production",
            "SECRET_KEY": "assay-loadbench-not-a-secret",
            "CREDENTIAL_KEYS": Fernet.generate_key().decode(),
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
        },
    )


def seed(stack: Deployment, runs: int) -> None:
    """bench/activity.py's population and Runs, in this process, on the deployment's database."""
    os.environ.update(stack.env)
    import django

    django.setup()
    from bench.activity import seed as seed_activity

    seed_activity(runs)
    from django.db import connections

    connections.close_all()


def locust_config(stack: Deployment, args: argparse.Namespace) -> dict:
    """Sessions and tokens of the seeded users, and the ids the locust users pick from."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.models import ApiToken, User
    from bench.activity import EDITOR_DATASTORES
    from datastores.models import Datastore
    from runs.models import Run, RunStatus

    sessions, tokens = {}, {}
    for username in ("bench-admin", "bench-editor"):
        user = User.objects.get(username=username)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        sessions[username] = session.session_key
        tokens[username] = ApiToken.issue(user=user, name="loadbench")[1]
    warehouses = list(Datastore.objects.filter(name__startswith="warehouse-")
                      .order_by("name").values_list("pk", flat=True))
    today = dt.date.today()
    from django.db import connections

    config = {
        "sessions": sessions,
        "tokens": tokens,
        "watchers": args.watchers,
        "browsers": args.browsers,
        "demo_datastore": stack.datastore_id,
        "seeded_active": list(Run.objects.filter(status=RunStatus.RUNNING)
                              .order_by("-pk").values_list("pk", flat=True)[:50]),
        "datastores": {"bench-admin": warehouses,
                       "bench-editor": [warehouses[i] for i in EDITOR_DATASTORES]},
        "newest_run": Run.objects.order_by("-pk").values_list("pk", flat=True).first(),
        "heatmap_days": [(today - dt.timedelta(days=d)).isoformat() for d in range(1, 84)],
    }
    connections.close_all()
    return config


class Trickle(threading.Thread):
    """Launches a Sync or a one-table Profile of the demo datastore every ``every`` seconds."""

    def __init__(self, stack: Deployment, every: float):
        super().__init__(daemon=True)
        self.stack, self.every = stack, every
        self.launched: list[int] = []
        self.refused: list[tuple[int, dict]] = []
        self.done = threading.Event()

    def run(self) -> None:
        index = 0
        while not self.done.wait(self.every):
            if index % 2 == 0:
                body = {"operation": "sync", "datastore": self.stack.datastore_id, "config": {}}
            else:
                table = PROFILE_TABLES[(index // 2) % len(PROFILE_TABLES)]
                body = {"operation": "profile", "datastore": self.stack.datastore_id,
                        "config": {"containers": [table]}}
            status, answer = self.stack.api("POST", "/runs", body)
            if status == 201:
                self.launched.append(answer["id"])
            else:
                self.refused.append((status, answer))
            index += 1


def run_locust(stack: Deployment, config: dict, args: argparse.Namespace, out: Path) -> None:
    config_file = out / "locust-config.json"
    config_file.write_text(json.dumps(config))
    users = args.watchers + args.browsers
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "locust"), "-f", str(ROOT / "bench" / "locustfile.py"),
         "--headless", "--host", f"http://127.0.0.1:{args.web_port}",
         "--users", str(users), "--spawn-rate", str(users), "--run-time", args.time,
         "--stop-timeout", "5", "--csv", str(out / "locust"), "--only-summary",
         "--loglevel", "WARNING"],
        cwd=ROOT, env={**os.environ, "LOADBENCH_CONFIG": str(config_file)}, check=False,
    )


def read_stats(out: Path) -> list[dict]:
    with open(out / "locust_stats.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def report(rows: list[dict], args: argparse.Namespace, trickle: Trickle, statuses: dict,
           load: tuple[float, float]) -> str:
    lines = [
        f"Load benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {args.runs:,} seeded "
        f"Runs; {args.watchers} Run watchers + {args.browsers} Activity browsers for "
        f"{args.time}; a Run launched every {args.launch_every} s ({len(trickle.launched)} "
        f"launched: {statuses}); load average {load[0]:.1f} before, {load[1]:.1f} after.",
        "",
        "| Endpoint | Requests | Failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = "**All**" if row["Name"] == "Aggregated" else row["Name"]
        lines.append(
            f"| {name} | {row['Request Count']} | {row['Failure Count']} | "
            f"{float(row['Requests/s']):.1f} | {row['50%']} | {row['95%']} | {row['99%']} | "
            f"{float(row['Max Response Time']):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="assay-loadbench-"))
    os.chmod(root, 0o755)
    out = ROOT / "var" / "bench" / "load"
    out.mkdir(parents=True, exist_ok=True)
    stack = deployment(args, root)
    trickle = Trickle(stack, args.launch_every)
    try:
        print(f"Recreating {args.database}, migrating, seeding {args.runs:,} Runs...",
              flush=True)
        stack.prepare(demo_rows=2000)
        seed(stack, args.runs)
        config = locust_config(stack, args)
        stack.manage("collectstatic", "--noinput", "-v0")  # production serves the manifest
        stack.start("web")
        stack.start("worker")
        stack.wait_ready("worker")
        # The catalogue the Profiles need, and a first Run for the watchers of live Runs.
        stack.wait_for_status(stack.launch("sync"), {"success"}, timeout=120)
        load_before = os.getloadavg()[0]
        trickle.start()
        print(f"Locust: {args.watchers} + {args.browsers} users for {args.time}...",
              flush=True)
        run_locust(stack, config, args, out)
        trickle.done.set()
        trickle.join()
        load_after = os.getloadavg()[0]

        def settled():
            rows = stack.cluster.query(
                "SELECT status, count(*) FROM runs_run WHERE id = ANY(%s) GROUP BY status",
                (trickle.launched,))
            counts = dict(rows)
            return counts if not counts.keys() & {"queued", "running"} else None

        statuses = wait_until(settled, timeout=300, interval=0.5, what="launched Runs ended")
        rows = read_stats(out)
        text = report(rows, args, trickle, statuses, (load_before, load_after))
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
        print(text)
        failures = sum(int(r["Failure Count"]) for r in rows if r["Name"] == "Aggregated")
        bad = {s: n for s, n in statuses.items() if s != "success"}
        if failures or bad or trickle.refused:
            print(f"FAILED: {failures} failed requests; Runs not Success: {bad}; launches "
                  f"refused: {trickle.refused[:3]}", file=sys.stderr)
            failures_file = out / "locust_failures.csv"
            if failures_file.exists():
                print(failures_file.read_text()[:3000], file=sys.stderr)
            return 1
        return 0
    except Exception:
        for name in stack.procs:
            print(f"--- {name}.log (end) ---\n{stack.log(name)[-2000:]}", file=sys.stderr)
        raise
    finally:
        trickle.done.set()
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
