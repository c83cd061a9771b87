"""Delivery of test sends (mailings.models.TestSend): each once, now, through the same transport,
gate and classification (`sending.outcomes.fate_of`) as the sender, with the outcome written on its
row. The gate holds them to the shared pause and the shared rate limit. No retry: the operator sees
why and tries again.
"""

import asyncio
import logging

from django.conf import settings

from mailings.models import TestSend
from ops import metrics

from . import services
from .senders import gate_from_settings, transport_from_settings
from .sending import outcomes
from .sending.clock import Clock
from .sending.cutoffs import Cut
from .sending.gate import ProviderGate
from .sending.outcomes import Fate, Outcome, fate_of
from .sending.transports.base import OutgoingMessage, Transport

log = logging.getLogger(__name__)


def testsends_deliver(*, test_send_ids: list[int]) -> None:
    pending = list(
        TestSend.objects.filter(pk__in=test_send_ids, status=TestSend.Status.PENDING).select_related(
            "mailing", "client"
        )
    )
    clock = Clock()
    gate = gate_from_settings(clock)
    paused_until = services.provider_paused_until(now=clock.now())
    gate.observe_shared_pause(paused_until.timestamp() if paused_until else None)
    fates = asyncio.run(_send_all(pending, gate=gate, clock=clock))
    now = clock.now()
    for send, fate in zip(pending, fates, strict=True):
        status = TestSend.Status.SENT if fate.outcome is Outcome.SENT else TestSend.Status.FAILED
        # Conditional: a redelivered task never rewrites an outcome already recorded.
        TestSend.objects.filter(pk=send.pk, status=TestSend.Status.PENDING).update(
            status=status, detail=fate.detail[:255], finished_at=now
        )
        log.info(
            "mailing=%s test_send=%s client=%s outcome=%s%s",
            send.mailing_id,
            send.pk,
            send.client_id,
            status,
            f" error={fate.detail!r}" if fate.detail else "",
        )


async def _send_all(sends: list[TestSend], *, gate: ProviderGate, clock: Clock) -> list[Fate]:
    try:
        async with transport_from_settings(max_connections=len(sends) or 1) as transport:
            return await asyncio.gather(*(_send_one(transport, gate, clock, send) for send in sends))
    finally:
        await gate.aclose()


async def _send_one(transport: Transport, gate: ProviderGate, clock: Clock, send: TestSend) -> Fate:
    if send.client is None:
        return outcomes.CLIENT_DELETED
    if not await gate.acquire():
        return outcomes.PAUSED
    timeout = settings.PROVIDER_REQUEST_TIMEOUT
    text = send.mailing.template.render(send.client.attributes)
    started = clock.monotonic()
    try:
        async with asyncio.timeout(timeout):
            await transport.send(OutgoingMessage(send.provider_id, send.client.phone, text))
    except TimeoutError:
        metrics.PROVIDER_ERRORS.labels("timeout").inc()
        fate = fate_of(Cut.TIMEOUT, request_timeout=timeout)
    except Exception as error:
        fate = fate_of(error, request_timeout=timeout)
    else:
        fate = fate_of(None, request_timeout=timeout)
    gate.record(fate.answer, clock.monotonic() - started, retry_after=fate.retry_after)
    return fate
