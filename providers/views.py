from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ops.audit import AuditLogMixin

from .models import Provider
from .selectors import provider_weight_history
from .serializers import ProviderSerializer, ProviderWeightChangeSerializer


@extend_schema(tags=["providers"])
@extend_schema_view(
    list=extend_schema(summary="List SMS providers"),
    retrieve=extend_schema(summary="Get an SMS provider"),
    create=extend_schema(summary="Add an SMS provider"),
    update=extend_schema(summary="Replace an SMS provider"),
    partial_update=extend_schema(summary="Change some fields of an SMS provider"),
    destroy=extend_schema(summary="Delete an SMS provider; its messages keep its name"),
    weights=extend_schema(
        summary="The latest weight changes of every provider, newest first",
        responses=ProviderWeightChangeSerializer(many=True),
    ),
)
class ProviderViewSet(AuditLogMixin, viewsets.ModelViewSet):
    """SMS providers messages go out through (admins only). Workers take a change up within a
    second; without any enabled provider, PROVIDER_URL and PROVIDER_TOKEN serve as `default`."""

    audit_name = "provider"
    queryset = Provider.objects.all()
    serializer_class = ProviderSerializer
    ordering_fields = ["id", "name"]

    @action(detail=False, methods=["get"], pagination_class=None)
    def weights(self, request):
        return Response(ProviderWeightChangeSerializer(provider_weight_history(), many=True).data)
