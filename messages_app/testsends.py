"""Delivery of test sends (mailings.models.TestSend): each once, now, through the same routing,
transports, gates and classification (`sending.outcomes.fate_of`) as the sender, with the outcome
written on its row. Each provider's gate holds them to its shared pause and shared rate limit. No
retry: the operator sees why and tries again.
"""

import asyncio
import logging

from django.conf import settings

from mailings.models import TestSend
from ops import metrics

from . import services
from .senders import NoProvider, providers_from_settings
from .sending import outcomes
from .sending.clock import Clock
from .sending.cutoffs import Cut
from .sending.outcomes import Fate, Outcome, fate_of
from .sending.routing import NoRoute, Providers
from .sending.transports.base import OutgoingMessage

log = logging.getLogger(__name__)


def testsends_deliver(*, test_send_ids: list[int]) -> None:
    pending = list(
        TestSend.objects.filter(pk__in=test_send_ids, status=TestSend.Status.PENDING).select_related(
            "mailing", "client"
        )
    )
    clock = Clock()
    try:
        providers = providers_from_settings(clock, max_connections=len(pending) or 1)
    except NoProvider as error:
        fates = [outcomes.unroutable(str(error))] * len(pending)
    else:
        providers.observe_pauses(
            {name: until.timestamp() for name, until in services.provider_pauses(now=clock.now()).items()}
        )
        fates = asyncio.run(_send_all(pending, providers=providers, clock=clock))
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


async def _send_all(sends: list[TestSend], *, providers: Providers, clock: Clock) -> list[Fate]:
    try:
        async with providers:
            return await asyncio.gather(*(_send_one(providers, clock, send) for send in sends))
    finally:
        await providers.aclose()


async def _send_one(providers: Providers, clock: Clock, send: TestSend) -> Fate:
    if send.client is None:
        return outcomes.CLIENT_DELETED
    try:
        route = providers.choose(send.client.operator_code)
    except NoRoute as error:
        return outcomes.unroutable(str(error))
    if route is None:
        return outcomes.PAUSED
    gate, transport = route.gate, route.transport
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
