import re

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class StrictPageNumberPagination(PageNumberPagination):
    """`?page=` must be a whole number from 1: anything else is a 400 naming the parameter (DRF answered
    404 "Invalid page." for `?page=-1`). A page past the last one is still a 404, as documented."""

    def paginate_queryset(self, queryset, request, view=None):
        number = request.query_params.get(self.page_query_param)
        if number is not None and not re.fullmatch(r"0*[1-9][0-9]*", number):
            raise ValidationError({self.page_query_param: ["A page number: a whole number from 1."]})
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
