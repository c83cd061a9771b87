from django.conf import settings
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from accounts.roles import VIEW_PHONE
from mailing_service.api import Conflict, DetailSerializer
from mailing_service.exports import (
    CSV_EXPORT,
    NO_FORMAT_PARAMETER,
    CSVRenderer,
    csv_response,
    rows_by_key,
)
from mailing_service.schema import VALIDATION_ERROR
from ops.audit import AuditLogMixin

from .filters import ClientFilter
from .models import Client, phones_masked
from .serializers import (
    ClientImportReportSerializer,
    ClientImportUploadSerializer,
    ClientSerializer,
    csv_too_large,
)
from .services import ImportBatchFailed, MalformedCSV, clients_import

DUPLICATE_PHONE = "A client with this phone already exists."
_DUPLICATE = OpenApiResponse(
    VALIDATION_ERROR, description=f'Another client has this phone: `{{"phone": ["{DUPLICATE_PHONE}"]}}`.'
)

# The canonical header first (any order is taken; the schema shows this one) and no NUL, which the
# csv module cannot read: the rest is checked row by row, a bad row reported, not refused.
CSV_BODY = {"type": "string", "pattern": "^phone,operator_code,tag,timezone\\r?\\n[^\\x00]*$"}
# A file part or a text part (CSVFileField takes both): the schema says its content, not just bytes.
CSV_FORM = {
    "type": "object",
    "properties": {"file": CSV_BODY},
    "required": ["file"],
    "additionalProperties": False,
}


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
    audited_in_services = frozenset({"import_csv"})

    queryset = Client.objects.all()
    serializer_class = ClientSerializer
    filterset_class = ClientFilter
    throttle_scope = None  # only the import has a rate of its own (client_import)
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

    @extend_schema(
        summary="Export clients as CSV",
        description="Every client matching the list's filters, by id, as CSV: id, phone (masked for "
        "viewers), operator_code, tag, timezone, attributes (a JSON object), created_at. Streamed.",
        parameters=[NO_FORMAT_PARAMETER],
        responses={(200, "text/csv"): CSV_EXPORT},
    )
    @action(
        detail=False, url_path="export", renderer_classes=[JSONRenderer, CSVRenderer], pagination_class=None
    )
    def export(self, request):
        fields = ["id", "phone", "operator_code", "tag", "timezone", "attributes", "created_at"]
        batches = rows_by_key(self.filter_queryset(self.get_queryset()), fields, key="id")
        if not request.user.has_perm(VIEW_PHONE):
            batches = phones_masked(batches, column=1)
        return csv_response(filename="clients.csv", header=fields, batches=batches)

    @extend_schema(
        summary="Import clients from CSV",
        description="A CSV file with a header row naming phone, operator_code, tag, timezone (phone "
        "required; empty operator_code: from the phone; empty timezone: the default), sent as "
        "multipart form data (field `file`) or as the body with Content-Type text/csv. Valid rows "
        "create or update the client with that phone; invalid rows are listed with their row number "
        "(the header is row 1) and reasons. The whole file is checked before anything is written; "
        "rows are then written in batches of CLIENT_IMPORT_BATCH_SIZE, each in one transaction.",
        request={
            "multipart/form-data": CSV_FORM,
            "text/csv": CSV_BODY,
        },
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
        # Its own parsers: the API's default takes JSON only.
        parser_classes=[MultiPartParser, CSVParser],
        throttle_scope="client_import",
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
