from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets

from mailing_service.api import Conflict
from mailing_service.schema import VALIDATION_ERROR
from ops.audit import AuditLogMixin

from .filters import ClientFilter
from .models import Client
from .serializers import ClientSerializer

DUPLICATE_PHONE = "A client with this phone already exists."
_DUPLICATE = OpenApiResponse(
    VALIDATION_ERROR, description=f'Another client has this phone: `{{"phone": ["{DUPLICATE_PHONE}"]}}`.'
)


@extend_schema(tags=["clients"])
@extend_schema_view(
    list=extend_schema(summary="List clients"),
    retrieve=extend_schema(summary="Get a client"),
    create=extend_schema(summary="Create a client", responses={201: ClientSerializer, 409: _DUPLICATE}),
    update=extend_schema(summary="Replace a client", responses={200: ClientSerializer, 409: _DUPLICATE}),
    partial_update=extend_schema(
        summary="Change some fields of a client", responses={200: ClientSerializer, 409: _DUPLICATE}
    ),
    destroy=extend_schema(summary="Delete a client; its messages stay, with no client"),
)
class ClientViewSet(AuditLogMixin, viewsets.ModelViewSet):
    """Recipients of mailings. Request bodies with fields not listed here are refused with 400."""

    audit_name = "client"

    queryset = Client.objects.all()
    serializer_class = ClientSerializer
    filterset_class = ClientFilter
    ordering_fields = ["id", "phone", "created_at"]

    def perform_create(self, serializer):
        self._save(serializer)

    def perform_update(self, serializer):
        self._save(serializer)

    @staticmethod
    def _save(serializer):
        # The unique constraint decides, also between two requests racing for one phone.
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:
            phone = serializer.validated_data.get("phone")
            if phone and Client.objects.filter(phone=phone).exists():
                raise Conflict({"phone": [DUPLICATE_PHONE]}) from None
            raise
