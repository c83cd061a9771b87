"""State changes of Message rows: the one place that moves a message between statuses.

Transitions, all conditional bulk UPDATEs so that senders, the sweeper and a worker that comes back
after a crash can run side by side:

    claim      pending (due) -> sending, with a fresh claim token and a short lease
    renew      sending -> sending, lease pushed on, only for the claim's token
    record     sending -> the status of its Outcome (OUTCOME_TRANSITIONS), only for the claim's token
    release    sending whose lease ran out -> pending (its sender died; SENDER_LOST_CLAIMS=resend)
               or unknown (SENDER_LOST_CLAIMS=unknown)
    expire     pending of an ended or cancelled mailing -> expired, or unknown where an attempt
               went unanswered
    opt out    pending of a phone on the opt-out list -> opted_out (at claim time, and when it is added)

A claim's token fences every write of its results: once a lease runs out and another sender
claims the row, the first sender's late results match no row.
"""

import logging
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import (
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from clients.models import Client, OptOut
from mailings.models import Mailing
from mailings.services import MailingStateError, mailing_mark_cancelled
from ops.audit import audit
from ops.logging import log_ids
from ops.services import provider_attempts_record, provider_pause_record
from providers.models import SETTINGS_PROVIDER

from .models import (
    CAP_COUNTED,
    CAP_ERROR,
    Message,
    MessageTally,
    ProviderPause,
    SenderHeartbeat,
    SenderSlot,
    WaitingFor,
)
from .selectors import message_counts_by_mailing
from .sending.outcomes import Outcome, Result
from .sending.receipts import Receipt
from .sending.store import Claim, ClaimedRow

log = logging.getLogger(__name__)

Status = Message.Status

RECONCILE_LOCK = 0x7A11E5  # PostgreSQL advisory lock key: one tally reconcile at a time
# Messages changed per statement and named per log line by the sweeper's and a cancel's bulk
# transitions: a line stays a few kilobytes, under what log shippers split.
ID_BATCH = 500


# Outcome -> (new status, statuses the fenced row may be in). An acceptance or an unknown send is
# also written to a row whose lease was released but that nobody claimed since (same token): the
# provider has it, so sending it again would be a duplicate; an acceptance settles a row released
# as unknown (SENDER_LOST_CLAIMS=unknown) by a sender that was slow, not dead.
OUTCOME_TRANSITIONS: dict[Outcome, tuple[str, tuple[str, ...]]] = {
    Outcome.SENT: (Status.SENT, (Status.SENDING, Status.PENDING, Status.UNKNOWN)),
    Outcome.UNKNOWN: (Status.UNKNOWN, (Status.SENDING, Status.PENDING)),
    Outcome.FAILED: (Status.FAILED, (Status.SENDING,)),
    Outcome.RETRY: (Status.PENDING, (Status.SENDING,)),
    Outcome.UNANSWERED: (Status.PENDING, (Status.SENDING,)),
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
    """Create one pending message per client in `clients`, in one statement inside the database,
    with the client's phone copied: the recipient of record, whatever becomes of the client.

    INSERT ... SELECT, because building the rows in Python was most of the fan-out's time; the
    client filter is the ORM's own SQL. Rows that already exist (a replayed batch) are skipped.
    `openings` (each closed timezone: its next opening; a mailing with a local window): messages of
    clients in those zones are created waiting for it, by a join in the same statement, rather than
    updated afterwards, which would write each of them twice.
    """
    select_sql, select_params = clients.values("id", "timezone", "phone").query.sql_with_params()
    quote = connection.ops.quote_name
    moment = connection.ops.adapt_datetimefield_value(now)
    columns = ", ".join(
        quote(Message._meta.get_field(name).column)  # type: ignore[union-attr, arg-type]  # concrete fields
        for name in (
            "mailing",
            "client",
            "phone",
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
            f"SELECT %s, batch.id, batch.phone, %s, 0, '', {waiting_for}, %s, {due}, '' "
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


CAP_PERIOD = timedelta(days=1)


def _cap_lifts_at(cap: int, now: datetime) -> ExpressionWrapper:
    """For a message row: when its client may get one more message under the cap, or NULL when it may
    now. The client's messages sent in the last CAP_PERIOD and those in flight (counted as sent now)
    are read newest first on message_client_recent_idx; while there are `cap` of them, the cap lifts
    CAP_PERIOD after the `cap`-th newest. In SQL, per row: no client passes through Python."""
    counted = (
        Message.objects.filter(client_id=OuterRef("client_id"), status__in=CAP_COUNTED)
        .filter(Q(sent_at__gt=now - CAP_PERIOD) | Q(sent_at__isnull=True))
        .annotate(counted_at=Coalesce("sent_at", Value(now)))
        .order_by("-counted_at")
        .values("counted_at")[cap - 1 : cap]
    )
    return ExpressionWrapper(Subquery(counted) + Value(CAP_PERIOD), output_field=DateTimeField())


def _hold_capped(rows: list[tuple[int, int | None]], *, cap: int, now: datetime) -> set[int]:
    """Of these (message, client) rows, inside the claim's transaction, those not to send now: the
    messages whose client another claim holds (they stay due), and those whose client had `cap`
    messages in the last CAP_PERIOD (they wait for the cap, waiting_for `cap`).

    Exact between concurrent senders: each claim locks its clients' rows (SKIP LOCKED, so never
    waiting) before counting, and counts in a statement of its own, whose snapshot therefore holds
    every claim that released those locks, i.e. committed."""
    clients = {client_id for _, client_id in rows if client_id is not None}
    locked = set(
        Client.objects.filter(id__in=clients).select_for_update(skip_locked=True).values_list("id", flat=True)
    )
    busy = {message_id for message_id, client_id in rows if client_id in clients - locked}
    candidates = [message_id for message_id, _ in rows if message_id not in busy]
    over = Message.objects.filter(id__any=candidates).alias(lifts_at=_cap_lifts_at(cap, now))
    capped = list(over.filter(lifts_at__isnull=False).values_list("id", flat=True))
    if capped:
        Message.objects.filter(id__any=capped).update(
            next_attempt_at=_cap_lifts_at(cap, now), waiting_for=WaitingFor.CAP
        )
    return busy | set(capped)


OPTED_OUT_COLUMN = 6  # of a claim's rows: whether the phone is on the opt-out list


def messages_claim(
    *,
    mailing_id: int,
    limit: int,
    now: datetime,
    holder: str = "",
    where: Q | None = None,
    cap: int | None = None,
    with_attributes: bool = True,
) -> Claim:
    """Take up to `limit` due messages of a mailing under a fresh claim token and a short lease.

    `where` narrows what is due (e.g. a per-client local-time window); it is ANDed with
    `due_messages`. SKIP LOCKED lets concurrent senders take disjoint rows. `with_attributes`: each
    row carries its client's attributes, for a text with placeholders (decoding them is most of what
    rendering costs, so a text without any leaves them out).

    Of the rows taken, those whose phone is on the opt-out list end `opted_out` (decided in the
    claim's SELECT), and with `cap` (CLIENT_MAX_MESSAGES_PER_DAY, for a mailing not exempt) those
    whose client is at the cap wait for it (`_hold_capped`): a few statements per claim, none per
    client. The claim holds the rest, so it may come back short.
    """
    token = uuid.uuid4()
    attributes = ["client__attributes"] if with_attributes else []
    due = due_messages(mailing_id=mailing_id, now=now)
    if where is not None:
        due = due.filter(where)
    due = due.annotate(opted_out=Exists(OptOut.objects.filter(phone=OuterRef("phone"))))
    with transaction.atomic():
        taken = list(
            due.select_for_update(skip_locked=True, of=("self",))
            .order_by("next_attempt_at")
            .values_list(
                "id",
                "client_id",
                "phone",
                "attempts",
                "unanswered",
                "client__operator_code",
                "opted_out",
                *attributes,
            )[:limit]
        )
        opted_out = [row[0] for row in taken if row[OPTED_OUT_COLUMN]]
        rows = [row for row in taken if not row[OPTED_OUT_COLUMN]]
        if opted_out:
            Message.objects.filter(id__any=opted_out).update(status=Status.OPTED_OUT)
            log.info(
                "%s messages opted out at claim (mailing %s): %s",
                len(opted_out),
                mailing_id,
                " ".join(map(str, opted_out)),
                extra=log_ids(mailing=mailing_id),
            )
        if cap and rows:
            held = _hold_capped([(row[0], row[1]) for row in rows], cap=cap, now=now)
            rows = [row for row in rows if row[0] not in held]
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
            ClaimedRow(id, client_id, phone, n + 1, unanswered, code or "", (found and found[0]) or {})
            for id, client_id, phone, n, unanswered, code, _, *found in rows
        ],
    )


def messages_renew_leases(*, tokens: list[uuid.UUID], now: datetime) -> int:
    """Push on the leases of a live sender's claims (it calls this every second)."""
    if not tokens:
        return 0
    return Message.objects.filter(status=Status.SENDING, claim_token__in=tokens).update(
        lease_until=now + lease_duration()
    )


def messages_record(*, results: list[Result], now: datetime) -> int:
    """Write a batch of results back, each only where its claim's token still holds. Returns rows changed.

    The one place that maps an Outcome to a row transition (OUTCOME_TRANSITIONS).
    """
    changed = 0
    groups: dict[tuple[Outcome, uuid.UUID, str, str, datetime | None], list[Result]] = defaultdict(list)
    for result in results:
        key = (result.outcome, result.token, result.detail[:255], result.provider, result.due_at)
        groups[key].append(result)
    with transaction.atomic():
        for (outcome, token, detail, provider, due_at), group in groups.items():
            status, from_statuses = OUTCOME_TRANSITIONS[outcome]
            fenced = Message.objects.filter(
                id__any=[result.id for result in group], claim_token=token, status__in=from_statuses
            )
            if outcome in (Outcome.RETRY, Outcome.UNANSWERED):
                retries = [
                    Message(
                        id=result.id,
                        status=status,
                        next_attempt_at=now + retry_delay(result.attempt),
                        last_error=detail,
                        lease_until=None,
                        unanswered=True,
                    )
                    for result in group
                ]
                written = ["status", "next_attempt_at", "last_error", "lease_until"]
                if outcome is Outcome.UNANSWERED:
                    written.append("unanswered")
                changed += fenced.bulk_update(retries, written)
                continue
            fields: dict[str, Any] = {"status": status, "lease_until": None, "last_error": detail}
            if outcome in (Outcome.SENT, Outcome.UNKNOWN):
                fields["provider"] = provider  # the provider that took it, or may have
            if outcome is Outcome.SENT:
                # One UPDATE for the group: its latest answer, which no row's answer follows.
                fields["sent_at"] = max(result.answered_at or now for result in group)
                _provider_message_ids_record(fenced, group)

            elif outcome in (Outcome.DEFERRED, Outcome.THROTTLED):
                # Not attempted, or refused for our pace: the attempt taken at claim time is given
                # back, so waiting for the provider or for the mailing does not grow its backoff.
                fields |= {"next_attempt_at": due_at or now, "attempts": F("attempts") - 1}
            changed += fenced.update(**fields)
    provider_attempts_record(outcomes=Counter(result.outcome for result in results), now=now)
    return changed


def _provider_message_ids_record(fenced: QuerySet, group: list[Result]) -> None:
    """The provider's own ids of accepted messages, where its API gives them (cut to the column's
    length by the delivery): one UPDATE for all."""
    named = [
        Message(id=result.id, provider_message_id=result.provider_message_id)
        for result in group
        if result.provider_message_id
    ]
    if named:
        fenced.bulk_update(named, ["provider_message_id"])


# --- delivery receipts ---------------------------------------------------------------------------

# A receipt finds its message only here: what it says of any other status (already delivered or
# undelivered: a repeat or a late contradiction; failed, expired) changes nothing.
RECEIPT_FROM = (Status.SENT, Status.UNKNOWN)
# A receipt may come before the acceptance it follows is written (a gateway reports within
# milliseconds, results are written in batches): its message is still claimed, or back to pending
# after a lease ran out while its acceptance may yet land. It waits for a later batch.
RECEIPT_TOO_EARLY = (Status.SENDING, Status.PENDING)


@dataclass
class ReceiptsWritten:
    delivered: int = 0
    undelivered: int = 0
    unchanged: int = 0  # repeated, or after another final receipt
    unknown: list[int] = field(default_factory=list)  # no message of that provider has the id
    early: list[Receipt] = field(default_factory=list)  # their acceptance is not written yet


def receipts_record(*, receipts: list[Receipt]) -> ReceiptsWritten:
    """Write a batch of final receipts in one transaction: a few statements, not one per receipt.

    The first receipt of a message in the batch wins, as if they had come one by one; a message
    moves only from sent or unknown, so a repeated receipt changes nothing (and the tallies count it
    once), and a final status never goes back. A receipt whose id no message of its provider has
    (another provider's, a deleted mailing's) is left out; one that came before its acceptance was
    written is returned in `early`, for the caller to try again.

    The messages are read under lock, so that an acceptance written meanwhile cannot slip between
    what was read and what is updated.
    """
    first: dict[int, Receipt] = {}
    for receipt in receipts:
        first.setdefault(receipt.message_id, receipt)
    written = ReceiptsWritten(unchanged=len(receipts) - len(first))
    groups: dict[tuple[str, bool, str], list[int]] = defaultdict(list)
    latest: dict[tuple[str, bool, str], float] = defaultdict(float)
    with transaction.atomic():
        rows = {
            message_id: (provider, status)
            for message_id, provider, status in Message.objects.select_for_update()
            .filter(id__any=list(first))
            .values_list("id", "provider", "status")
        }
        for message_id, receipt in first.items():
            provider, status = rows.get(message_id, (None, None))
            if status in RECEIPT_TOO_EARLY and provider in ("", receipt.provider):
                written.early.append(receipt)
            elif provider != receipt.provider:
                written.unknown.append(message_id)
            elif status in RECEIPT_FROM:
                key = (receipt.provider, receipt.delivered, receipt.reason)
                groups[key].append(message_id)
                latest[key] = max(latest[key], receipt.received_at)
            else:
                written.unchanged += 1
        for (provider, delivered, reason), ids in groups.items():
            fields: dict[str, Any] = {"last_error": reason}
            if delivered:
                # Like sent_at: the group's latest arrival, which no receipt of it follows.
                at = datetime.fromtimestamp(latest[provider, delivered, reason], tz=UTC)
                fields |= {"status": Status.DELIVERED, "delivered_at": at}
            else:
                fields["status"] = Status.UNDELIVERED
            changed = Message.objects.filter(id__any=ids, status__in=RECEIPT_FROM).update(**fields)
            if delivered:
                written.delivered += changed
            else:
                written.undelivered += changed
    return written


# --- recovery ----------------------------------------------------------------------------------


def messages_release_expired_leases(*, now: datetime) -> int:
    """Messages whose sender died mid-send, as SENDER_LOST_CLAIMS says: `resend` puts them back to
    pending, due at once (their token stays, so a late acceptance from that sender still lands
    unless another sender claimed the row since); `unknown` ends them unknown, never sent twice.
    """
    lost = Message.objects.filter(status=Status.SENDING, lease_until__lt=now)
    if settings.SENDER_LOST_CLAIMS == "unknown":
        return _transition_logged(
            lost,
            "ended unknown: their sender died",
            status=Status.UNKNOWN,
            lease_until=None,
            last_error="its sender died after claiming it",
        )
    return _transition_logged(
        lost,
        "released to be sent again: their sender died",
        status=Status.PENDING,
        next_attempt_at=now,
        lease_until=None,
    )


def messages_expire_pending(*, now: datetime, mailing_id: int | None = None) -> int:
    """Pending messages of ended mailings can never be sent in time: they expire, or end unknown
    where an attempt went unanswered (it may have been accepted); so do those of cancelled mailings
    (a retry scheduled by a request that was in flight when it was cancelled)."""
    ending = Message.objects.filter(status=Status.PENDING, mailing__end_at__lte=now)
    if mailing_id is not None:
        ending = ending.filter(mailing_id=mailing_id)
    capped = _end_unsent(
        ending.filter(waiting_for=WaitingFor.CAP), "frequency cap reached", last_error=CAP_ERROR
    )
    return (
        capped + _end_unsent(ending, "the mailing ended") + messages_expire_cancelled(mailing_id=mailing_id)
    )


CANCELLED_ERROR = "mailing cancelled"


def messages_expire_cancelled(*, mailing_id: int | None = None) -> int:
    """Pending messages of cancelled mailings expire (or end unknown where an attempt went
    unanswered), with last_error "mailing cancelled"."""
    ending = Message.objects.filter(status=Status.PENDING, mailing__cancelled_at__isnull=False)
    if mailing_id is not None:
        ending = ending.filter(mailing_id=mailing_id)
    return _end_unsent(ending, CANCELLED_ERROR, last_error=CANCELLED_ERROR)


def _end_unsent(pending: QuerySet, why: str, **fields) -> int:
    return _transition_logged(
        pending.filter(unanswered=False), f"expired: {why}", status=Status.EXPIRED, **fields
    ) + _transition_logged(
        pending.filter(unanswered=True),
        f"ended unknown, an attempt never answered: {why}",
        status=Status.UNKNOWN,
        **fields,
    )


def _transition_logged(rows: QuerySet, what: str, **fields) -> int:
    """Applies `fields` to `rows`, ID_BATCH messages per statement, and logs one line per batch that
    names every message changed, so that each final transition is found by its message id.

    A line per batch rather than per message: a cancel or an end can move a million messages at
    once. The rows of a batch are locked as they are read (SKIP LOCKED on PostgreSQL), so the ids
    logged are those changed; the condition is applied again in the UPDATE for SQLite, which reads
    without locks.
    """
    changed = 0
    while True:
        with transaction.atomic():
            locked = list(
                rows.select_for_update(skip_locked=True, of=("self",))
                .order_by()
                .values_list("id", "mailing_id")[:ID_BATCH]
            )
            if not locked:
                return changed
            ids = [message_id for message_id, _ in locked]
            batch = rows.filter(id__any=ids).update(**fields)
        changed += batch
        mailings = sorted({mailing_id for _, mailing_id in locked})
        log.info(
            "%s messages %s (mailing %s): %s",
            batch,
            what,
            ",".join(map(str, mailings)),
            " ".join(map(str, ids)),
            extra=log_ids(mailing=mailings[0] if len(mailings) == 1 else None),
        )


def messages_opt_out(*, phones: QuerySet) -> int:
    """The pending messages of these phones (a query of phones) end `opted_out`, whatever their
    mailing: run as an opt-out is added (tasks.end_opted_out) and, for the opt-outs of the last
    sweeps, by the sweeper. A message already claimed may still go out (at most a second's worth)."""
    pending = Message.objects.filter(status=Status.PENDING, client__phone__in=phones)
    return _transition_logged(pending, "opted out", status=Status.OPTED_OUT)


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


def sender_heartbeat(*, holder: str, now: datetime) -> None:
    """A running sender says so (every second, with its slots)."""
    if not SenderHeartbeat.objects.filter(holder=holder).update(seen_at=now):
        SenderHeartbeat.objects.create(holder=holder, seen_at=now)


def sender_heartbeat_end(*, holder: str) -> None:
    """A stopping sender is no longer counted."""
    SenderHeartbeat.objects.filter(holder=holder).delete()


def senders_live(*, now: datetime, host: str | None = None) -> int:
    """Senders seen within a lease, of every worker or of the machine named `host`."""
    live = SenderHeartbeat.objects.filter(seen_at__gte=now - lease_duration())
    if host is not None:
        live = live.filter(holder__startswith=f"{host}:")
    return live.count()


def sender_heartbeats_forget(*, now: datetime) -> int:
    """Removes the rows of senders that died without a word (a killed worker), a minute on."""
    return SenderHeartbeat.objects.filter(seen_at__lt=now - timedelta(minutes=1)).delete()[0]


# --- the pause shared by every sender --------------------------------------------------------------


def provider_pause(*, until: datetime, provider: str = SETTINGS_PROVIDER) -> datetime:
    """Pause every sender of every worker on this provider until `until`, or later if a longer
    pause holds already.

    One atomic statement (GREATEST), so a short pause written after a long one never shortens it.
    """
    provider_pause_record(until=until, provider=provider)
    ProviderPause.objects.get_or_create(provider=provider, defaults={"paused_until": until})
    ProviderPause.objects.filter(provider=provider).update(
        paused_until=Greatest(F("paused_until"), Value(until))
    )
    return ProviderPause.objects.get(provider=provider).paused_until


def provider_pauses(*, now: datetime) -> dict[str, datetime]:
    """The pauses in force, by provider name (a row per provider ever paused: a small table)."""
    return dict(ProviderPause.objects.filter(paused_until__gt=now).values_list("provider", "paused_until"))


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
