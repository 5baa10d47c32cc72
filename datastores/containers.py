"""SQLAlchemy views of catalogued containers, shared by the operations that read the source.

A container is read through a ``FromClause`` built from its stored fields, so processing a unit
costs no reflection round trip; the catalogue is as fresh as the last Sync. A table or view
without stored fields is reflected instead, and a computed container without them is probed
with an empty read of its query.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from datastores.models import Container, ContainerKind, Field

# Field.type (see datastores.quality.profiling.FIELD_TYPES) -> the generic SQLAlchemy type that
# gives the checks and profiles the same semantics the reflected type would.
_GENERIC_TYPES: dict[str, type[sa.types.TypeEngine]] = {
    "integer": sa.Integer,
    "float": sa.Float,
    "decimal": sa.Numeric,
    "string": sa.String,
    "date": sa.Date,
    "datetime": sa.DateTime,
    "boolean": sa.Boolean,
}

# The pattern SQLAlchemy's text() uses for ":name" bind parameters. A computed query is SQL the
# user wrote, not a template: such colons (inside string literals, say) are escaped so they
# reach the database as written.
_BIND_PARAM = re.compile(r"(?<![:\w\\]):(?=\w)")


def field_type(field: Field) -> sa.types.TypeEngine:
    """The SQLAlchemy type a stored field is read as."""
    generic = _GENERIC_TYPES.get(field.type)
    return generic() if generic else sa.types.NullType()


def container_selectable(container: Container, conn: sa.Connection) -> sa.FromClause:
    """A FROM clause reading ``container``'s rows on ``conn`` (a table, a view or a subquery)."""
    fields = sorted(container.fields.all(), key=lambda f: f.position)
    columns = [sa.column(f.name, field_type(f)) for f in fields]
    if container.kind == ContainerKind.COMPUTED:
        query = computed_query(container.query)
        if not columns:
            columns = [sa.column(name) for name in _probe_columns(conn, query)]
        return sa.text(query).columns(*columns).subquery(container.name)
    if columns:
        return sa.table(container.name, *columns)
    return sa.Table(container.name, sa.MetaData(), autoload_with=conn)


def computed_query(query: str) -> str:
    """The computed container's SELECT, ready to nest as a subquery."""
    return _BIND_PARAM.sub(r"\\:", query.strip().rstrip(";").rstrip())


def _probe_columns(conn: sa.Connection, query: str) -> list[str]:
    probe = sa.select(sa.text("*")).select_from(sa.text(query).columns().subquery("probe"))
    return list(conn.execute(probe.limit(0)).keys())
