from mailing_service.filters import StrictFilterSet

from .models import Client, OptOut


class ClientFilter(StrictFilterSet):
    class Meta:
        model = Client
        fields = ["tag", "operator_code", "timezone"]


class OptOutFilter(StrictFilterSet):
    class Meta:
        model = OptOut
        fields = ["source"]
