"""Gunicorn settings for Assay's web process (``gunicorn -c python:assay.gunicorn_conf``).

Several gunicorn processes answer /metrics in turn: each writes its HTTP figures to files in
``PROMETHEUS_MULTIPROC_DIR`` and whichever answers a scrape sums them all. The folder is
emptied when gunicorn starts (figures of a previous run must not count) and a process that
exits is marked dead so its live gauges stop counting.
"""

import os
import shutil
from pathlib import Path

_var = Path(os.environ.get("ASSAY_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
# Set before any worker imports prometheus_client: the library picks its mode at import.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(_var / "prometheus"))

# Keep idle connections longer than the pages' 2 s polls: with gunicorn's default of 2 s, a poll
# reusing its connection races the server closing it, and fails with "connection closed
# without response" (measured: ~1 % of polls under load, bench/load.py).
keepalive = 5


def on_starting(server) -> None:
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
