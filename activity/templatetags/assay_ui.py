"""Small presentation helpers shared by every page: icons, badges, durations, values."""

from __future__ import annotations

import json

from django import template
from django.templatetags.static import static
from django.utils.html import format_html

from activity.selectors import state_version as _state_version
from runs.models import RunStatus
from runs.operations import get_operation

register = template.Library()

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
    href = f"{static('icons/mdi.svg')}#{name}"
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


@register.simple_tag
def state_icon(status: str, css: str = ""):
    return icon(STATE_ICONS.get(status, "clock-outline"), f"state-{status} {css}")


@register.simple_tag
def action_icon(action: str):
    return icon(ACTION_ICONS.get(str(action), "play-circle"))


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
