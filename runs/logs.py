"""Run log lines: capped per Run, only while the Run is active (a DB trigger enforces that)."""

import re
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.http import StreamingHttpResponse

from runs.models import ACTIVE_STATUSES, LogLevel, Run, RunLogEntry

WARNING_LEVELS = (LogLevel.WARNING, LogLevel.ERROR)


def append_log(
    run_id: int,
    message: str,
    *,
    level: str = LogLevel.INFO,
    container: str = "",
    token=None,
    final: bool = False,
) -> bool:
    """Add a line to an active Run. Returns False only if the Run is no longer writable.

    ``token`` fences a worker: its lines land only while it still owns the Run.
    Past ``RUN_LOG_MAX_LINES`` one truncation marker is written and later lines are dropped,
    but a warning still raises the Run's warning indicator. A ``final`` line (the one that
    ends the Run and says why) is written past the cap too.
    """
    cap = settings.RUN_LOG_MAX_LINES
    active = Q(pk=run_id, status__in=ACTIVE_STATUSES)
    if token is not None:
        active &= Q(worker_token=token)
    warn = {"has_warnings": True} if level in WARNING_LEVELS else {}
    with transaction.atomic():
        if final:
            if not Run.objects.filter(active).update(log_lines=F("log_lines") + 1, **warn):
                return False
            RunLogEntry.objects.create(
                run_id=run_id, level=level, container=container, message=message[:10_000]
            )
            return True
        if Run.objects.filter(active, log_lines__lt=cap).update(
            log_lines=F("log_lines") + 1, **warn
        ):
            RunLogEntry.objects.create(
                run_id=run_id, level=level, container=container, message=message[:10_000]
            )
            return True
        if Run.objects.filter(active, log_lines=cap).update(log_lines=cap + 1, **warn):
            RunLogEntry.objects.create(
                run_id=run_id,
                level=LogLevel.WARNING,
                message=f"Log truncated: more than {cap} lines; later lines were dropped.",
            )
            return True
        # Dropped past the cap: still True while the Run is writable, so a worker does not
        # mistake a full log for having lost its Run.
        if warn:
            return bool(Run.objects.filter(active).update(**warn))
        return Run.objects.filter(active).exists()


LOG_TEXT_PAGE = 1000  # lines per database page of a streamed log file

# Line breaks (and other control characters) inside a message or a container name would start
# a forged line in the downloaded file; they are written as visible escapes instead.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def iter_log_text(run_id: int) -> Iterator[str]:
    """The whole log as text, one database page at a time (keyset on id): a long log never
    sits in memory, and a download can be streamed while it is read."""
    after = 0
    while True:
        page = list(
            RunLogEntry.objects.filter(run_id=run_id, pk__gt=after)
            .order_by("pk")
            .values_list("pk", "created_at", "level", "container", "message")[:LOG_TEXT_PAGE]
        )
        if not page:
            return
        yield "".join(
            f"{created.isoformat()} {level.upper():<7} "
            f"{f'[{one_line(container)}] ' if container else ''}{one_line(message)}\n"
            for _, created, level, container, message in page
        )
        after = page[-1][0]
        if len(page) < LOG_TEXT_PAGE:
            return


def log_download_response(run_id: int) -> StreamingHttpResponse:
    """The full log as a streamed text attachment (UI download and API log.txt alike)."""
    response = StreamingHttpResponse(
        iter_log_text(run_id), content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="run-{run_id}.log"'
    return response
