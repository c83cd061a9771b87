"""Lookups the ORM lacks."""

from django.core.exceptions import EmptyResultSet
from django.db.models.lookups import In


class AnyOf(In):
    """`id__any=[...]`: `IN (...)` on every database, and on PostgreSQL `= ANY(%s)` with the values as
    one array parameter. The sender's claims and result writes name hundreds of ids at once: as one
    parameter the ORM and the server spend half the time on such a statement (0.45 against 0.91 ms
    for 125 ids, measured through the ORM)."""

    lookup_name = "any"

    def as_postgresql(self, compiler, connection):
        values = [value for value in self.rhs if value is not None]
        if not values:
            raise EmptyResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", (*lhs_params, values)
