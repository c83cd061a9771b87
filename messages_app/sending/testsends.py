"""Delivery of test sends (mailings.models.TestSend): each once, now, through the same transport
as the sender, with the outcome written on its row. No retry: the operator sees why and tries again.
"""

import asyncio
import logging

from django.conf import settings
from django.utils import timezone

from mailings.models import TestSend
from ops import metrics

from .transports.base import OutgoingMessage, TransportError, no_answer_within
from .transports.probe import ProbeTransport

log = logging.getLogger(__name__)


def testsends_deliver(*, test_send_ids: list[int]) -> None:
    pending = list(
        TestSend.objects.filter(pk__in=test_send_ids, status=TestSend.Status.PENDING).select_related(
            "mailing", "client"
        )
    )
    outcomes = asyncio.run(_send_all(pending))
    now = timezone.now()
    for send, (status, detail) in zip(pending, outcomes, strict=True):
        # Conditional: a redelivered task never rewrites an outcome already recorded.
        TestSend.objects.filter(pk=send.pk, status=TestSend.Status.PENDING).update(
            status=status, detail=detail[:255], finished_at=now
        )
        log.info(
            "mailing=%s test_send=%s client=%s outcome=%s%s",
            send.mailing_id,
            send.pk,
            send.client_id,
            status,
            f" error={detail!r}" if detail else "",
        )


async def _send_all(sends: list[TestSend]) -> list[tuple[str, str]]:
    transport = ProbeTransport(
        base_url=settings.PROVIDER_URL,
        token=settings.PROVIDER_TOKEN,
        connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
        max_connections=len(sends) or 1,
    )
    async with transport:
        return await asyncio.gather(*(_send_one(transport, send) for send in sends))


async def _send_one(transport: ProbeTransport, send: TestSend) -> tuple[str, str]:
    if send.client is None:
        return TestSend.Status.FAILED, "client was deleted"
    message = OutgoingMessage(send.provider_id, send.client.phone, send.mailing.text)
    try:
        async with asyncio.timeout(settings.PROVIDER_REQUEST_TIMEOUT):
            await transport.send(message)
    except TimeoutError:
        metrics.PROVIDER_ERRORS.labels("timeout").inc()
        return TestSend.Status.FAILED, no_answer_within(settings.PROVIDER_REQUEST_TIMEOUT)
    except TransportError as error:
        return TestSend.Status.FAILED, error.detail
    return TestSend.Status.SENT, ""
