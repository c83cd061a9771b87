from mailing_service.filters import StrictFilterSet

from .models import Client


class ClientFilter(StrictFilterSet):
    class Meta:
        model = Client
        fields = ["tag", "operator_code", "timezone"]
