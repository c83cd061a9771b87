import re

from django.core.paginator import Paginator
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class StrictPageNumberPagination(PageNumberPagination):
    """`?page=` must be a whole number from 1: anything else is a 400 naming the parameter (DRF answered
    404 "Invalid page." for `?page=-1`). A page past the last one is still a 404, as documented."""

    known_count: int | None = None

    def paginate_queryset(self, queryset, request, view=None, *, count: int | None = None):
        """`count`: how many rows `queryset` holds, when the caller knows it without counting them
        (the statistics' tallies), which saves a COUNT(*) over maybe millions of rows."""
        number = request.query_params.get(self.page_query_param)
        if number is not None and not re.fullmatch(r"0*[1-9][0-9]*", number):
            raise ValidationError({self.page_query_param: ["A page number: a whole number from 1."]})
        self.known_count = count
        return super().paginate_queryset(queryset, request, view)

    def django_paginator_class(self, object_list, per_page):
        paginator = Paginator(object_list, per_page)
        if self.known_count is not None:
            paginator.count = self.known_count  # a cached_property: this is its value, no query
        return paginator

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
