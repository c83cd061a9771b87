from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as APIValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from clients.models import Client
from mailing_service.api import Conflict, DetailSerializer
from mailing_service.exports import CSV_EXPORT, NO_FORMAT_PARAMETER, CSVRenderer
from mailing_service.schema import VALIDATION_ERROR
from messages_app.filters import MessageStatusFilter
from messages_app.models import MessageStatus
from messages_app.selectors import (
    PROGRESS_RATE_WINDOW,
    attach_message_counts,
    mailing_progress,
    message_totals,
    receipt_figures_by_mailing,
)
from messages_app.serializers import MessageSerializer
from messages_app.services import MailingHistoryError, mailing_cancel, mailing_delete
from messages_app.views import mailing_messages_csv
from ops.audit import AuditLogMixin
from ops.idempotency import IdempotentPostMixin

from .filters import MailingFilter
from .models import Mailing
from .segments import sms_segments
from .selectors import audience_preview
from .serializers import (
    AudienceQuerySerializer,
    AudienceSerializer,
    MailingDeleteQuerySerializer,
    MailingSerializer,
    MailingStatisticsDetailSerializer,
    MailingStatisticsSerializer,
    MessageTotalsSerializer,
    ProgressSerializer,
    ReceiptsSerializer,
    ResendSerializer,
    SegmentsDraftSerializer,
    SegmentsSerializer,
    TestSendRequestSerializer,
    TestSendSerializer,
)
from .services import (
    END_MIN_LEAD,
    MailingEndTooSoonError,
    MailingLaunchedError,
    MailingNothingToResendError,
    MailingStateError,
    MailingWindowPassedError,
    mailing_launch_draft,
    mailing_pause,
    mailing_resend,
    mailing_resume,
    mailing_test_send,
    mailing_update,
)

_CONFLICT = OpenApiResponse(
    VALIDATION_ERROR,
    description="The mailing is launched and the change touches text, filter_operator_code, "
    "filter_tag or start_at, which its messages were made from (only end_at can still change): "
    '`{"detail": ...}`; or the one of start_at and end_at sent would not be in order with the '
    'stored other one: `{"start_at": [...]}`.',
)


_END_EARLIER = (
    f"A running or paused mailing's end_at may move earlier only to a moment at least "
    f"{END_MIN_LEAD.total_seconds():.0f} s ahead: an earlier one, the past included, is a 400 naming "
    "end_at. To stop a mailing now, cancel it."
)

_WRONG_STATE = OpenApiResponse(
    DetailSerializer, description="The action makes no sense in the mailing's state, which the detail names."
)


def _state_action(summary: str, description: str):
    return extend_schema(
        summary=summary,
        description=description,
        request=None,
        responses={200: MailingSerializer, 404: OpenApiResponse(DetailSerializer), 409: _WRONG_STATE},
        filters=False,
    )


class MailingTestSendActions:
    """A mailing's test sends: its text tried on a few clients now, and the list of those tries."""

    @property
    def throttle_scope(self):
        """Test sends cost money and reach real phones: TEST_SEND_RATE per user (settings' scope
        test_send). The POST only: listing them (GET, test_sends) is free."""
        return "test_send" if self.action == "test_send" else None

    @extend_schema(
        summary="Try the text on a few clients",
        description="Queues the mailing's text for each client given (any state, outside the "
        "mailing's messages and statistics) and answers at once, 202 with one pending test send per "
        "client; a worker sends them now and records each outcome (GET this path for them). "
        "Throttled per user (TEST_SEND_RATE): 429 beyond it.",
        request=TestSendRequestSerializer,
        responses={
            202: TestSendSerializer(many=True),
            400: OpenApiResponse(description="Field errors: no ids, too many, or unknown clients."),
            404: OpenApiResponse(DetailSerializer),
            429: OpenApiResponse(DetailSerializer, description="Too many test sends; retry later."),
        },
        filters=False,
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="test",
        url_name="test",
        filter_backends=[],
    )
    def test_send(self, request, pk=None):
        mailing = self.get_object()
        body = TestSendRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            sends = mailing_test_send(mailing=mailing, user=request.user, **body.validated_data)
        except Client.DoesNotExist as exc:
            raise APIValidationError({"client_ids": [str(exc)]}) from exc
        return Response(TestSendSerializer(sends, many=True).data, status=202)

    @extend_schema(
        summary="Test sends of a mailing",
        description="Every test send of this mailing, newest first, with its outcome.",
        responses={200: TestSendSerializer(many=True), 404: OpenApiResponse(DetailSerializer)},
        filters=False,
    )
    @test_send.mapping.get
    def test_sends(self, request, pk=None):
        mailing = self.get_object()
        page = self.paginate_queryset(mailing.test_sends.all())
        return self.get_paginated_response(TestSendSerializer(page, many=True).data)


class MailingStatisticsActions:
    """Message counts: of every mailing, across mailings, and of one mailing with its messages."""

    def get_serializer_class(self):
        if self.action in ("statistics", "statistics_detail", "statistics_totals"):
            return MailingStatisticsSerializer
        return super().get_serializer_class()

    @extend_schema(
        summary="Message counts of every mailing",
        tags=["statistics"],
        description="Each mailing with its messages counted by status (every status present, 0 when "
        "none) and in total. Takes the same filters and ordering as the mailing list.",
        responses=MailingStatisticsSerializer(many=True),
    )
    @action(detail=False, url_path="statistics")
    def statistics(self, request):
        # The same plain mailings as the list, paginated first; then one grouped query sums the
        # message tallies of this page only (see messages_app.selectors).
        mailings = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(mailings)
        if page is None:  # pagination switched off: every mailing, still one summing query
            return Response(self.get_serializer(attach_message_counts(mailings), many=True).data)
        data = self.get_serializer(attach_message_counts(page), many=True).data
        return self.get_paginated_response(data)

    @extend_schema(
        summary="Message totals across mailings",
        tags=["statistics"],
        description="The messages of every mailing matching the filters (the mailing list's: state, "
        "period through start_at_after / start_at_before, tag, operator code, launched), counted by "
        "status and in total.",
        responses=MessageTotalsSerializer,
    )
    @action(detail=False, url_path="statistics/totals", pagination_class=None)
    def statistics_totals(self, request):
        mailings = self.filter_queryset(self.get_queryset())
        return Response(MessageTotalsSerializer({"message_counts": message_totals(mailings)}).data)

    @extend_schema(
        summary="Statistics of one mailing",
        tags=["statistics"],
        description="The mailing, its messages counted by status and in total, and one page of its "
        "messages, which ?status= filters.",
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                enum=MessageStatus.values,
                description="Messages in this status only.",
            ),
            OpenApiParameter("page", {"type": "integer", "minimum": 1}, description="Page of messages."),
        ],
        responses=MailingStatisticsDetailSerializer,
        filters=False,
    )
    @action(detail=True, url_path="statistics", filter_backends=[])
    def statistics_detail(self, request, pk=None):
        mailing = self.get_object()
        now = timezone.now()
        attach_message_counts([mailing], sent_since=now - PROGRESS_RATE_WINDOW)
        messages = MessageStatusFilter(request.query_params, queryset=mailing.messages.all())
        if not messages.is_valid():
            raise APIValidationError(messages.errors)
        # The counts just read give the page count: no COUNT(*) over the mailing's messages.
        listed = mailing.message_counts[messages.form.cleaned_data.get("status") or "total"]
        page = self.paginator.paginate_queryset(messages.qs, request, view=self, count=listed)
        data = self.get_serializer(mailing).data
        data["progress"] = ProgressSerializer(mailing_progress(mailing, now=now)).data
        receipts = receipt_figures_by_mailing([mailing.pk], now=now).get(mailing.pk)
        data["receipts"] = ReceiptsSerializer(receipts).data if receipts else None
        data["messages"] = self.get_paginated_response(MessageSerializer(page, many=True).data).data
        return Response(data)

    @extend_schema(
        summary="A mailing's messages as CSV",
        tags=["statistics"],
        description="Every message of the mailing, by client (deleted clients' last): message_id, "
        "client_id, phone (masked for viewers; empty when the client was deleted), status, attempts, "
        "last_error, created_at, sent_at. Streamed in batches, whatever the mailing's size.",
        parameters=[NO_FORMAT_PARAMETER],
        responses={(200, "text/csv"): CSV_EXPORT, 404: OpenApiResponse(DetailSerializer)},
        filters=False,
    )
    @action(
        detail=True,
        url_path="export",
        filter_backends=[],
        pagination_class=None,
        renderer_classes=[JSONRenderer, CSVRenderer],
    )
    def export(self, request, pk=None):
        mailing = self.get_object()
        return mailing_messages_csv(mailing_id=mailing.pk, user=request.user)


@extend_schema(tags=["mailings"])
@extend_schema_view(
    list=extend_schema(summary="List mailings"),
    retrieve=extend_schema(summary="Get a mailing"),
    create=extend_schema(
        summary="Create a mailing",
        description="A mailing whose window contains the present moment starts at once; a later one "
        "starts at start_at. With an empty filter it goes to every client.",
    ),
    update=extend_schema(
        summary="Replace a mailing",
        description=_END_EARLIER,
        responses={200: MailingSerializer, 409: _CONFLICT},
    ),
    partial_update=extend_schema(
        summary="Change some fields of a mailing",
        description=_END_EARLIER,
        responses={200: MailingSerializer, 409: _CONFLICT},
    ),
    destroy=extend_schema(
        summary="Delete a mailing",
        description="A mailing never launched can always be deleted. A launched one only once finished "
        "or cancelled (409 otherwise: cancel it first), and only with ?with_history=true, since its "
        "messages are deleted with it (409 without).",
        parameters=[
            OpenApiParameter(
                "with_history",
                OpenApiTypes.BOOL,
                description="Delete the mailing's messages with it; needed once it has any.",
            )
        ],
        responses={
            204: None,
            400: OpenApiResponse(DetailSerializer, description="with_history is not a boolean."),
            404: OpenApiResponse(DetailSerializer),
            409: _WRONG_STATE,
        },
        filters=False,
    ),
)
class MailingViewSet(
    IdempotentPostMixin,
    MailingTestSendActions,
    MailingStatisticsActions,
    AuditLogMixin,
    viewsets.ModelViewSet,
):
    """SMS campaigns: a text sent between start_at and end_at to the clients matching a filter.

    Request bodies with fields not listed here are refused with 400 naming them.
    """

    audit_name = "mailing"
    audited_in_services = frozenset({"destroy", "launch", "pause", "resume", "cancel", "resend", "test_send"})

    queryset = Mailing.objects.with_unsent()  # its `state` needs to know, in the same query
    serializer_class = MailingSerializer
    filterset_class = MailingFilter
    ordering_fields = ["id", "start_at", "end_at"]

    # Beyond the method's rule (accounts.permissions): the state actions and a test send change the
    # mailing (as in the admin console); counting a draft's segments only reads.
    action_permissions = {
        "launch": "change",
        "pause": "change",
        "resume": "change",
        "cancel": "change",
        "test_send": "change",
        "segments": "view",
    }

    def perform_update(self, serializer):
        try:
            serializer.instance = mailing_update(mailing=serializer.instance, data=serializer.validated_data)
        except MailingLaunchedError as exc:
            raise Conflict(str(exc)) from exc
        except MailingEndTooSoonError as exc:
            raise APIValidationError({"end_at": [str(exc)]}) from exc
        except Mailing.DoesNotExist as exc:
            raise NotFound() from exc

    def perform_destroy(self, instance):
        query = MailingDeleteQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        try:
            mailing_delete(mailing=instance, user=self.request.user, **query.validated_data)
        except (MailingStateError, MailingHistoryError) as exc:
            raise Conflict(str(exc)) from exc

    def _act(self, service) -> Response:
        try:
            mailing = service(mailing=self.get_object(), user=self.request.user)
        except (MailingStateError, MailingWindowPassedError) as exc:
            raise Conflict(str(exc)) from exc
        return Response(self.get_serializer(mailing).data)

    @_state_action(
        "Launch a draft",
        "The draft becomes an ordinary mailing: it starts at once when its window holds the present, "
        "at start_at when later. 409 unless a draft, or when its end_at has passed (move the window "
        "first).",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def launch(self, request, pk=None):
        return self._act(mailing_launch_draft)

    @_state_action(
        "Pause a mailing",
        "Scheduled or running: no new request starts within about 2 s on any worker; unsent messages "
        "stay pending. 409 in any other state.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def pause(self, request, pk=None):
        return self._act(mailing_pause)

    @_state_action(
        "Resume a paused mailing",
        "Sending continues where it stopped, never after end_at. 409 unless paused (a paused mailing "
        "whose end has passed is finished).",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def resume(self, request, pk=None):
        return self._act(mailing_resume)

    @_state_action(
        "Cancel a mailing",
        'Final: unsent messages expire with last_error "mailing cancelled"; it never sends again. '
        "409 when already finished or cancelled.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request, pk=None):
        return self._act(mailing_cancel)

    @extend_schema(
        summary="Send again what failed or expired",
        description="Creates a new mailing, in the window given, to the clients whose messages of this "
        "one failed or expired; same text unless another is given. 409 unless this mailing is finished "
        "or cancelled, or when none of its messages failed or expired.",
        request=ResendSerializer,
        responses={
            201: MailingSerializer,
            400: OpenApiResponse(description="Field errors."),
            404: OpenApiResponse(DetailSerializer),
            409: _WRONG_STATE,
        },
        filters=False,
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def resend(self, request, pk=None):
        mailing = self.get_object()
        window = ResendSerializer(data=request.data)
        window.is_valid(raise_exception=True)
        try:
            resend = mailing_resend(mailing=mailing, user=request.user, **window.validated_data)
        except (MailingStateError, MailingNothingToResendError) as exc:
            raise Conflict(str(exc)) from exc
        return Response(MailingSerializer(resend).data, status=201)

    @extend_schema(
        summary="Clients a filter reaches",
        description="The number of clients matching these filter fields now, and a few of them, "
        "before a mailing is created with the filter. List values repeat the parameter or are "
        "comma-separated: ?filter_tags=vip,new&filter_operator_codes=916.",
        parameters=[AudienceQuerySerializer],
        responses={200: AudienceSerializer, 400: OpenApiResponse(description="Field errors.")},
        filters=False,
    )
    @action(detail=False, filter_backends=[], pagination_class=None)
    def audience(self, request):
        query = AudienceQuerySerializer.from_query(request.query_params)
        query.is_valid(raise_exception=True)
        preview = audience_preview(**query.merged(), template=query.template)
        return Response(AudienceSerializer(preview).data)

    @extend_schema(
        summary="SMS segments of a draft text",
        description="The encoding and the number of segments a text would be sent as, before a "
        "mailing is created with it.",
        request=SegmentsDraftSerializer,
        responses={200: SegmentsSerializer, 400: OpenApiResponse(description="Field errors.")},
        filters=False,
    )
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None)
    def segments(self, request):
        draft = SegmentsDraftSerializer(data=request.data)
        draft.is_valid(raise_exception=True)
        return Response(SegmentsSerializer(sms_segments(draft.validated_data["text"])).data)
