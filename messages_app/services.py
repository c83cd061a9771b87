"""State changes of Message rows: the one place that moves a message between statuses.

Every change is a conditional bulk UPDATE, so that dispatchers, the sweeper and a worker that
comes back after a crash can run side by side without overwriting one another's results.
"""

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, Min, OuterRef, Q, QuerySet

from clients.models import Client
from mailings.models import Mailing

from .models import WAITING_FOR_WINDOW, Message

Status = Message.Status

PAUSE_KEY = "sender:paused-until"


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    id: int
    client_id: int | None
    phone: str | None  # None when the client was deleted after the fan-out
    attempt: int


@dataclass(slots=True)
class Outcomes:
    """Results of delivery attempts, gathered in memory and written back in bulk."""

    sent: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    retry: list[tuple[int, int, str]] = field(default_factory=list)  # id, attempt, error
    deferred: list[tuple[int, str]] = field(default_factory=list)  # id, why: not attempted
    expired: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(map(len, (self.sent, self.failed, self.retry, self.deferred, self.expired)))


def lease_duration() -> timedelta:
    """How long a claim holds: the longest a request may take, plus SENDER_LEASE_MARGIN."""
    timeouts = settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT
    return timedelta(seconds=timeouts + settings.SENDER_LEASE_MARGIN)


def retry_delay(attempt: int) -> timedelta:
    """Exponential backoff with full jitter: spreads retries so a recovering provider is not stampeded."""
    ceiling = min(settings.SENDER_RETRY_CAP, settings.SENDER_RETRY_BASE * 2 ** (attempt - 1))
    return timedelta(seconds=random.uniform(0, ceiling))


def messages_create_for_clients(
    *, mailing_id: int, clients: QuerySet, now: datetime, openings: Mapping[str, datetime] | None = None
) -> int:
    """Create one pending message per client in `clients`, in one statement inside the database.

    INSERT ... SELECT, because building the rows in Python was most of the fan-out's time; the
    client filter is the ORM's own SQL. Rows that already exist (a replayed batch) are skipped.
    `openings` (each closed timezone: its next opening; a mailing with a local window): messages of
    clients in those zones are created waiting for it, by a join in the same statement, rather than
    updated afterwards, which would write each of them twice.
    """
    select_sql, select_params = clients.values("id", "timezone").query.sql_with_params()
    quote = connection.ops.quote_name
    moment = connection.ops.adapt_datetimefield_value(now)
    columns = ", ".join(
        quote(Message._meta.get_field(name).column)
        for name in ("mailing", "client", "status", "attempts", "last_error", "created_at", "next_attempt_at")
    )
    cte, params = _openings_cte(openings or {})
    params += [mailing_id, Status.PENDING]
    if openings:
        last_error, due = (
            "CASE WHEN opening.zone IS NULL THEN '' ELSE %s END",
            "COALESCE(opening.opens_at, %s)",
        )
        joined = " LEFT JOIN opening ON opening.zone = batch.timezone"
        params.append(WAITING_FOR_WINDOW)
    else:
        last_error, due, joined = "''", "%s", ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"{cte}INSERT INTO {quote(Message._meta.db_table)} ({columns}) "
            f"SELECT %s, batch.id, %s, 0, {last_error}, %s, {due} FROM ({select_sql}) AS batch{joined} "
            "WHERE true ON CONFLICT DO NOTHING",
            [*params, moment, moment, *select_params],
        )
        return cursor.rowcount


def _openings_cte(openings: Mapping[str, datetime]) -> tuple[str, list]:
    """`WITH opening (zone, opens_at) AS (VALUES ...) `: a table of zones and their next opening."""
    if not openings:
        return "", []
    params = []
    for zone, opens_at in openings.items():
        params += [zone, connection.ops.adapt_datetimefield_value(opens_at)]
    rows = ", ".join(["(%s, %s)"] * len(openings))
    return f"WITH opening (zone, opens_at) AS (VALUES {rows}) ", params


def messages_claim(
    *, mailing_id: int, limit: int, now: datetime, condition: Q | None = None
) -> list[ClaimedRow]:
    """Take up to `limit` due pending messages of a mailing for one dispatcher, under a lease.

    `condition` narrows what may be handed out (the local window's open zones: WindowGuard).
    """
    with transaction.atomic():
        rows = list(
            Message.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(mailing_id=mailing_id, status=Status.PENDING, next_attempt_at__lte=now)
            .filter(condition or Q())
            .order_by("next_attempt_at")
            .values_list("id", "client_id", "client__phone", "attempts")[:limit]
        )
        if rows:
            Message.objects.filter(id__in=[row[0] for row in rows]).update(
                status=Status.SENDING, lease_until=now + lease_duration(), attempts=F("attempts") + 1
            )
    return [ClaimedRow(id, client_id, phone, attempts + 1) for id, client_id, phone, attempts in rows]


def messages_record(*, outcomes: Outcomes, now: datetime, deferred_until: datetime | None = None) -> None:
    """Write a batch of results back; final states are never overwritten."""
    in_flight = Message.objects.filter(status=Status.SENDING)
    with transaction.atomic():
        if outcomes.sent:
            # Accepted is the truth even when the sweeper already took the lease back.
            Message.objects.filter(id__in=outcomes.sent).exclude(status__in=Message.FINAL_STATUSES).update(
                status=Status.SENT, sent_at=now, lease_until=None, last_error=""
            )
        for error, ids in _group_by_error(outcomes.failed).items():
            in_flight.filter(id__in=ids).update(status=Status.FAILED, last_error=error, lease_until=None)
        if outcomes.retry:
            in_flight.bulk_update(
                [
                    Message(
                        id=id,
                        status=Status.PENDING,
                        next_attempt_at=now + retry_delay(attempt),
                        last_error=error[:255],
                        lease_until=None,
                    )
                    for id, attempt, error in outcomes.retry
                ],
                ["status", "next_attempt_at", "last_error", "lease_until"],
            )
        for error, ids in _group_by_error(outcomes.deferred).items():
            # Held back by a pause or a refused token: the attempt taken at claim time is given back,
            # so waiting for the provider does not grow the message's backoff.
            in_flight.filter(id__in=ids).update(
                status=Status.PENDING,
                next_attempt_at=deferred_until or now,
                last_error=error,
                lease_until=None,
                attempts=F("attempts") - 1,
            )
        if outcomes.expired:
            Message.objects.filter(
                id__in=outcomes.expired, status__in=(Status.PENDING, Status.SENDING)
            ).update(status=Status.EXPIRED, lease_until=None)


def _group_by_error(pairs: list[tuple[int, str]]) -> dict[str, list[int]]:
    grouped = defaultdict(list)
    for id, error in pairs:
        grouped[error[:255]].append(id)
    return grouped


def messages_next_attempt_at(*, mailing_id: int) -> datetime | None:
    """When the earliest pending message of a mailing is due; None when none is pending."""
    return Message.objects.filter(mailing_id=mailing_id, status=Status.PENDING).aggregate(
        due=Min("next_attempt_at")
    )["due"]


def messages_expire_pending(*, now: datetime, mailing_id: int | None = None) -> int:
    """Pending messages of ended mailings can never be sent in time: they expire."""
    expiring = Message.objects.filter(status=Status.PENDING, mailing__end_at__lte=now)
    if mailing_id is not None:
        expiring = expiring.filter(mailing_id=mailing_id)
    return expiring.update(status=Status.EXPIRED)


def messages_release_expired_leases(*, now: datetime) -> int:
    """Messages whose dispatcher died mid-send go back to pending; their mailing decides the rest."""
    return Message.objects.filter(status=Status.SENDING, lease_until__lt=now).update(
        status=Status.PENDING, next_attempt_at=now, lease_until=None
    )


def mailings_without_dispatcher(*, now: datetime) -> list[int]:
    """Active mailings whose due messages wait while no dispatcher has shown life for a while."""
    stall_since = now - timedelta(seconds=settings.SENDER_STALL_AFTER)
    stalled_due = Message.objects.filter(
        mailing=OuterRef("pk"), status=Status.PENDING, next_attempt_at__lte=stall_since
    )
    return list(
        Mailing.objects.filter(start_at__lte=now, end_at__gt=now, launched_at__isnull=False)
        .filter(Q(dispatch_heartbeat_at__isnull=True) | Q(dispatch_heartbeat_at__lt=stall_since))
        .filter(Exists(stalled_due))
        .values_list("id", flat=True)
    )


def mailing_heartbeat(*, mailing_id: int, now: datetime) -> None:
    Mailing.objects.filter(pk=mailing_id).update(dispatch_heartbeat_at=now)


def provider_pause(*, seconds: float, now: datetime) -> datetime:
    """Pause every dispatcher of every worker (circuit breaker, refused token); returns the end."""
    until = now + timedelta(seconds=seconds)
    cache.set(PAUSE_KEY, until.timestamp(), timeout=int(seconds) + 1)
    return until


def provider_paused_until(*, now: datetime) -> datetime | None:
    until = cache.get(PAUSE_KEY)
    if until is None or until <= now.timestamp():
        return None
    return datetime.fromtimestamp(until, tz=now.tzinfo)


def messages_wait_for_window(*, mailing_id: int, openings: Mapping[str, datetime], due_by: datetime) -> int:
    """Defer the mailing's messages due by `due_by` whose client is in a closed zone to that zone's
    next opening (`openings`, mailings.window): those of a zone whose window has just closed, or a
    retry or a released lease that came due while its zone was closed.

    One UPDATE for all those zone groups: the openings travel as a VALUES list joined on the
    client's timezone, so the database does the work per zone group and no client passes through
    Python. It reads the mailing's due messages by index (message_due_idx).
    """
    if not openings:
        return 0
    quote = connection.ops.quote_name
    message, client = quote(Message._meta.db_table), quote(Client._meta.db_table)
    cte, params = _openings_cte(openings)
    params += [
        WAITING_FOR_WINDOW,
        mailing_id,
        Status.PENDING,
        connection.ops.adapt_datetimefield_value(due_by),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"{cte}UPDATE {message} AS m SET next_attempt_at = opening.opens_at, last_error = %s "
            f"FROM {client} AS c, opening "
            "WHERE m.mailing_id = %s AND m.status = %s AND m.next_attempt_at <= %s "
            "AND c.id = m.client_id AND c.timezone = opening.zone",
            params,
        )
        return cursor.rowcount
