"""State changes of Message rows: the one place that moves a message between statuses.

Transitions, all conditional bulk UPDATEs so that senders, the sweeper and a worker that comes back
after a crash can run side by side:

    claim      pending (due) -> sending, with a fresh claim token and a short lease
    renew      sending -> sending, lease pushed on, only for the claim's token
    record     sending -> the status of its Outcome (OUTCOME_TRANSITIONS), only for the claim's token
    release    sending whose lease ran out -> pending (its sender died)
    expire     pending of an ended mailing -> expired

A claim's token fences every write of its results: once a lease runs out and another sender
claims the row, the first sender's late results match no row.
"""

import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F, Q, QuerySet, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from clients.models import Client
from mailings.models import Mailing
from mailings.services import MailingStateError, mailing_mark_cancelled
from ops.audit import audit
from ops.services import provider_attempts_record, provider_pause_record

from .models import Message, MessageTally, ProviderPause, SenderSlot, WaitingFor
from .selectors import message_counts_by_mailing
from .sending.outcomes import Outcome, Result
from .sending.store import Claim, ClaimedRow

Status = Message.Status

PROVIDER = "probe"  # the one provider today; the pause row is keyed by it
RECONCILE_LOCK = 0x7A11E5  # PostgreSQL advisory lock key: one tally reconcile at a time


# Outcome -> (new status, statuses the fenced row may be in). An acceptance or an unknown send is
# also written to a row whose lease was released but that nobody claimed since (same token): the
# provider has it, so sending it again would be a duplicate.
OUTCOME_TRANSITIONS: dict[Outcome, tuple[str, tuple[str, ...]]] = {
    Outcome.SENT: (Status.SENT, (Status.SENDING, Status.PENDING)),
    Outcome.UNKNOWN: (Status.UNKNOWN, (Status.SENDING, Status.PENDING)),
    Outcome.FAILED: (Status.FAILED, (Status.SENDING,)),
    Outcome.RETRY: (Status.PENDING, (Status.SENDING,)),
    Outcome.DEFERRED: (Status.PENDING, (Status.SENDING,)),
    Outcome.THROTTLED: (Status.PENDING, (Status.SENDING,)),
    Outcome.EXPIRED: (Status.EXPIRED, (Status.SENDING,)),
}


def lease_duration() -> timedelta:
    """How long a claim or a slot holds unless its live sender renews it (every second)."""
    return timedelta(seconds=settings.SENDER_LEASE_SECONDS)


def retry_delay(attempt: int) -> timedelta:
    """Capped exponential backoff with full jitter.

    Small on purpose: a random per-request failure is best retried soon, and a provider that is
    down is the breaker's job (a pause for everyone), not every message's growing backoff.
    """
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
        quote(Message._meta.get_field(name).column)  # type: ignore[union-attr, arg-type]  # concrete fields
        for name in (
            "mailing",
            "client",
            "status",
            "attempts",
            "last_error",
            "waiting_for",
            "created_at",
            "next_attempt_at",
            "claimed_by",
        )
    )
    params: list[Any] = [mailing_id, Status.PENDING]
    if openings:
        waiting_for, due = (
            "CASE WHEN opening.zone IS NULL THEN '' ELSE %s END",
            "COALESCE(opening.opens_at, %s)",
        )
        params.append(WaitingFor.WINDOW)
        opening_sql, opening_params = _openings_table(openings)
        joined = f" LEFT JOIN {opening_sql} ON opening.zone = batch.timezone"
    else:
        waiting_for, due, joined, opening_params = "''", "%s", "", []
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(Message._meta.db_table)} ({columns}) "
            f"SELECT %s, batch.id, %s, 0, '', {waiting_for}, %s, {due}, '' "
            f"FROM ({select_sql}) AS batch{joined} WHERE true ON CONFLICT DO NOTHING",
            [*params, moment, moment, *select_params, *opening_params],
        )
        return cursor.rowcount


def _openings_table(openings: Mapping[str, datetime]) -> tuple[str, list]:
    """`(... FROM (VALUES ...)) AS opening`: a table of zones (`zone`) and their next opening (`opens_at`).

    A derived table rather than WITH, which would have to open the window's UPDATE: Python's sqlite3
    (before 3.12) reports no rowcount for a statement that starts with WITH, and the caller returns
    that count. VALUES rather than UNION ALL, which SQLite caps at 500 terms (there are more zones);
    both databases name its columns column1, column2.
    """
    params = []
    for zone, opens_at in openings.items():
        params += [zone, connection.ops.adapt_datetimefield_value(opens_at)]
    rows = ", ".join(["(%s, %s)"] * len(openings))
    return f"(SELECT column1 AS zone, column2 AS opens_at FROM (VALUES {rows}) AS zones) AS opening", params


# --- claim, renew, record -------------------------------------------------------------------------


def due_messages(*, mailing_id: int, now: datetime) -> QuerySet:
    """Pending messages of a mailing whose next attempt has come: what a claim may take."""
    return Message.objects.filter(mailing_id=mailing_id, status=Status.PENDING, next_attempt_at__lte=now)


def messages_claim(
    *,
    mailing_id: int,
    limit: int,
    now: datetime,
    holder: str = "",
    where: Q | None = None,
    with_attributes: bool = True,
) -> Claim:
    """Take up to `limit` due messages of a mailing under a fresh claim token and a short lease.

    `where` narrows what is due (e.g. a per-client local-time window); it is ANDed with
    `due_messages`. SKIP LOCKED lets concurrent senders take disjoint rows. `with_attributes`: each
    row carries its client's attributes, for a text with placeholders (decoding them is most of what
    rendering costs, so a text without any leaves them out).
    """
    token = uuid.uuid4()
    attributes = ["client__attributes"] if with_attributes else []
    due = due_messages(mailing_id=mailing_id, now=now)
    if where is not None:
        due = due.filter(where)
    with transaction.atomic():
        rows = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .order_by("next_attempt_at")
            .values_list("id", "client_id", "client__phone", "attempts", *attributes)[:limit]
        )
        if rows:
            Message.objects.filter(id__any=[row[0] for row in rows]).update(
                status=Status.SENDING,
                waiting_for=WaitingFor.NOTHING,
                claimed_by=holder,
                lease_until=now + lease_duration(),
                attempts=F("attempts") + 1,
                claim_token=token,
            )
    return Claim(
        token,
        mailing_id,
        [
            ClaimedRow(id, client_id, phone, n + 1, (found and found[0]) or {})
            for id, client_id, phone, n, *found in rows
        ],
    )


def messages_renew_leases(*, tokens: list[uuid.UUID], now: datetime) -> int:
    """Push on the leases of a live sender's claims (it calls this every second)."""
    if not tokens:
        return 0
    return Message.objects.filter(status=Status.SENDING, claim_token__in=tokens).update(
        lease_until=now + lease_duration()
    )


def messages_record(*, results: list[Result], now: datetime, deferred_until: datetime | None = None) -> int:
    """Write a batch of results back, each only where its claim's token still holds. Returns rows changed.

    The one place that maps an Outcome to a row transition (OUTCOME_TRANSITIONS).
    """
    changed = 0
    groups: dict[tuple[Outcome, uuid.UUID, str], list[Result]] = defaultdict(list)
    for result in results:
        groups[result.outcome, result.token, result.detail[:255]].append(result)
    with transaction.atomic():
        for (outcome, token, detail), group in groups.items():
            status, from_statuses = OUTCOME_TRANSITIONS[outcome]
            fenced = Message.objects.filter(
                id__any=[result.id for result in group], claim_token=token, status__in=from_statuses
            )
            if outcome is Outcome.RETRY:
                retries = [
                    Message(
                        id=result.id,
                        status=status,
                        next_attempt_at=now + retry_delay(result.attempt),
                        last_error=detail,
                        lease_until=None,
                    )
                    for result in group
                ]
                changed += fenced.bulk_update(
                    retries, ["status", "next_attempt_at", "last_error", "lease_until"]
                )
                continue
            fields: dict[str, Any] = {"status": status, "lease_until": None, "last_error": detail}
            if outcome is Outcome.SENT:
                # One UPDATE for the group: its latest answer, which no row's answer follows.
                fields["sent_at"] = max(result.answered_at or now for result in group)
            elif outcome in (Outcome.DEFERRED, Outcome.THROTTLED):
                # Not attempted, or refused for our pace: the attempt taken at claim time is given
                # back, so waiting for the provider or for the mailing does not grow its backoff.
                fields |= {"next_attempt_at": deferred_until or now, "attempts": F("attempts") - 1}
            changed += fenced.update(**fields)
    provider_attempts_record(outcomes=Counter(result.outcome for result in results), now=now)
    return changed


# --- recovery ----------------------------------------------------------------------------------


def messages_release_expired_leases(*, now: datetime) -> int:
    """Messages whose sender died mid-send go back to pending, due at once; their token stays,
    so a late acceptance from that sender still lands unless another sender claimed the row since.
    """
    return Message.objects.filter(status=Status.SENDING, lease_until__lt=now).update(
        status=Status.PENDING, next_attempt_at=now, lease_until=None
    )


def messages_expire_pending(*, now: datetime, mailing_id: int | None = None) -> int:
    """Pending messages of ended mailings can never be sent in time: they expire; so do those of
    cancelled mailings (a retry scheduled by a request that was in flight when it was cancelled)."""
    expiring = Message.objects.filter(status=Status.PENDING, mailing__end_at__lte=now)
    if mailing_id is not None:
        expiring = expiring.filter(mailing_id=mailing_id)
    return expiring.update(status=Status.EXPIRED) + messages_expire_cancelled(mailing_id=mailing_id)


CANCELLED_ERROR = "mailing cancelled"


def messages_expire_cancelled(*, mailing_id: int | None = None) -> int:
    """Pending messages of cancelled mailings expire, with last_error "mailing cancelled"."""
    expiring = Message.objects.filter(status=Status.PENDING, mailing__cancelled_at__isnull=False)
    if mailing_id is not None:
        expiring = expiring.filter(mailing_id=mailing_id)
    return expiring.update(status=Status.EXPIRED, last_error=CANCELLED_ERROR)


# --- the operators' actions that reach a mailing's messages -----------------------------------------


def mailing_cancel(*, mailing: Mailing, user) -> Mailing:
    """Stop for good: unsent messages expire with last_error "mailing cancelled" (a request already
    in flight may still be accepted, and counts as sent). Final: a cancelled mailing never sends
    again. Raises MailingStateError unless scheduled, running or paused.
    """
    with transaction.atomic():
        mailing = mailing_mark_cancelled(mailing=mailing)
        expired = messages_expire_cancelled(mailing_id=mailing.pk)
    audit(name="mailing", pk=mailing.pk, done=f"cancelled ({expired} unsent messages expired)", user=user)
    return mailing


class MailingHistoryError(Exception):
    """Deleting the mailing would delete its messages, and the caller did not ask for that."""


def mailing_delete(*, mailing: Mailing, user, with_history: bool) -> None:
    """The one deletion rule of the API and the admin: a mailing never launched can always go; a
    launched one only once finished or cancelled (cancel it first), and since its messages go with
    it, only when the caller asks for that (with_history). Raises MailingStateError or
    MailingHistoryError.
    """
    now = timezone.now()
    with transaction.atomic():
        # Read under lock: another operator may have acted since the caller loaded it.
        mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
        if not mailing.may_be_deleted(now):
            raise MailingStateError(
                mailing, mailing.state_at(now), "deleted", "never launched, finished or cancelled"
            )
        # Whether it has messages, from the messages themselves (one index lookup): the tallies,
        # derived, give only the number for the message and the audit line.
        has_messages = mailing.is_launched and mailing.messages.exists()
        messages = message_counts_by_mailing([mailing.pk])[mailing.pk]["total"] if has_messages else 0
        if has_messages and not with_history:
            raise MailingHistoryError(
                f"Mailing {mailing.pk} has {messages} messages, which would be deleted with it; "
                "ask for that with ?with_history=true."
            )
        mailing_id = mailing.pk
        mailing.delete()
    audit(
        name="mailing",
        pk=mailing_id,
        done=f"deleted with its {messages} messages" if has_messages else "deleted",
        user=user,
    )


def message_tallies_fold() -> int:
    """Folds each (mailing, status) with more than one tally row into one, or none where they sum to
    zero (a deleted mailing's). Returns how many rows fewer there are. Groups already in one row are
    read (an index-only GROUP BY) but not rewritten, so a sweep writes only what changed.

    DELETE ... RETURNING reads and removes the same rows in one statement, so rows that concurrent
    writes append meanwhile are neither summed nor removed; readers see the old rows or the folded
    ones, never both, since both change in one transaction.
    """
    table = MessageTally._meta.db_table
    sums: Counter[tuple[int, str]] = Counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE (mailing_id, status) IN ("
            f"SELECT mailing_id, status FROM {table} GROUP BY mailing_id, status HAVING count(*) > 1"
            ") RETURNING mailing_id, status, messages"
        )
        removed = cursor.fetchall()
        for mailing_id, status, messages in removed:
            sums[mailing_id, status] += messages
        kept = MessageTally.objects.bulk_create(
            MessageTally(mailing_id=mailing_id, status=status, messages=messages)
            for (mailing_id, status), messages in sums.items()
            if messages
        )
    return len(removed) - len(kept)


def message_tallies_reconcile(*, using: str = DEFAULT_DB_ALIAS) -> int:
    """Adds to the tallies, per (mailing, status), the messages they are missing (or have too many
    of): after messages were written with the triggers off (their migration, a data-only restore,
    loaddata of both tables). Returns how many (mailing, status) it corrected.

    One statement, hence one snapshot of both tables: a change committed after it is not in its
    count and is tallied by the triggers, so writers are not locked out and sending goes on. Two
    reconciles at once would each add the same gap: on PostgreSQL an advisory lock queues the
    second, whose statement then starts after the first committed and finds nothing to add
    (SQLite's single writer does the same).
    """
    table, messages = MessageTally._meta.db_table, Message._meta.db_table
    database = connections[using]
    with transaction.atomic(using=using), database.cursor() as cursor:
        if database.vendor == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RECONCILE_LOCK])
        cursor.execute(
            f"INSERT INTO {table} (mailing_id, status, messages) "
            "SELECT mailing_id, status, sum(messages) FROM ("
            f"SELECT mailing_id, status, count(*) AS messages FROM {messages} GROUP BY mailing_id, status "
            f"UNION ALL SELECT mailing_id, status, -sum(messages) FROM {table} GROUP BY mailing_id, status"
            ") AS gap GROUP BY mailing_id, status HAVING sum(messages) <> 0"
        )
        return cursor.rowcount


# --- what the senders work on --------------------------------------------------------------------


def sender_slots_hold(*, holder: str, mailing_ids: list[int], now: datetime) -> set[int]:
    """Hold one slot of each given mailing for `holder`; give up its slots of any other mailing.

    Renews the slots it already holds and takes a free (or abandoned) one where it holds none,
    among the first SENDERS_PER_MAILING of each mailing. Returns the mailings it holds a
    slot of: only for these may it claim messages.
    """
    per_mailing = settings.SENDERS_PER_MAILING
    until = now + lease_duration()
    mine = SenderSlot.objects.filter(holder=holder)
    mine.exclude(mailing_id__in=mailing_ids).update(holder="", lease_until=None)
    mine.filter(mailing_id__in=mailing_ids).update(lease_until=until)
    held = set(mine.filter(mailing_id__in=mailing_ids).values_list("mailing_id", flat=True))
    wanted = [mailing_id for mailing_id in mailing_ids if mailing_id not in held]
    if not wanted:
        return held
    SenderSlot.objects.bulk_create(
        [SenderSlot(mailing_id=m, number=n) for m in wanted for n in range(per_mailing)],
        ignore_conflicts=True,
    )
    with transaction.atomic():
        free = (
            SenderSlot.objects.select_for_update(skip_locked=True)
            .filter(mailing_id__in=wanted, number__lt=per_mailing)
            .filter(Q(holder="") | Q(lease_until__lt=now))
            .order_by("mailing_id", "number")
            .values_list("id", "mailing_id")
        )
        taking: dict[int, int] = {}
        for slot_id, mailing_id in free:
            taking.setdefault(mailing_id, slot_id)
        if taking:
            SenderSlot.objects.filter(id__in=taking.values()).update(holder=holder, lease_until=until)
    return held | set(taking)


def sender_slots_release(*, holder: str) -> int:
    """A stopping sender gives its slots back at once, for another to take without waiting."""
    return SenderSlot.objects.filter(holder=holder).update(holder="", lease_until=None)


# --- the pause shared by every sender --------------------------------------------------------------


def provider_pause(*, until: datetime) -> datetime:
    """Pause every sender of every worker until `until`, or later if a longer pause holds already.

    One atomic statement (GREATEST), so a short pause written after a long one never shortens it.
    """
    provider_pause_record(until=until)
    ProviderPause.objects.get_or_create(provider=PROVIDER, defaults={"paused_until": until})
    ProviderPause.objects.filter(provider=PROVIDER).update(
        paused_until=Greatest(F("paused_until"), Value(until))
    )
    return ProviderPause.objects.get(provider=PROVIDER).paused_until


def provider_paused_until(*, now: datetime) -> datetime | None:
    until = ProviderPause.objects.filter(provider=PROVIDER).values_list("paused_until", flat=True).first()
    return until if until is not None and until > now else None


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
    opening_sql, opening_params = _openings_table(openings)
    params = [
        WaitingFor.WINDOW,
        *opening_params,
        mailing_id,
        Status.PENDING,
        connection.ops.adapt_datetimefield_value(due_by),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {message} AS m SET next_attempt_at = opening.opens_at, waiting_for = %s "
            f"FROM {client} AS c, {opening_sql} "
            "WHERE m.mailing_id = %s AND m.status = %s AND m.next_attempt_at <= %s "
            "AND c.id = m.client_id AND c.timezone = opening.zone",
            params,
        )
        return cursor.rowcount
