"""Keyset pages, newest first, shared by every list of the UI and the API.

No OFFSET and no COUNT: a page continues below the id of the last row shown, so rows added
while someone pages cannot shift the pages they have not read yet, and a page deep in a list
costs what the first one costs. Cursors are opaque to API clients (``<kind>:<id>`` in base64).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet, Subquery

from assay.api_common import MAX_ID
from runs.errors import RunServiceError


@dataclass
class Page:
    items: list[Any]
    next_before: int | None  # id to continue below; None on the last page


def keyset_page(
    rows: QuerySet, *, before: int | None, limit: int, dated: bool = False
) -> Page:
    """``limit`` rows of ``rows`` newest first, below the row ``before``.

    Undated lists walk the primary key (ids follow creation). Dated lists (a creation-time
    range) walk ``(created_at, id)`` instead: their rows may all sit far back, and walking ids
    from the newest would read every row in between.
    """
    if dated:
        if before is not None:
            # The last shown row's time (or the nearest older row's, if it was deleted).
            shown = (
                rows.model.objects.filter(pk__lte=before).order_by("-pk").values("created_at")[:1]
            )
            rows = rows.filter(created_at__lte=Subquery(shown)).filter(
                Q(created_at__lt=Subquery(shown)) | Q(pk__lt=before)
            )
        rows = rows.order_by("-created_at", "-id")
    else:
        if before is not None:
            rows = rows.filter(pk__lt=before)
        rows = rows.order_by("-id")
    items = list(rows[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    return Page(items, items[-1].pk if more else None)


class InvalidCursor(RunServiceError):
    status_code = 400
    code = "invalid_cursor"


def encode_cursor(kind: str, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """The id a page continues below. Garbage, or another list's cursor, is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    match = re.fullmatch(rf"{re.escape(kind)}:([1-9][0-9]{{0,18}})", raw)
    if match is None or int(match.group(1)) > MAX_ID:
        raise InvalidCursor("Invalid cursor: pass next_cursor from a previous page as is.")
    return int(match.group(1))


def api_page(
    rows: QuerySet, *, kind: str, cursor: str | None, limit: int
) -> tuple[list, str | None]:
    """One page of an API list (newest first) and the cursor of the next, or None."""
    page = keyset_page(rows, before=decode_cursor(kind, cursor) if cursor else None, limit=limit)
    return page.items, encode_cursor(kind, page.next_before) if page.next_before else None
