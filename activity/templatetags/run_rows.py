"""The Activity list's row, built in Python: ``{% run_row %}`` and ``{% run_line %}``.

A page draws 25 rows, and every active row is polled every 2 s. Through template tags and
``{{ }}`` a row took 0.4 ms, most of it Django's escaping of each value (a dozen per row, each
through its lazy-string check); built here it costs a tenth of that. The ``run-row`` and
``run-line`` partials of ``activity/activity.html`` call these tags, so the page, its polls and
the htmx answers draw the same markup. Every value that is not a number or fixed text is
escaped where it goes in.
"""

from __future__ import annotations

from functools import cache
from html import escape

from django import template
from django.utils.safestring import SafeString, mark_safe

from runs.models import ActorKind, RunStatus
from runs.policy import Action

from .assay_ui import (
    _url_format,
    action_forms,
    destination_name,
    duration,
    icon,
    local,
    percent,
    state_version,
    status_badge,
    when,
)

register = template.Library()

WARNINGS = "Completed with warnings: the worker logged warnings or errors"
WHO_ICONS = {ActorKind.SCHEDULE: "calendar-clock", ActorKind.SYSTEM: "cog-outline"}


@cache
def _icon(name: str, css: str = "", title: str = "") -> str:
    # A handful of fixed glyphs, drawn on every row.
    return icon(name, css, title)


@cache
def _badge(status: str) -> str:
    return status_badge(status)


@register.simple_tag(takes_context=True)
def run_row(context, run) -> SafeString:
    """The whole row: the expand button, the line, and the empty box its details go in."""
    pk = int(run.pk)
    return mark_safe(  # noqa: S308 -- the line escapes its values; the rest are numbers
        f'<div class="run" id="run-{pk}">\n'
        f'  <button type="button" class="expand" aria-expanded="false"'
        f' aria-controls="run-{pk}-more" data-expand="'
        f'{_url_format("activity:run-more", 1).format(pk)}" title="Show details of Run #{pk}">'
        f'{_icon("chevron-right")}<span class="sr-only">Details of Run #{pk}</span></button>\n'
        f"  {run_line(context, run)}\n"
        f'  <div class="run-more" id="run-{pk}-more"></div>\n'
        f"</div>"
    )


@register.simple_tag(takes_context=True)
def run_line(context, run) -> SafeString:
    """The row's columns; an active Run's line polls for itself (``?v=``: 204 if unchanged)."""
    pk = int(run.pk)
    status = escape(run.status)
    poll = ""
    if run.is_active:
        url = _url_format("activity:run-line", 1).format(pk)
        poll = (f' hx-get="{url}?v={escape(state_version(run))}" hx-trigger="every 2s"'
                f' hx-swap="outerHTML"')
    select = ""
    if context.get("bulk") and getattr(run, "actions", None):
        select = (f'<input type="checkbox" class="run-select" name="run" value="{pk}"'
                  f' form="bulk-form" aria-label="Select Run #{pk}">')
    destination = destination_name(run, context.get("user"))
    to = f" → {escape(destination)}" if destination else ""
    return mark_safe(  # noqa: S308 -- every outside value is escaped above or below
        f'<div class="run-line run-cols" id="run-{pk}-line" data-live data-status="{status}"'
        f"{poll}>"
        f'<div class="c-run">{select}<a class="run-id" href="'
        f'{_url_format("activity:run", 1).format(pk)}">#{pk}</a>{run_warning(run)}'
        f'<span class="op">{escape(run.get_operation_display())}</span>'
        f'<span class="ds" title="Datastore">{escape(run.datastore.name)}{to}</span></div>'
        f'<div class="c-status">{_badge(run.status)}{run_aborting(run)}</div>'
        f'<div class="c-started" data-label="Started">{_started(run)}</div>'
        f'<div class="c-duration" data-label="Duration">{run_duration(run)}</div>'
        f'<div class="c-progress">{run_progress(run)}</div>'
        f'<div class="c-who">{_who(run)}</div>'
        f'<div class="c-actions">'
        f"{action_forms(run, context.get('csrf_token'), context.get('next_url', ''))}</div>"
        f"</div>"
    )


@register.simple_tag
def run_warning(run) -> SafeString:
    """The warning sign of a Run that succeeded while its worker logged warnings or errors."""
    if run.status == RunStatus.SUCCESS and run.has_warnings:
        return mark_safe(  # noqa: S308 -- fixed text
            f'<span class="warn" title="{WARNINGS}">{_icon("alert", "", WARNINGS)}</span>')
    return mark_safe("")


@register.simple_tag
def run_aborting(run) -> SafeString:
    """The "Aborting…" sign once an abort is requested; while the viewer may abort, a hidden
    one that htmx shows as the Abort button's indicator (``abort-pending``)."""
    if run.is_aborting:
        by = run.abort_requested_by.display_name if run.abort_requested_by else ""
        return mark_safe(  # noqa: S308 -- the name is escaped
            f'<span class="aborting" title="Abort requested by {escape(by or "System")}">'
            "Aborting…</span>")
    if Action.ABORT in getattr(run, "actions", ()):
        pending = f"abort-pending-{int(run.pk)}"
        return mark_safe(  # noqa: S308 -- a number and fixed text
            f'<span class="aborting abort-pending" id="{pending}">Aborting…</span>')
    return mark_safe("")


@register.simple_tag
def run_wait_reason(run) -> SafeString:
    """Why a queued Run waits (``runs.fairness.attach_wait_reasons`` sets it), if it does."""
    reason = getattr(run, "wait_reason", "")
    if not reason:
        return mark_safe("")
    return mark_safe(  # noqa: S308 -- the reason is escaped
        f'<span class="wait-reason muted" data-wait-reason>{escape(reason)}</span>')


def _started(run) -> str:
    if run.started_at:
        return when(run.started_at)
    queued = escape(local(run.created_at))
    reason = run_wait_reason(run)
    if reason:
        return f'<span title="Queued at {queued}">{reason}</span>'
    return f'<span class="muted" title="Queued at {queued}">not started</span>'


def _who(run) -> str:
    if run.status == RunStatus.ABORTED:
        return f'<span class="who-label">Aborted by</span> {escape(run.aborted_by_name)}'
    glyph = WHO_ICONS.get(run.triggered_by_kind)
    return (f'<span class="who-label sr-only">Triggered by</span>'
            f"{_icon(glyph) if glyph else ''}{escape(run.triggered_by_name)}")


@register.simple_tag
def run_duration(run) -> SafeString:
    """How long the Run took; an active Run's ticks in the browser from ``data-live-duration``."""
    if not run.started_at:
        return mark_safe('<span class="muted">—</span>')  # noqa: S308 -- fixed text
    seconds = run.duration_s
    live = f' data-live-duration="{seconds:.1f}"' if run.is_active else ""
    return mark_safe(f'<span class="duration"{live}>{duration(seconds)}</span>')  # noqa: S308


@register.simple_tag
def run_progress(run) -> SafeString:
    """"4 / 14 Tables" and its bar; "Planning…" before an active Run has counted its units."""
    if run.status == RunStatus.QUEUED:
        return mark_safe("")
    if run.progress_total is None:
        return mark_safe('<span class="muted">Planning…</span>' if run.is_active  # noqa: S308
                         else '<span class="muted">—</span>')
    pk, done, total = int(run.pk), int(run.progress_done), int(run.progress_total)
    frozen = f" frozen progress-{escape(run.status)}" if run.is_terminal else ""
    return mark_safe(  # noqa: S308 -- numbers, the status and the escaped unit
        f'<div class="progress{frozen}"><div class="bar" role="progressbar"'
        f' aria-label="Progress of Run #{pk}" aria-valuemin="0" aria-valuemax="{total}"'
        f' aria-valuenow="{done}"><span class="w{percent(run)}"></span></div>'
        f'<span class="progress-text">{done} / {total} {escape(run.progress_unit or "")}</span>'
        f"</div>"
    )
