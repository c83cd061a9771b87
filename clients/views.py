import shutil
import tempfile

from django.conf import settings
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
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
from ops.idempotency import IdempotentPostMixin

from .filters import ClientFilter, OptOutFilter
from .models import Client, OptOut, phones_masked
from .serializers import (
    ClientBulkSerializer,
    ClientImportReportSerializer,
    ClientImportUploadSerializer,
    ClientSerializer,
    OptOutImportReportSerializer,
    OptOutImportUploadSerializer,
    OptOutSerializer,
    ReconsentSerializer,
    import_body_too_large,
)
from .services import (
    ImportBatchFailed,
    ImportRefused,
    OptOutMissing,
    clients_import,
    clients_upsert,
    optout_add,
    optout_remove,
    optouts_import,
)

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

OPTOUT_CSV_BODY = {"type": "string", "pattern": "^phone(,reason)?\\r?\\n[^\\x00]*$"}
OPTOUT_CSV_FORM = {**CSV_FORM, "properties": {"file": OPTOUT_CSV_BODY}}


SPOOLED_IN_MEMORY = 1024 * 1024  # a CSV body larger than this waits in a temporary file


class CSVParser(BaseParser):
    """A CSV file sent as the request body itself (Content-Type: text/csv), spooled unparsed.

    Its size was checked from Content-Length (BoundedImportMixin), and Django reads no further
    than that (nothing at all without one)."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOLED_IN_MEMORY)  # noqa: SIM115 (freed with the request)
        if stream is not None:
            shutil.copyfileobj(stream, spool)
        return {"file": spool}


class ImportBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "import_too_large"


class ImportWriteFailed(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "import_write_failed"


_BATCH_FAILED = OpenApiResponse(
    DetailSerializer,
    description="Writing a batch failed: that batch was rolled back, earlier ones are written; the "
    "detail names the rows.",
)


def csv_import_action():
    """A CSV import: multipart or the body itself (the API's default parser takes JSON only), at the
    import's own rate. A decorator of its own per action: drf-spectacular keeps each action's schema
    in its decorator's keyword arguments."""
    return action(
        detail=False,
        methods=["post"],
        url_path="import",
        url_name="import",
        parser_classes=[MultiPartParser, CSVParser],
        throttle_scope="client_import",
        filter_backends=[],
        pagination_class=None,
    )


class BoundedImportMixin:
    """Refuses an `import_csv` body over CLIENT_IMPORT_MAX_BYTES from its Content-Length, before
    authentication: a session's CSRF check would read a multipart body whole."""

    def initial(self, request, *args, **kwargs):
        if self.action == "import_csv" and (reason := import_body_too_large(request.META)):
            raise ImportBodyTooLarge(reason)
        super().initial(request, *args, **kwargs)


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
class ClientViewSet(IdempotentPostMixin, BoundedImportMixin, AuditLogMixin, viewsets.ModelViewSet):
    """Recipients of mailings. Request bodies with fields not listed here are refused with 400."""

    audit_name = "client"
    audited_in_services = frozenset({"import_csv", "bulk"})

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
        return _export(self, "clients.csv", fields, header=fields)

    @extend_schema(
        summary="Import clients from CSV",
        description="A CSV file with a header row naming phone and any of operator_code, tag, attr_<name>, "
        "timezone, sent as multipart form data (field `file`) or as the body with Content-Type "
        "text/csv. Each valid row creates or updates the client with that phone, changing only the "
        "columns the file has (empty operator_code: from the phone; empty tag: none; empty timezone: "
        "the stored one, or the default for a new client). Invalid rows are listed with their row "
        "number (the header is row 1) and reasons. A body over CLIENT_IMPORT_MAX_BYTES is refused "
        "before it is read, a file over CLIENT_IMPORT_MAX_ROWS rows before anything is written; "
        "rows are written in batches of CLIENT_IMPORT_BATCH_SIZE, each in one transaction.",
        request={
            "multipart/form-data": CSV_FORM,
            "text/csv": CSV_BODY,
        },
        responses={
            200: ClientImportReportSerializer,
            400: OpenApiResponse(
                description="No file, a malformed file or one with too many rows: `file` errors."
            ),
            413: OpenApiResponse(DetailSerializer, description="A body over CLIENT_IMPORT_MAX_BYTES."),
            503: _BATCH_FAILED,
        },
        filters=False,
    )
    @csv_import_action()
    def import_csv(self, request):
        upload = ClientImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            file = upload.validated_data["file"]
            max_rows = settings.CLIENT_IMPORT_MAX_ROWS
            return self._report(clients_import, file=file, user=request.user, max_rows=max_rows)
        except ImportRefused as error:
            raise ValidationError({"file": [str(error)]}) from error

    @extend_schema(
        summary="Create or update many clients",
        description='`{"clients": [...]}`: up to CLIENT_BULK_MAX_ITEMS objects, each upserted by '
        "phone as an import's row is (only the fields named change; an item's errors are listed by "
        "its position from 1, the valid items are written). One request against the write rate, whatever "
        "the number of items.",
        request=ClientBulkSerializer,
        responses={200: ClientImportReportSerializer, 503: _BATCH_FAILED},
        filters=False,
    )
    @action(detail=False, methods=["post"], url_path="bulk", filter_backends=[], pagination_class=None)
    def bulk(self, request):
        body = ClientBulkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._report(clients_upsert, items=body.validated_data["clients"], user=request.user)

    @staticmethod
    def _report(service, **kwargs) -> Response:
        try:
            report = service(**kwargs)
        except ImportBatchFailed as error:
            raise ImportWriteFailed(str(error)) from error
        return Response(ClientImportReportSerializer(report).data)


def _export(view, filename: str, fields: list[str], *, header: list[str]):
    """The view's filtered rows as a streamed CSV, by id; the phone (the second column) masked for
    users who may not see phones."""
    batches = rows_by_key(view.filter_queryset(view.get_queryset()), fields, key="id")
    if not view.request.user.has_perm(VIEW_PHONE):
        batches = phones_masked(batches, column=1)
    return csv_response(filename=filename, header=header, batches=batches)


@extend_schema(tags=["opt-outs"])
@extend_schema_view(
    list=extend_schema(summary="List the opt-out list (phones masked for viewers)"),
    retrieve=extend_schema(summary="Get an opt-out"),
    create=extend_schema(
        summary="Opt a phone out",
        description="The phone receives nothing from now on: no mailing launched later creates a message "
        "for it, and its pending messages in running mailings end `opted_out` within seconds. 201 with the "
        "new opt-out; 200 with the existing one when the phone is already on the list.",
        responses={201: OptOutSerializer, 200: OptOutSerializer},
    ),
)
class OptOutViewSet(
    IdempotentPostMixin,
    BoundedImportMixin,
    AuditLogMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Phones that must receive nothing. Removing one is a re-consent with a reason (`reconsent`)."""

    audit_name = "optout"
    audited_in_services = frozenset({"create", "reconsent", "import_csv"})
    action_permissions = {"reconsent": "delete"}

    queryset = OptOut.objects.select_related("created_by")
    serializer_class = OptOutSerializer
    filterset_class = OptOutFilter
    throttle_scope = None  # only the import has a rate of its own (client_import's)
    ordering_fields = ["id", "created_at"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        optout, created = optout_add(
            phone=serializer.validated_data["phone"],
            reason=serializer.validated_data.get("reason", ""),
            source=OptOut.Source.API,
            user=request.user,
        )
        return Response(
            self.get_serializer(optout).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        summary="Re-consent: take a phone off the opt-out list",
        description="The phone may receive mailings launched from now on; messages already opted out stay "
        "so. The reason is written to the audit log with who did it.",
        request=ReconsentSerializer,
        responses={204: None, 400: OpenApiResponse(description="No reason: `reason` errors.")},
        filters=False,
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def reconsent(self, request, pk=None):
        optout = self.get_object()
        body = ReconsentSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            optout_remove(phone=optout.phone, reason=body.validated_data["reason"], user=request.user)
        except OptOutMissing as error:  # removed by another request meanwhile
            raise NotFound(str(error)) from error
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Export the opt-out list as CSV",
        description="Every opt-out matching the list's filters, by id, as CSV: id, phone (masked for "
        "viewers), reason, source, created_at, created_by. Streamed.",
        parameters=[NO_FORMAT_PARAMETER],
        responses={(200, "text/csv"): CSV_EXPORT},
    )
    @action(
        detail=False, url_path="export", renderer_classes=[JSONRenderer, CSVRenderer], pagination_class=None
    )
    def export(self, request):
        fields = ["id", "phone", "reason", "source", "created_at", "created_by__username"]
        header = ["id", "phone", "reason", "source", "created_at", "created_by"]
        return _export(self, "opt-outs.csv", fields, header=header)

    @extend_schema(
        summary="Import opt-outs from CSV",
        description="A CSV file with a header row naming phone and optionally reason, as multipart form data "
        "(field `file`) or as the body with Content-Type text/csv. Each valid phone is put on the list "
        "(source `import`); phones already on it keep their opt-out; invalid rows are listed by row number "
        "(the header is row 1). One transaction.",
        request={"multipart/form-data": OPTOUT_CSV_FORM, "text/csv": OPTOUT_CSV_BODY},
        responses={
            200: OptOutImportReportSerializer,
            400: OpenApiResponse(
                description="No file, a file too large, or a malformed file: `file` errors."
            ),
        },
        filters=False,
    )
    @csv_import_action()
    def import_csv(self, request):
        upload = OptOutImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            file = upload.validated_data["file"]
            file.seek(0)  # a spooled body is left at its end
            report = optouts_import(data=file.read(), user=request.user)
        except ImportRefused as error:
            raise ValidationError({"file": [str(error)]}) from error
        return Response(OptOutImportReportSerializer(report).data)
