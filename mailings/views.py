from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as APIValidationError
from rest_framework.response import Response

from mailing_service.api import Conflict, DetailSerializer
from messages_app.filters import MessageStatusFilter
from messages_app.models import MessageStatus
from messages_app.serializers import MessageSerializer
from ops.audit import AuditLogMixin

from .filters import MailingFilter
from .models import Mailing
from .selectors import attach_message_counts
from .serializers import MailingSerializer, MailingStatisticsDetailSerializer, MailingStatisticsSerializer
from .services import MailingLaunchedError, mailing_update

_LAUNCHED = OpenApiResponse(
    DetailSerializer,
    description="The mailing is launched and the change touches text, filter_operator_code, "
    "filter_tag or start_at, which its messages were made from. Only end_at can still change.",
)


@extend_schema(tags=["mailings"])
@extend_schema_view(
    list=extend_schema(summary="List mailings"),
    retrieve=extend_schema(summary="Get a mailing"),
    create=extend_schema(
        summary="Create a mailing",
        description="A mailing whose window contains the present moment starts at once; a later one "
        "starts at start_at. With an empty filter it goes to every client.",
    ),
    update=extend_schema(summary="Replace a mailing", responses={200: MailingSerializer, 409: _LAUNCHED}),
    partial_update=extend_schema(
        summary="Change some fields of a mailing", responses={200: MailingSerializer, 409: _LAUNCHED}
    ),
    destroy=extend_schema(summary="Delete a mailing and its messages"),
)
class MailingViewSet(AuditLogMixin, viewsets.ModelViewSet):
    """SMS campaigns: a text sent between start_at and end_at to the clients matching a filter.

    Request bodies with fields not listed here are refused with 400 naming them.
    """

    audit_name = "mailing"

    queryset = Mailing.objects.all()
    serializer_class = MailingSerializer
    filterset_class = MailingFilter
    ordering_fields = ["id", "start_at", "end_at"]

    def get_serializer_class(self):
        if self.action in ("statistics", "statistics_detail"):
            return MailingStatisticsSerializer
        return super().get_serializer_class()

    def perform_update(self, serializer):
        try:
            serializer.instance = mailing_update(mailing=serializer.instance, data=serializer.validated_data)
        except MailingLaunchedError as exc:
            raise Conflict(str(exc)) from exc
        except Mailing.DoesNotExist as exc:
            raise NotFound() from exc

    @extend_schema(
        summary="Message counts of every mailing",
        tags=["statistics"],
        description="Each mailing with its messages counted by status (every status present, 0 when "
        "none) and in total. Takes the same filters and ordering as the mailing list.",
        responses=MailingStatisticsSerializer(many=True),
    )
    @action(detail=False, url_path="statistics")
    def statistics(self, request):
        # The same plain mailings as the list, paginated first; then one grouped query counts the
        # messages of this page only (see mailings.selectors).
        mailings = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(mailings)
        if page is None:  # pagination switched off: every mailing, still one counting query
            return Response(self.get_serializer(attach_message_counts(mailings), many=True).data)
        data = self.get_serializer(attach_message_counts(page), many=True).data
        return self.get_paginated_response(data)

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
            OpenApiParameter("page", OpenApiTypes.INT, description="Page of messages."),
        ],
        responses=MailingStatisticsDetailSerializer,
        filters=False,
    )
    @action(detail=True, url_path="statistics", filter_backends=[])
    def statistics_detail(self, request, pk=None):
        mailing = self.get_object()
        attach_message_counts([mailing])
        messages = MessageStatusFilter(request.query_params, queryset=mailing.messages.all())
        if not messages.is_valid():
            raise APIValidationError(messages.errors)
        page = self.paginate_queryset(messages.qs)
        data = self.get_serializer(mailing).data
        data["messages"] = self.get_paginated_response(MessageSerializer(page, many=True).data).data
        return Response(data)
