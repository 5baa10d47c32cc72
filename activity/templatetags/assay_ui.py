"""Small presentation helpers shared by every page: icons, badges, durations, values."""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from urllib.parse import quote

from django import forms, template
from django.forms.utils import flatatt
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.permissions import datastore_level
from activity.selectors import state_version as _state_version
from runs.models import RunStatus
from runs.operations import get_operation

register = template.Library()


@register.filter
def destination_name(run, user) -> str:
    """Promote's destination datastore, named only to those who may see it ("" if none).

    Seeing a Run takes access to its source datastore only; the destination's name must not
    leak to someone without access to it.
    """
    if not run.destination_datastore_id:
        return ""
    visible = getattr(run, "destination_visible", None)  # set for a page by attach_actions
    if visible is None:
        visible = datastore_level(user, run.destination_datastore_id) is not None
    if not visible:
        return "another datastore"
    return run.destination_datastore.name

# One glyph per Run state, used by the timeline and the Results tab.
STATE_ICONS = {
    RunStatus.QUEUED: "clock-outline",
    RunStatus.RUNNING: "play-circle",
    RunStatus.SUCCESS: "check-circle",
    RunStatus.FAILURE: "close-circle",
    RunStatus.ABORTED: "cancel",
}
ACTION_ICONS = {"abort": "stop-circle", "resume": "restore", "rerun": "replay",
                "delete": "delete-outline"}


@register.simple_tag
def icon(name: str, css: str = "", title: str = ""):
    """An MDI glyph from the sprite. Decorative unless ``title`` is given."""
    href = f"{_sprite()}#{name}"
    if title:
        return format_html(
            '<svg class="icon {}" role="img" aria-label="{}"><title>{}</title>'
            '<use href="{}"></use></svg>',
            css, title, title, href,
        )
    return format_html(
        '<svg class="icon {}" aria-hidden="true" focusable="false"><use href="{}"></use></svg>',
        css, href,
    )


@cache
def _sprite() -> str:
    # Resolved once per process: the Activity page draws dozens of icons.
    return static("icons/mdi.svg")


@register.simple_tag
def state_icon(status: str, css: str = ""):
    return icon(STATE_ICONS.get(status, "clock-outline"), f"state-{status} {css}")


@register.simple_tag
def action_icon(action: str):
    return icon(ACTION_ICONS.get(str(action), "play-circle"))


ACTION_TITLES = {
    "abort": "Abort: stop this Run, keeping partial results",
    "rerun": "Rerun: a new Run with the same configuration, from scratch",
    "delete": "Delete this Run's record (its results stay)",
}


def action_title(action, run) -> str:
    """The tooltip of an action button."""
    if str(action) == "resume":
        units = (run.progress_unit or "units").lower()
        return f"Resume: a new Run over the {units} that did not finish"
    return ACTION_TITLES.get(str(action), str(getattr(action, "label", action)))


@register.filter
def local(value: dt.datetime | None, layout: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    """A timestamp in the viewer's time zone (the zone named, by default). Plain ``strftime``:
    rows show several timestamps each, and Django's ``date`` filter costs ten times more."""
    return value.astimezone(timezone.get_current_timezone()).strftime(layout) if value else ""


def relative(value: dt.datetime, now: dt.datetime) -> str:
    """"3 min ago" within a day; otherwise the date, with its year when not this year's."""
    seconds = (now - value).total_seconds()
    if -60 < seconds < 45:
        return "just now"
    if 0 < seconds < 3600:
        return f"{round(seconds / 60)} min ago"
    if 0 < seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    zone = timezone.get_current_timezone()
    here = value.astimezone(zone)
    if here.year != now.astimezone(zone).year:
        return here.strftime("%b %-d %Y, %H:%M")
    return here.strftime("%b %-d, %H:%M")


@register.simple_tag
def when(value: dt.datetime | None):
    """``<time>`` reading "3 min ago" (or a date), the exact time and zone on hover."""
    if value is None:
        return ""
    # Digits, month and zone names only: no escaping needed (rows draw one each).
    return mark_safe(  # noqa: S308
        f'<time datetime="{iso(value)}" title="{local(value)}">'
        f"{relative(value, timezone.now())}</time>"
    )


@register.filter
def iso(value: dt.datetime | None) -> str:
    """ISO 8601 with offset, for ``<time datetime>``."""
    return value.astimezone(dt.UTC).isoformat() if value else ""


@register.simple_tag
def status_badge(status: str):
    """The text pill; the same palette for Runs and per-container results."""
    label = RunStatus(status).label if status in RunStatus.values else status
    return format_html('<span class="badge badge-{}">{}</span>', status, label)


@register.filter
def duration(seconds) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        # Containers often take a fraction of a second; "0s" would say nothing.
        return f"{seconds:.1f}s"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


@register.filter
def label(key: str) -> str:
    """``records_scanned`` -> ``Records scanned``."""
    return str(key).replace("_", " ").capitalize()


@register.filter
def show_value(value) -> str:
    if value is None:
        return "all / default"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, int | float):
        return f"{value:,}"
    return str(value)


@register.filter
def percent(run) -> int:
    if not run.progress_total:
        return 100 if run.is_terminal and run.progress_total == 0 else 0
    return min(100, round(100 * run.progress_done / run.progress_total))


# Summary metrics in the order a reader follows a Run (what was asked, what was done, what it
# found, what went wrong), each with the unit its number counts. Keys not listed follow,
# alphabetically, as "Label: value".
METRICS: dict[str, tuple[str, str]] = {
    "tables_requested": ("Requested", "tables"),
    "tables_profiled": ("Profiled", "tables"),
    "tables_scanned": ("Scanned", "tables"),
    "containers_added": ("Added", "containers"),
    "containers_updated": ("Updated", "containers"),
    "containers_removed": ("Removed", "containers"),
    "containers_materialized": ("Materialized", "containers"),
    "fields": ("Fields", "fields"),
    "fields_removed": ("Fields removed", "fields"),
    "records_profiled": ("Records profiled", "records"),
    "records_scanned": ("Records scanned", "records"),
    "records_written": ("Records written", "records"),
    "field_profiles": ("Field profiles", "fields"),
    "checks_evaluated": ("Checks evaluated", "checks"),
    "checks_added": ("Checks inferred, added", "checks"),
    "checks_updated": ("Checks inferred, updated", "checks"),
    "anomalies_identified": ("Anomalies identified", "anomalies"),
    "anomalies_resolved": ("Anomalies resolved", "anomalies"),
    "anomalies_exported": ("Exported", "anomalies"),
    "checks_exported": ("Exported", "checks"),
    "field_profiles_exported": ("Exported", "field profiles"),
    "created": ("Created", "checks"),
    "updated": ("Updated", "checks"),
    "skipped": ("Skipped (identical)", "checks"),
    "failed": ("Failed", "checks"),
    "check_errors": ("Checks that could not run", "checks"),
    "containers_failed": ("Failed", "containers"),
}
SINGULAR = {"tables": "table", "containers": "container", "fields": "field", "records": "record",
            "checks": "check", "anomalies": "anomaly", "field profiles": "field profile"}
_METRIC_RANK = {key: rank for rank, key in enumerate(METRICS)}


@register.filter
def metric_items(mapping: dict) -> list[tuple[str, str]]:
    """(label, value with unit) pairs of a Run's or a unit's metrics, in METRICS order."""
    items = sorted((mapping or {}).items(), key=lambda kv: (_METRIC_RANK.get(kv[0], 999), kv[0]))
    shown = []
    for key, value in items:
        name, unit = METRICS.get(key, (label(key), ""))
        text = show_value(value)
        counted = isinstance(value, int) and not isinstance(value, bool)
        if unit and counted:
            text = f"{text} {SINGULAR.get(unit, unit) if value == 1 else unit}"
        shown.append((name, text))
    return shown


@register.filter
def sorted_items(mapping: dict):
    return sorted((mapping or {}).items())


@register.filter
def state_version(run) -> str:
    """The version a poller sends back; the server answers 204 while it still matches."""
    return _state_version(run)


@register.filter
def tracks_units(run) -> bool:
    return get_operation(run.operation).tracks_units


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@register.simple_tag(takes_context=True)
def heat_grid(context, heatmap):
    """The heatmap as an ARIA grid: a row per weekday, a column per week, each day a link to
    its Runs under the current filters. assay.js makes it one tab stop with arrow keys inside.

    Built here rather than with ``{% querystring %}`` and ``|date`` per cell: 84 cells that
    way were a third of the Activity page's rendering time.
    """
    query = context["request"].GET.copy()
    for name in ("before", "date_from", "date_to"):
        query.pop(name, None)
    base = escape(f"?{query.urlencode()}&" if query else "?")
    selected = heatmap["selected"]
    weeks = heatmap["weeks"]
    months = "".join(
        f'<span class="heat-month">{week[0].day.strftime("%b") if week[0].day.day <= 7 else ""}'
        "</span>"
        for week in weeks
    )
    rows = [f'<div class="heat-row heat-months" aria-hidden="true"><span></span>{months}</div>']
    for weekday, name in enumerate(WEEKDAYS):
        shown = weekday in (0, 2, 4)  # Mon, Wed, Fri label their rows; the others are read out
        cells = [f'<span class="heat-day" role="rowheader">{name if shown else ""}'
                 f'<span class="sr-only">{"" if shown else name}</span></span>']
        for week in weeks:
            day = week[weekday]
            if day.in_future:
                cells.append('<span class="heat-cell future" role="gridcell"></span>')
                continue
            iso_day = day.day.isoformat()
            runs = f"{day.count} Run{'' if day.count == 1 else 's'}"
            current = day.day == selected
            css = f"heat-cell l{day.level}{' selected' if current else ''}"
            chosen = ' aria-selected="true"' if current else ""
            cells.append(
                f'<span role="gridcell"{chosen}>'
                f'<a class="{css}" href="{base}date_from={iso_day}&amp;date_to={iso_day}" '
                f'title="{runs} on {day.day:%a, %b} {day.day.day}" '
                f'aria-label="{runs} on {iso_day}"></a></span>'
            )
        rows.append(f'<div class="heat-row" role="row">{"".join(cells)}</div>')
    # Safe: the only outside input, the query string, is escaped; the rest is numbers and dates.
    return mark_safe("".join(rows))  # noqa: S308


@register.simple_tag(takes_context=True)
def run_actions(context, run):
    """The action buttons this viewer may use on this Run, each a POST form (htmx-enhanced)."""
    return action_forms(run, context.get("csrf_token"), context.get("next_url", ""))


def action_forms(run, csrf_token, next_url: str) -> str:
    """``run_actions``' markup. Python rather than template tags, and f-strings rather than
    ``format_html``: a page shows up to 25 Runs with three actions each, and this markup was
    half of each row's rendering time. Every value that is not a number or fixed text is
    escaped where it goes in.
    """
    if not getattr(run, "actions", None):
        return ""
    csrf = escape(csrf_token)
    next_attr, next_q = escape(next_url), escape(quote(next_url, safe=""))
    forms = []
    for action in run.actions:
        url = escape(_url_format("activity:run-action", 1, action.value).format(int(run.pk)))
        label, value = escape(action.label), escape(action.value)
        abort = (f' hx-target="closest [data-live]" hx-swap="outerHTML"'
                 f' hx-indicator="#abort-pending-{int(run.pk)}"' if value == "abort" else "")
        forms.append(
            f'<form method="post" action="{url}" hx-post="{url}" hx-vals=\'{{"confirmed": "1"}}\''
            f' data-confirm-url="{url}?next={next_q}" data-confirm-label="{label}"{abort}>'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{csrf}">'
            f'<input type="hidden" name="next" value="{next_attr}">'
            f'<button type="submit" class="btn btn-sm act-{value}"'
            f' title="{escape(action_title(action, run))}">{action_icon(action.value)}'
            f'<span class="btn-label">{label}</span></button></form>'
        )
    return mark_safe(f'<div class="actions">{"".join(forms)}</div>')  # noqa: S308 -- escaped


@register.simple_tag
def filter_control(bound):
    """A filter's ``<select>`` or ``<input>``, as Django's widget would render it.

    The Activity filters are eight widgets with some forty options; rendered through the
    widget templates (one template include per option) they took 3 ms of every page load.
    """
    widget = bound.field.widget
    attrs = {"name": bound.html_name, "id": bound.auto_id, **widget.attrs}
    if bound.errors:
        attrs["aria-invalid"] = "true"
    value = bound.value()
    if isinstance(widget, forms.Select):
        current = "" if value is None else str(value)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (choice, " selected" if str(choice) == current else "", label)
                for choice, label in bound.field.choices
            ),
        )
        return format_html("<select{}>{}</select>", flatatt(attrs), options)
    attrs.setdefault("type", widget.input_type)
    if value not in (None, ""):
        attrs["value"] = widget.format_value(value)
    return format_html("<input{}>", flatatt(attrs))


# -- checks and anomalies ----------------------------------------------------------------------
@register.simple_tag
def pill(kind: str, status: str, label: str = ""):
    """A status pill of a check or an anomaly (``kind``: "check" or "anomaly")."""
    return format_html(
        '<span class="badge badge-{}-{}">{}</span>', kind, status, label or status.capitalize()
    )


@register.simple_tag
def evaluation_strip(evaluations):
    """The latest evaluations of a check as small squares, oldest first: flapping shows.

    Plain strings: a list page draws 200 of them, and every part is a number or fixed text.
    """
    if not evaluations:
        return mark_safe('<span class="muted">not scanned yet</span>')  # noqa: S308
    cells, words = [], []
    for evaluation in evaluations:
        run, failed = int(evaluation.run_id), evaluation.failed_count
        if failed is None:
            css, text = "eval-error", f"Run #{run}: could not run"
        elif failed:
            css, text = "eval-fail", f"Run #{run}: {int(failed):,} failed"
        else:
            css, text = "eval-pass", f"Run #{run}: passed"
        cells.append(f'<span class="eval {css}" title="{text}"></span>')
        words.append(text)
    return mark_safe(  # noqa: S308 -- numbers and fixed words only
        f'<span class="evals" aria-hidden="true">{"".join(cells)}</span>'
        f'<span class="sr-only">{"; ".join(words)}</span>'
    )


@register.filter
def get_item(mapping, key):
    return (mapping or {}).get(key)


_SENTINEL = 987654321987


@cache
def _url_format(name: str, arity: int, *fixed: str) -> str:
    """``reverse(name)`` with ``{}`` where each of the first ``arity`` (integer) arguments
    goes, and the ``fixed`` ones after them, computed once per process."""
    url = reverse(name, args=[*(_SENTINEL + i for i in range(arity)), *fixed])
    for i in range(arity):
        url = url.replace(str(_SENTINEL + i), "{}", 1)
    return url


@register.simple_tag
def link(name: str, *args):
    """``{% url %}`` for integer arguments, without resolving the pattern on every call.

    List rows link to their object, its container and its Run: resolved through Django's
    resolver each time, those links were a third of a 25-row page's rendering.
    """
    return _url_format(name, len(args)).format(*(int(arg) for arg in args))


@register.filter
def audit_json(value) -> str:
    """An audit record's before/after, compact: ``key: value`` pairs."""
    if isinstance(value, dict):
        return "; ".join(
            f"{key}: {item if isinstance(item, str) else json.dumps(item)}"
            for key, item in value.items()
        )
    return json.dumps(value)


@register.filter
def in_utc(value: dt.datetime | None, layout: str = "%Y-%m-%d %H:%M UTC") -> str:
    """A timestamp in UTC, whatever the viewer's zone: schedules' cron expressions are UTC."""
    return value.astimezone(dt.UTC).strftime(layout) if value else ""
