from django.conf import settings
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.response import Response

from mailing_service.api import DetailSerializer
from ops.audit import AuditLogMixin

from .filters import ClientFilter
from .models import Client
from .serializers import (
    ClientImportReportSerializer,
    ClientImportUploadSerializer,
    ClientSerializer,
    csv_too_large,
)
from .services import ImportBatchFailed, MalformedCSV, clients_import

DUPLICATE_PHONE = "A client with this phone already exists."


class CSVParser(BaseParser):
    """A CSV file sent as the request body itself (Content-Type: text/csv): its bytes, unparsed."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.CLIENT_IMPORT_MAX_BYTES
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise ValidationError({"file": [csv_too_large()]})
        return {"file": data}


class ImportWriteFailed(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "import_write_failed"


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

    @extend_schema(
        summary="Import clients from CSV",
        description="A CSV file with a header row naming phone, operator_code, tag, timezone (phone "
        "required; empty operator_code: from the phone; empty timezone: the default), sent as "
        "multipart form data (field `file`) or as the body with Content-Type text/csv. Valid rows "
        "create or update the client with that phone; invalid rows are listed with their row number "
        "(the header is row 1) and reasons. The whole file is checked before anything is written; "
        "rows are then written in batches of CLIENT_IMPORT_BATCH_SIZE, each in one transaction.",
        request={"multipart/form-data": ClientImportUploadSerializer, "text/csv": {"type": "string"}},
        responses={
            200: ClientImportReportSerializer,
            400: OpenApiResponse(
                description="No file, a file too large, or a malformed file: `file` errors."
            ),
            503: OpenApiResponse(
                DetailSerializer,
                description="Writing a batch failed: that batch was rolled back, earlier ones are "
                "written; the detail names the rows.",
            ),
        },
        filters=False,
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        url_name="import",
        parser_classes=[MultiPartParser, CSVParser],
        filter_backends=[],
        pagination_class=None,
    )
    def import_csv(self, request):
        upload = ClientImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            report = clients_import(data=upload.validated_data["file"], user=request.user)
        except MalformedCSV as error:
            raise ValidationError({"file": [str(error)]}) from error
        except ImportBatchFailed as error:
            raise ImportWriteFailed(str(error)) from error
        return Response(ClientImportReportSerializer(report).data)
