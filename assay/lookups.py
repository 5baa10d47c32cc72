"""``field__any=[...]``: ``field = ANY(%s)`` with the values as ONE array parameter.

Django's ``__in`` writes a placeholder per value and prepares each value on its own; for the
heatmap's lists of 500 hours that took longer than PostgreSQL's index probes. The values must
already be what the column holds (aware datetimes for a DateTimeField): they are passed as they
are. Other databases get ``__in``.
"""

from django.db.models import DateTimeField, Lookup
from django.db.models.lookups import In


@DateTimeField.register_lookup
class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, list(self.rhs)]

    def as_sql(self, compiler, connection):
        return In(self.lhs, list(self.rhs)).as_sql(compiler, connection)
