from django.db import IntegrityError, transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError

from ops.audit import AuditLogMixin

from .filters import ClientFilter
from .models import Client
from .serializers import ClientSerializer

DUPLICATE_PHONE = "A client with this phone already exists."


@extend_schema(tags=["clients"])
@extend_schema_view(
    list=extend_schema(summary="List clients"),
    retrieve=extend_schema(summary="Get a client"),
    create=extend_schema(summary="Create a client"),
    update=extend_schema(summary="Replace a client"),
    partial_update=extend_schema(summary="Change some fields of a client"),
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
        # The serializer checks uniqueness first; this covers two requests racing for one phone.
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:
            phone = serializer.validated_data.get("phone")
            if phone and Client.objects.filter(phone=phone).exists():
                raise ValidationError({"phone": [DUPLICATE_PHONE]}) from None
            raise
