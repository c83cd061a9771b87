from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from .filters import MessageFilter
from .models import Message
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
