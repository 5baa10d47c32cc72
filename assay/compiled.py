"""ORM queries compiled once per process, for the hot reads that only change their ids.

Django builds a query's SQL again on every call. For a query with correlated subqueries that
took four times longer than PostgreSQL took to run it, on requests every page and poll makes.
Here the queryset is built and compiled once for each number of ids, with stand-in ids, and
later calls put the real ids in the stand-ins' places among the parameters. The SQL is the
ORM's own, so the conditions stay written once, in the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

from django.db import connection
from django.db.models import QuerySet

# Real ids are positive; no other parameter of a query equals one of these.
_STAND_IN = -(2**62)


def rows_for_ids(build: Callable[[list[int]], QuerySet], ids: Sequence[int]) -> list[tuple]:
    """``list(build(ids))``'s rows as plain tuples, for a ``values_list`` queryset whose
    values need no conversion (numbers and text)."""
    ids = list(dict.fromkeys(ids))  # the ORM drops repeated ids from an IN list
    sql, params, slots = _compiled(build, len(ids))
    params = list(params)
    for position, index in slots:
        params[position] = ids[index]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@cache
def _compiled(build, count: int) -> tuple[str, tuple, tuple[tuple[int, int], ...]]:
    stand_ins = [_STAND_IN + i for i in range(count)]
    sql, params = build(stand_ins).query.sql_with_params()
    where = {stand_in: index for index, stand_in in enumerate(stand_ins)}
    slots = tuple((position, where[param]) for position, param in enumerate(params)
                  if isinstance(param, int) and param in where)
    if sorted(index for _, index in slots) != list(range(count)):
        raise ValueError("each id must be a parameter of the query exactly once")
    return sql, tuple(params), slots
