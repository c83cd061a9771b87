"""The sending engine's parts as the settings and the providers' rows describe them: for the
worker's senders and test sends.

Loads aiohttp: imported by worker processes only, when they start sending or deliver test sends.
"""

import logging
import os
import socket
import uuid
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from providers.models import SETTINGS_PROVIDER, Provider, TransportKind
from providers.selectors import providers_enabled

from .receipts import receipt_secret
from .sending.clock import Clock
from .sending.django_store import DjangoMessageStore
from .sending.gate import ProviderGate
from .sending.pacing import RATE_LIMIT_KEY, pacer_for
from .sending.routing import Providers, ProviderSpec, Route, SlowDelivery, Weights
from .sending.sender import Sender
from .sending.transports.base import Transport
from .sending.transports.kannel import KannelTransport
from .sending.transports.probe import ProbeTransport

log = logging.getLogger(__name__)


class NoProvider(Exception):
    """No provider can be used: every enabled one lacks its token in the environment."""


def provider_specs() -> list[ProviderSpec]:
    """The enabled providers, with their tokens from the environment; without any, the one of
    PROVIDER_URL and PROVIDER_TOKEN, or of KANNEL_* with PROVIDER_KIND=kannel."""
    rows = list(providers_enabled())
    if not rows:
        if settings.PROVIDER_KIND == TransportKind.KANNEL:
            credentials = f"{settings.KANNEL_USERNAME}:{settings.KANNEL_PASSWORD}"
            return [ProviderSpec(SETTINGS_PROVIDER, TransportKind.KANNEL, settings.KANNEL_URL, credentials)]
        return [
            ProviderSpec(
                SETTINGS_PROVIDER, TransportKind.PROBE, settings.PROVIDER_URL, settings.PROVIDER_TOKEN
            )
        ]
    specs = [spec for row in rows if (spec := _spec_of(row)) is not None]
    if not specs:
        raise NoProvider("no enabled provider has its token in the environment")
    return specs


def _spec_of(row: Provider) -> ProviderSpec | None:
    token = os.environ.get(row.credentials_env)
    if token is None:
        log.error("provider %s left out: %s is not set in the environment", row.name, row.credentials_env)
        return None
    return ProviderSpec(
        name=row.name,
        transport=row.transport,
        url=row.url,
        token=token,
        weight=row.weight,
        rate_limit=row.rate_limit,
        operators_only=frozenset(row.operators_only),
        operators_excluded=frozenset(row.operators_excluded),
    )


def transport_for(spec: ProviderSpec, *, max_connections: int) -> Transport:
    if spec.transport == TransportKind.KANNEL:
        secret = receipt_secret(spec.name)
        if not secret:
            raise ImproperlyConfigured(
                f"the Kannel provider {spec.name!r} needs a receipt secret in RECEIPT_SECRETS"
            )
        username, _, password = spec.token.partition(":")  # Kannel's credentials: "username:password"
        return KannelTransport(
            name=spec.name,
            sendsms_url=spec.url,
            username=username,
            password=password,
            sender=settings.KANNEL_FROM,
            smsc=settings.KANNEL_SMSC,
            receipt_base_url=settings.RECEIPT_BASE_URL,
            receipt_secret=secret,
            connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
            max_connections=max_connections,
        )
    if spec.transport != TransportKind.PROBE:
        raise ValueError(f"provider {spec.name}: no transport for {spec.transport!r}")
    return ProbeTransport(
        name=spec.name,
        base_url=spec.url,
        token=spec.token,
        connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
        max_connections=max_connections,
    )


def gate_for(spec: ProviderSpec, clock: Clock) -> ProviderGate:
    settings_provider = spec.name == SETTINGS_PROVIDER and spec.rate_limit is None
    rate = settings.PROVIDER_RATE_LIMIT if settings_provider else spec.rate_limit
    # Each provider's rate is shared by every sender in a bucket of its own.
    bucket_file = Path(settings.RATE_LIMIT_FILE)
    if not settings_provider:
        bucket_file = bucket_file.with_name(f"{bucket_file.name}.{spec.name}")
    return ProviderGate(
        breaker_threshold=settings.SENDER_BREAKER_THRESHOLD,
        breaker_pause=settings.SENDER_BREAKER_PAUSE,
        auth_pause=settings.SENDER_AUTH_PAUSE,
        clock=clock.wall,
        pacer=pacer_for(
            initial=settings.SENDER_CONCURRENCY,
            minimum=settings.SENDER_CONCURRENCY_MIN,
            maximum=settings.SENDER_CONCURRENCY_MAX,
            rate=rate,
            redis_url=settings.RATE_LIMIT_REDIS_URL,
            redis_key=RATE_LIMIT_KEY if settings_provider else f"{RATE_LIMIT_KEY}:{spec.name}",
            file_path=bucket_file,
            clock=clock.monotonic,
            wall=clock.wall,
        ),
    )


def providers_from_settings(clock: Clock, *, max_connections: int) -> Providers:
    specs = provider_specs()
    routes = [
        Route(spec, transport_for(spec, max_connections=max_connections), gate_for(spec, clock))
        for spec in specs
    ]
    weights = Weights(
        {spec.name: spec.weight for spec in specs},
        clock=clock.monotonic,
        wall=clock.wall,
        errors=settings.PROVIDER_WEIGHT_SHIFT_ERRORS,
        window=settings.PROVIDER_WEIGHT_SHIFT_WINDOW,
        drift_every=settings.PROVIDER_WEIGHT_DRIFT_EVERY,
        slow=SlowDelivery(
            after=settings.PROVIDER_WEIGHT_SLOW_DELIVERY,
            share=settings.PROVIDER_WEIGHT_SLOW_SHARE,
            sample=settings.PROVIDER_WEIGHT_SLOW_SAMPLE,
            window=settings.PROVIDER_WEIGHT_SLOW_WINDOW,
        ),
    )
    return Providers(routes, weights)


def sender_holder() -> str:
    """Names a sender in the leases and slots it holds: host, process, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def sender_from_settings() -> Sender:
    clock = Clock()
    return Sender(
        providers=providers_from_settings(clock, max_connections=settings.SENDER_CONCURRENCY_MAX),
        store=DjangoMessageStore(holder=sender_holder(), clock=clock),
        clock=clock,
        # The ceiling: the pace of each provider's gate decides how much of it is used.
        concurrency=settings.SENDER_CONCURRENCY_MAX,
        end_margin=settings.SENDER_END_MARGIN,
        stop_grace=settings.SENDER_STOP_GRACE,
        request_timeout=settings.PROVIDER_REQUEST_TIMEOUT,
        max_attempts=settings.SENDER_MAX_ATTEMPTS,
    )
