"""The sending engine's parts as the settings describe them: for the worker's senders and test sends.

Loads aiohttp: imported by worker processes only, when they start sending or deliver test sends.
"""

import os
import socket
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .sending.clock import Clock
from .sending.django_store import DjangoMessageStore
from .sending.gate import ProviderGate
from .sending.pacing import pacer_for
from .sending.sender import Sender
from .sending.transports.base import Transport
from .sending.transports.kannel import KannelTransport
from .sending.transports.probe import ProbeTransport


def transport_from_settings(*, max_connections: int) -> Transport:
    name = settings.PROVIDER_NAME
    if settings.PROVIDER_KIND == "kannel":
        secret = settings.RECEIPT_SECRETS.get(name)
        if not secret:
            raise ImproperlyConfigured(
                f"PROVIDER_KIND=kannel needs a receipt secret for {name!r} in RECEIPT_SECRETS"
            )
        return KannelTransport(
            name=name,
            sendsms_url=settings.KANNEL_URL,
            username=settings.KANNEL_USERNAME,
            password=settings.KANNEL_PASSWORD,
            sender=settings.KANNEL_FROM,
            smsc=settings.KANNEL_SMSC,
            receipt_base_url=settings.RECEIPT_BASE_URL,
            receipt_secret=secret,
            connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
            max_connections=max_connections,
        )
    return ProbeTransport(
        name=name,
        base_url=settings.PROVIDER_URL,
        token=settings.PROVIDER_TOKEN,
        connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
        max_connections=max_connections,
    )


def gate_from_settings(clock: Clock) -> ProviderGate:
    return ProviderGate(
        breaker_threshold=settings.SENDER_BREAKER_THRESHOLD,
        breaker_pause=settings.SENDER_BREAKER_PAUSE,
        auth_pause=settings.SENDER_AUTH_PAUSE,
        clock=clock.wall,
        pacer=pacer_for(
            initial=settings.SENDER_CONCURRENCY,
            minimum=settings.SENDER_CONCURRENCY_MIN,
            maximum=settings.SENDER_CONCURRENCY_MAX,
            rate=settings.PROVIDER_RATE_LIMIT,
            redis_url=settings.RATE_LIMIT_REDIS_URL,
            file_path=Path(settings.RATE_LIMIT_FILE),
            clock=clock.monotonic,
        ),
    )


def sender_holder() -> str:
    """Names a sender in the leases and slots it holds: host, process, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def sender_from_settings() -> Sender:
    clock = Clock()
    return Sender(
        transport=transport_from_settings(max_connections=settings.SENDER_CONCURRENCY_MAX),
        gate=gate_from_settings(clock),
        store=DjangoMessageStore(holder=sender_holder(), clock=clock),
        clock=clock,
        # The ceiling: the gate's pace decides how much of it is used.
        concurrency=settings.SENDER_CONCURRENCY_MAX,
        end_margin=settings.SENDER_END_MARGIN,
        stop_grace=settings.SENDER_STOP_GRACE,
        request_timeout=settings.PROVIDER_REQUEST_TIMEOUT,
    )
