"""Gauges the database knows, computed when Prometheus scrapes (web only), from indexed queries; the
URLconf hands them to the /metrics view (ops.views.metrics).

Shared by every web process through the cache for METRICS_DB_CACHE_SECONDS, so that several
scrapers or web replicas do not multiply the database's work. A cache that does not answer costs
the queries, not the scrape.
"""

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from mailings.selectors import mailing_state_counts
from messages_app.selectors import message_backlog, messages_of_unfinished_mailings
from messages_app.services import provider_pauses, senders_live
from ops.metrics import NAMESPACE
from providers.selectors import provider_weights

log = logging.getLogger(__name__)


def cache_key() -> str:
    """Per database: a cache shared with another deployment, or with the tests, must not serve its figures."""
    return f"ops:metrics:database:{connection.settings_dict['NAME']}"


def _shared_figures() -> dict:
    key = cache_key()
    try:
        figures = cache.get(key)
    except Exception as error:  # each cache backend raises its own errors
        log.warning("metrics: the cache did not answer, database figures computed afresh: %s", error)
        return _figures()
    if figures is None:
        figures = _figures()
        try:
            cache.set(key, figures, timeout=settings.METRICS_DB_CACHE_SECONDS)
        except Exception as error:
            log.warning("metrics: the cache did not answer: %s", error)
    return figures


def live_senders() -> int:
    return senders_live(now=timezone.now())


def _figures() -> dict:
    now = timezone.now()
    backlog = message_backlog(now=now)
    return {
        "senders": senders_live(now=now),
        "messages": messages_of_unfinished_mailings(now=now),
        "pending": backlog.pending,
        "due": backlog.due,
        "oldest_due_age": backlog.oldest_due_age,
        "mailings": mailing_state_counts(now=now),
    }


class DatabaseCollector:
    def collect(self):
        up = GaugeMetricFamily(f"{NAMESPACE}_database_up", "1 when the database answered this scrape.")
        try:
            figures = _shared_figures()
        except DatabaseError:
            log.exception("metrics: the database did not answer")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        messages = GaugeMetricFamily(
            f"{NAMESPACE}_messages",
            "Messages of mailings that have not ended yet, by status.",
            labels=["status"],
        )
        for status, number in figures["messages"].items():
            messages.add_metric([status], number)
        yield messages
        yield GaugeMetricFamily(
            f"{NAMESPACE}_messages_pending", "Pending messages, due or not.", figures["pending"]
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_messages_due", "Pending messages whose next attempt is due now.", figures["due"]
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_oldest_due_message_age_seconds",
            "How long the oldest due pending message has been due (0 when none is): the backlog's lag.",
            figures["oldest_due_age"],
        )
        yield GaugeMetricFamily(
            f"{NAMESPACE}_senders_live",
            "Senders alive in every worker (one per pool process): 0 while mailings wait means none sends.",
            figures["senders"],
        )
        mailings = GaugeMetricFamily(
            f"{NAMESPACE}_mailings",
            "Mailings by state (scheduled, running, paused, cancelled, finished).",
            labels=["state"],
        )
        for state, number in figures["mailings"].items():
            mailings.add_metric([state], number)
        yield mailings

        now = timezone.now()
        pauses = provider_pauses(now=now)
        paused = GaugeMetricFamily(
            f"{NAMESPACE}_provider_paused",
            "1 while sending through the provider is paused (breaker or refused token).",
            labels=["provider"],
        )
        remaining = GaugeMetricFamily(
            f"{NAMESPACE}_provider_pause_remaining_seconds",
            "Seconds left of the provider's current pause.",
            labels=["provider"],
        )
        for name in sorted(provider_weights().keys() | pauses.keys()):
            seconds = (pauses[name] - now).total_seconds() if name in pauses else 0.0
            paused.add_metric([name], float(seconds > 0))
            remaining.add_metric([name], seconds)
        yield paused
        yield remaining
