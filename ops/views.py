"""Endpoints for machines: Prometheus's `/metrics` and the orchestrators' health checks."""

import hmac
import ipaddress
import logging
import re
from collections.abc import Callable, Sequence

import kombu
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

log = logging.getLogger(__name__)


# Headers a proxy or CDN sets to pass on someone's address (Forwarded, X-Forwarded-*, X-Real-IP,
# True-Client-IP, CF-Connecting-IP, X-Client-IP, Via, X-Envoy-External-Address ...), by the shape
# of their names in request.META: a request with one came from elsewhere, whatever address it
# arrives from. Matching shapes rather than a list refuses the names no list would think of.
FORWARDING_HEADER = re.compile(r"HTTP_(.*FORWARDED.*|.*_IPS?|.*_ADDR|.*_ADDRESS|VIA)")


def _metrics_allowed(request) -> bool:
    """With METRICS_TOKEN, a matching bearer token; without, only callers on this machine.

    "On this machine" means a loopback address and no forwarding header: a proxy on the same host
    connects from loopback too, on behalf of anyone.
    """
    if settings.METRICS_TOKEN:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), settings.METRICS_TOKEN.encode()
        )
    if any(FORWARDING_HEADER.fullmatch(key) for key in request.META):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics(request, *, collectors: Sequence[Collector] = ()):
    """Every process's counters, then what `collectors` compute now (the URLconf gives the database's
    gauges, which query the apps this app knows nothing of)."""
    if not _metrics_allowed(request):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    if settings.PROMETHEUS_MULTIPROC_DIR:
        # Every process's counters and histograms, from the files they write in the shared folder.
        processes = CollectorRegistry()
        MultiProcessCollector(processes, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        processes = REGISTRY  # one process: a local `runserver`, the tests
    computed = CollectorRegistry()
    for collector in collectors:
        computed.register(collector)
    return HttpResponse(
        generate_latest(processes) + generate_latest(computed), content_type=CONTENT_TYPE_LATEST
    )


_HealthStatus = inline_serializer(
    "HealthStatus",
    fields={
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": serializers.DictField(child=serializers.CharField(), required=False),
        "senders": serializers.IntegerField(
            required=False,
            help_text="Senders alive in every worker (readiness only; informs, does not decide the status).",
        ),
    },
)
_UNAVAILABLE = status.HTTP_503_SERVICE_UNAVAILABLE


class HealthCheckView(APIView):
    """For load balancers and orchestrators: no credentials."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []  # a check every few seconds from the same address is no abuse


class LiveView(HealthCheckView):
    """The process answers; nothing else is checked, so a database outage restarts nobody."""

    @extend_schema(
        summary="Liveness check",
        responses={200: OpenApiResponse(_HealthStatus, description='`{"status": "ok"}`, always')},
        tags=["health"],
    )
    def get(self, request):
        return Response({"status": "ok"})


class ReadyView(HealthCheckView):
    """Ready for traffic: the database answers with every migration applied and the broker accepts a
    connection (within HEALTH_BROKER_TIMEOUT). Also says how many senders are alive (`senders`, from
    the URLconf): workers are not the web's to wait for, so it does not decide the status."""

    senders: Callable[[], int] | None = None

    @extend_schema(
        summary="Readiness check",
        responses={
            200: OpenApiResponse(_HealthStatus, description="Every check is `ok`."),
            503: OpenApiResponse(
                _HealthStatus,
                description="`unavailable`, with each check's result: `ok`, `unreachable`, "
                "`N unapplied` (migrations) or `skipped`.",
            ),
        },
        tags=["health"],
    )
    def get(self, request):
        checks = {"database": _database_check(), "migrations": "skipped", "broker": _broker_check()}
        if checks["database"] == "ok":
            checks["migrations"] = _migrations_check()
        ok = all(value == "ok" for value in checks.values())
        answer = {"status": "ok" if ok else "unavailable", "checks": checks}
        if self.senders is not None and checks["database"] == "ok":
            answer["senders"] = self.senders()
        return Response(answer, status=200 if ok else _UNAVAILABLE)


class HealthView(HealthCheckView):
    """The first health check, kept for load balancers that use it: the database only."""

    @extend_schema(
        summary="Check the service and its database",
        responses={
            200: OpenApiResponse(_HealthStatus, description='`{"status": "ok"}`'),
            503: OpenApiResponse(_HealthStatus, description='`{"status": "unavailable"}`'),
        },
        tags=["health"],
    )
    def get(self, request):
        if _database_check() != "ok":
            return Response({"status": "unavailable"}, status=_UNAVAILABLE)
        return Response({"status": "ok"})


def _database_check() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        log.warning("health check: database unreachable: %s", error)
        return "unreachable"
    return "ok"


_migrations_applied = False  # once they are, they stay applied for this process's code


def _migrations_check() -> str:
    global _migrations_applied
    if not _migrations_applied:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            return f"{len(plan)} unapplied"
        _migrations_applied = True
    return "ok"


def _broker_check() -> str:
    try:
        with kombu.Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=settings.HEALTH_BROKER_TIMEOUT,
            transport_options=getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
        ) as conn:
            conn.ensure_connection(max_retries=0, timeout=settings.HEALTH_BROKER_TIMEOUT)
    except Exception as error:  # kombu raises each transport's own errors
        log.warning("health check: broker unreachable: %s", error)
        return "unreachable"
    return "ok"
