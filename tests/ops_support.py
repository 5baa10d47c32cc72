"""Processes an operator runs, started by tests: celery beat, a private Redis."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT, WorkerProcess, wait_for


class BeatProcess(WorkerProcess):
    """A real ``celery beat`` on the test's database and broker (stopped like a worker)."""

    def start(self, *, schedule_file: Path) -> BeatProcess:  # type: ignore[override]
        self.log = open(self.log_path.with_name("beat.log"), "ab")  # noqa: SIM115
        self.log_path = self.log_path.with_name("beat.log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "assay", "beat", "-l", "INFO",
             "--schedule", str(schedule_file)],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_for_log("beat: Starting...", timeout=60)
        return self


class PrivateRedis:
    """A ``redis-server`` of the test's own on ``port``, without persistence."""

    def __init__(self, port: int, workdir: Path):
        self.port, self.workdir = port, workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        import redis

        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def answers() -> bool:
            with contextlib.suppress(redis.RedisError):
                return client.ping()
            return False

        wait_for(answers, timeout=20, message=f"redis on {self.port} did not start")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def free_port(candidates: range) -> int:
    """The first port of ``candidates`` nothing listens on (each xdist worker its own)."""
    import socket

    offset = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
    ports = list(candidates)
    ports = ports[offset % len(ports):] + ports[: offset % len(ports)]
    for port in ports:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {candidates}")


def elapsed(since: float) -> float:
    return time.monotonic() - since


class QueueWorkerProcess(WorkerProcess):
    """A real worker consuming only ``queue``, like the Procfile's ``housekeeping`` and
    ``notifier`` processes."""

    def __init__(self, tmp_path: Path, queue: str, **kwargs):
        super().__init__(tmp_path, **kwargs)
        self.queue = queue
        self.log_path = self.log_path.with_name(f"{queue}.log")

    def start(self, *, concurrency: int = 2) -> QueueWorkerProcess:  # type: ignore[override]
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "assay", "worker", "-l", "INFO",
             "-Q", self.queue, "-c", str(concurrency), "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-n", f"{self.queue}-{os.getpid()}@%h"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_for_log("ready.", timeout=60)
        return self


class Receiver:
    """A local webhook receiver; ``script`` says how it answers each request in turn: an HTTP
    status, or "hang" (holds the request until ``release()``)."""

    def __init__(self, script: list):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.script = script
        self.requests: list[tuple[float, dict, bytes]] = []
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 -- http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((time.monotonic(), dict(self.headers), body))
                action = receiver.script[min(len(receiver.requests), len(receiver.script)) - 1]
                if action == "hang":
                    receiver.released.wait(60)
                    action = 200
                self.send_response(action)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port(range(55440, 55450))), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
