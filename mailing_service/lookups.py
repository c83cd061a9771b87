"""Lookups the ORM lacks."""

from django.core.exceptions import EmptyResultSet
from django.db.models.lookups import In


class AnyOf(In):
    """`id__any=[...]`: on PostgreSQL `= ANY(%s::bigint[])` with the values as one array, on other
    databases `IN (...)`. The sender's claims and result writes name hundreds of ids at once: as one
    array the ORM and the server spend less time on such a statement than on hundreds of
    parameters. A subquery or expressions fall back to IN."""

    lookup_name = "any"

    def as_postgresql(self, compiler, connection):
        if not self.rhs_is_direct_value() or any(hasattr(value, "resolve_expression") for value in self.rhs):
            return super().as_sql(compiler, connection)
        values = [value for value in self.rhs if value is not None]
        if not values:
            raise EmptyResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        # The array's type from the column, not from the values' size (int2[], int8[], numeric[]...).
        return f"{lhs} = ANY(%s::{self.lhs.output_field.cast_db_type(connection)}[])", (*lhs_params, values)
