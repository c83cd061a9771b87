from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from .filters import MessageFilter
from .models import Message
from .selectors import message_count
from .serializers import MessageSerializer


@extend_schema(tags=["messages"])
@extend_schema_view(
    list=extend_schema(summary="List messages"),
    retrieve=extend_schema(summary="Get a message"),
)
class MessageViewSet(viewsets.ReadOnlyModelViewSet):
    """Messages are made by launched mailings and changed by the sender only: read-only here."""

    queryset = Message.objects.all()
    serializer_class = MessageSerializer
    filterset_class = MessageFilter
    ordering_fields = ["id", "created_at", "sent_at"]

    def paginate_queryset(self, queryset):
        # One mailing's messages (in one status): the page count comes from its tallies, as on its
        # statistics page, instead of a COUNT(*) over maybe millions of rows.
        filters = self.filterset_class(self.request.query_params, queryset=queryset)
        chosen = filters.form.cleaned_data if filters.is_valid() else {}
        if self.action == "list" and chosen.get("mailing") is not None and chosen.get("client") is None:
            count = message_count(mailing_id=chosen["mailing"], status=chosen.get("status"))
            return self.paginator.paginate_queryset(queryset, self.request, view=self, count=count)
        return super().paginate_queryset(queryset)
