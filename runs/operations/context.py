"""What an operation sees of its Run (``RunContext``): its config and datastores, cancellable
source connections, log lines, metrics, and the checkpoints where it must stop. It is the other
half of the operation protocol (``runs.operations.base``); ``runs.execution`` drives both.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Now

from datastores.models import Datastore
from datastores.sources import SourceConnection
from runs.logs import append_log
from runs.models import LogLevel, Run, RunStatus

if TYPE_CHECKING:
    from runs.operations.base import OperationConfig

logger = logging.getLogger("runs.execution")


class RunFenced(Exception):
    """This worker no longer owns the Run (finalised by someone else, or token replaced)."""


class AbortRequested(Exception):
    """The Run's abort flag is set; stop at this checkpoint."""


class RunContext:
    """What an operation sees of its Run: config, datastores, connections, logs, checkpoints."""

    def __init__(self, run: Run, token: uuid.UUID, config: OperationConfig):
        self.run = run
        self.run_id = run.pk
        self.token = token
        self.config = config
        self.datastore: Datastore = run.datastore
        self.destination: Datastore | None = run.destination_datastore
        self.metrics: dict[str, Any] = dict(run.metrics or {})
        self.state: dict[str, Any] = {}  # per-Run scratch space of the operation
        self.abort_event = threading.Event()
        self.lost_event = threading.Event()
        self._sources: list[SourceConnection] = []
        self._sources_lock = threading.Lock()

    # -- fencing -----------------------------------------------------------------------------
    def owned(self) -> Q:
        return Q(pk=self.run_id, status=RunStatus.RUNNING, worker_token=self.token)

    def update_run(self, **fields) -> None:
        if not Run.objects.filter(self.owned()).update(**fields):
            raise RunFenced(self.run_id)

    @contextmanager
    def fenced(self):
        """A transaction that commits only while this worker still owns the Run."""
        with transaction.atomic():
            self.update_run(heartbeat_at=Now())
            yield

    # -- Assay's database going away for a moment ------------------------------------------
    def through_db_blips(self, step, *args):
        """Run ``step`` (a whole transaction, or a whole unit), again while Assay's database is
        unreachable, for up to ``RUN_DB_RETRY_WINDOW`` seconds.

        A restart or failover of the database must not fail Runs whose workers are alive: what
        the step wrote was rolled back with the lost connection, so it is done again on a new
        one, metrics as they were before it. Source queries are not retried here (their errors
        are the source's, handled per unit).
        """
        deadline = time.monotonic() + settings.RUN_DB_RETRY_WINDOW
        pause = 0.5
        metrics = dict(self.metrics)
        while True:
            try:
                return step(*args)
            except (OperationalError, InterfaceError) as exc:
                if connection.in_atomic_block or time.monotonic() + pause > deadline:
                    raise
                logger.warning("run %s: Assay's database unreachable (%s); retrying in %.1f s",
                               self.run_id, exc, pause)
                self.metrics = dict(metrics)
                connection.close()
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    # -- abort -------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Call between units and batches: raises when the Run must stop."""
        if self.lost_event.is_set():
            raise RunFenced(self.run_id)
        if self.abort_event.is_set():
            raise AbortRequested

    @property
    def stopping(self) -> bool:
        return self.abort_event.is_set() or self.lost_event.is_set()

    # -- logs and metrics --------------------------------------------------------------------
    def log(self, message: str, *, level: str = LogLevel.INFO, container: str = "") -> None:
        if not append_log(self.run_id, message, level=level, container=container, token=self.token):
            raise RunFenced(self.run_id)

    def add_metrics(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.metrics[key] = self.metrics.get(key, 0) + value
            else:
                self.metrics[key] = value

    # -- datastores --------------------------------------------------------------------------
    def connect(self, url: str, *, writable: bool = False) -> SourceConnection:
        """Open a cancellable connection that lives until the Run ends."""
        source = SourceConnection(url, writable=writable).__enter__()
        with self._sources_lock:
            self._sources.append(source)
        return source

    def source(self) -> SourceConnection:
        if not hasattr(self, "_source"):
            self._source = self.connect(self.datastore.source_url)
        return self._source

    def cancel_queries(self) -> None:
        with self._sources_lock:
            sources = list(self._sources)
        for source in sources:
            try:
                source.cancel()
            except Exception:  # cancelling is best effort; the checkpoint still stops the Run
                logger.exception("cancel failed for run %s", self.run_id)

    def close(self) -> None:
        with self._sources_lock:
            sources, self._sources = self._sources, []
        for source in sources:
            source.__exit__(None, None, None)
