"""The sending engine's parts as the settings describe them: for the worker's senders and test sends.

Loads aiohttp: imported by worker processes only, when they start sending or deliver test sends.
"""

import os
import socket
import uuid
from pathlib import Path

from django.conf import settings

from .sending.clock import Clock
from .sending.django_store import DjangoMessageStore
from .sending.gate import ProviderGate
from .sending.pacing import pacer_for
from .sending.sender import Sender
from .sending.transports.probe import ProbeTransport


def transport_from_settings(*, max_connections: int) -> ProbeTransport:
    return ProbeTransport(
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
        max_attempts=settings.SENDER_MAX_ATTEMPTS,
    )
