import logging
import time

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from accounts.roles import VIEW_PHONE
from clients.services import optout_from_provider
from mailing_service.exports import csv_response

from . import receipts
from .filters import MessageFilter
from .models import Message
from .selectors import MESSAGE_EXPORT_HEADER, message_counts_by_mailing, message_export_batches
from .sending.receipts import (
    QUEUE_DOWN,
    REPLIES,
    asks_to_stop,
    receipt_answer,
    replying_phone,
    signed,
)
from .serializers import MessageSerializer

log = logging.getLogger(__name__)

REPLY_KEPT = 160  # characters of a STOP reply kept as the opt-out's reason


def mailing_messages_csv(*, mailing_id: int, user) -> StreamingHttpResponse:
    """A mailing's messages as CSV (the API's and the console's export): phones masked unless the
    user may see them."""
    batches = message_export_batches(mailing_id=mailing_id, phones_in_clear=user.has_perm(VIEW_PHONE))
    return csv_response(
        filename=f"mailing-{mailing_id}-messages.csv", header=MESSAGE_EXPORT_HEADER, batches=batches
    )


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
        # statistics page, instead of a COUNT(*) over maybe millions of rows. The filter backend
        # has already refused invalid parameters: this only reads them.
        filters = self.filterset_class(self.request.query_params, queryset=queryset)
        filters.is_valid()
        mailing_id, client_id, status = (
            filters.form.cleaned_data.get(name) for name in ("mailing", "client", "status")
        )
        if mailing_id is None or client_id is not None:
            return super().paginate_queryset(queryset)
        count = message_counts_by_mailing([mailing_id])[mailing_id][status or "total"]
        return self.paginator.paginate_queryset(queryset, self.request, view=self, count=count)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def receipt(request: HttpRequest, provider: str) -> JsonResponse:
    """A provider's delivery receipt (Kannel's dlr-url: GET, or a form POST), taken for the receipt
    writer; `sending.receipts.receipt_answer` says what is answered."""
    params = request.GET.copy()
    params.update(request.POST)
    answer = receipt_answer(
        params, provider=provider, secret=receipts.receipt_secret(provider), received_at=time.time()
    )
    receipts.receipt_answered(answer, provider)
    if answer.receipt is not None:
        try:
            receipts.receipts_take([answer.receipt])
        except receipts.QUEUE_ERRORS as error:
            receipts.receipt_deferred(provider, error)
            return JsonResponse(QUEUE_DOWN, status=503)
    return JsonResponse(answer.body, status=answer.status)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def reply(request: HttpRequest, provider: str) -> HttpResponse:
    """A subscriber's reply a provider forwards (Kannel's sms-service get-url, `reply_url`): one that
    asks to stop puts its sender on the opt-out list, source `provider`. 200 with an empty body (an
    answer Kannel would send back as an SMS), 400 naming the bad fields, 403 for a signature that
    does not match, 404 for a provider without a secret."""
    secret = receipts.receipt_secret(provider)
    if secret is None:
        return JsonResponse({"detail": f"provider {provider!r} takes no replies"}, status=404)
    params = request.GET.copy()
    params.update(request.POST)
    if not signed(secret, provider, REPLIES, params.get("sig", "")):
        log.warning("reply for provider %s refused: bad signature", provider)
        return JsonResponse({"detail": "the signature does not match"}, status=403)
    if missing := [name for name in ("from", "text") if name not in params]:
        return JsonResponse({name: ["This field is required."] for name in missing}, status=400)
    if asks_to_stop(params["text"]):
        try:
            optout_from_provider(
                phone=replying_phone(params["from"]), provider=provider, text=params["text"][:REPLY_KEPT]
            )
        except ValidationError as error:
            return JsonResponse({"from": error.messages}, status=400)
    return HttpResponse(status=200)
