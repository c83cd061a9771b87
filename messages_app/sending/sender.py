"""The sender: one loop per worker process that sends the due messages of every sendable mailing.

It runs in a thread of its own in each Celery pool process (`messages_app.tasks` starts it), so
sending never holds a pool slot and launch, scan and sweep tasks never wait behind it. Its parts:

- the refresher, every second (`REFRESH_EVERY`): re-reads which mailings may send now
  (`Mailing.objects.to_send`, built on `Mailing.objects.sendable`) and their ends, holds one of
  each such mailing's slots (`services.sender_slots_hold`: at most SENDERS_PER_MAILING
  senders per mailing), renews the leases of its claims, reads the shared pause and releases
  leases abandoned by dead senders. A mailing that stops being sendable is no longer claimed for
  from the next refresh on; its claims not yet started go back to pending at once.
- the feeder: fills the free request places with claims, shared in turn between the mailings it
  holds a slot of, so a new mailing is sending within about a second beside a big one.
- one coroutine per request: asks the provider gate (`gate.ProviderGate.acquire`: pause, adaptive
  in-flight limit, rate limits), sends until an answer, its own timeout or the mailing's end,
  whichever comes first (`cutoffs.Cutoffs`), reports to the gate (`record`) and queues a
  `services.Result`.
- the flusher: writes queued results as soon as the previous write is done (tens of ms), each
  fenced by its claim token (`services.messages_record`).

The mailing's end is a hard deadline: no request starts unless it can finish before it (margin:
a high percentile of recent latencies), a request still in flight at the end is cut and recorded
as UNKNOWN (it reached the provider, its answer did not reach us), and moving the end moves the
deadline of requests in flight, earlier or later (later only up to the request's own timeout).

Stopping (`request_stop`, SIGTERM in a worker): no more claims, requests in flight get up to
`stop_grace` seconds, those still running are cut (UNKNOWN), every result is written and the
slots are given back.
"""

import asyncio
import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import uvloop
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from mailings.models import Mailing
from messages_app import services
from messages_app.services import Claim, ClaimedRow, Outcome, Result
from ops import metrics
from ops.logging import log_ids

from .cutoffs import Cut, Cutoffs
from .gate import ProviderAnswer, ProviderGate
from .pacing import pacer_for
from .transports.base import (
    OutgoingMessage,
    Transport,
    TransportAuthError,
    TransportError,
    TransportThrottled,
    no_answer_within,
)
from .transports.probe import ProbeTransport
from .windows import WindowGuards

log = logging.getLogger(__name__)

FEED_TICK = 0.02  # seconds between the feeder's looks at the free request places
REFRESH_EVERY = 1.0  # seconds between re-reads of the mailings (and lease renewals)
RELEASE_EVERY = 2.0  # seconds between looks for leases that dead senders left behind
FLUSH_PAUSE = 0.03  # seconds between two result writes: lets results gather, keeps them fresh
DRY_FOR = 0.5  # seconds a mailing whose claim came back short is not asked again
END_PERCENTILE = 0.99  # of recent latencies: a request must have this long left before the end


@dataclass(eq=False)
class MailingRun:
    """What one sender knows of a mailing it sends for."""

    id: int
    text: str
    end_at: datetime
    deadline: float = 0.0  # event-loop time of the end
    held: bool = False  # holds one of the mailing's slots: may claim
    sendable: bool = True
    dry_until: float = 0.0
    expired_pending: bool = False


@dataclass(slots=True)
class SenderReport:
    outcomes: Counter = field(default_factory=Counter)

    def __getitem__(self, outcome: Outcome) -> int:
        return self.outcomes[outcome]


class Sender:
    def __init__(
        self,
        *,
        transport: Transport,
        gate: ProviderGate,
        concurrency: int,
        end_margin: float,
        stop_grace: float,
        request_timeout: float,
        holder: str | None = None,
    ):
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._transport = transport
        self._gate = gate
        self._concurrency = concurrency
        self._end_margin = end_margin
        self._stop_grace = stop_grace
        self._request_timeout = request_timeout
        self._stop = threading.Event()
        self._runs: dict[int, MailingRun] = {}
        self._rotation = 0
        self._in_flight: dict[asyncio.Task, tuple[MailingRun, uuid.UUID]] = {}
        self._results: list[Result] = []
        self._results_ready: asyncio.Event | None = None
        self._flushed_last = False  # set when stopping: the flusher writes what is left and ends
        self._room: asyncio.Event | None = None  # a request ended: the feeder may claim again
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sender-db")
        self._windows = WindowGuards()  # the mailings' local-time windows; database thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cutoffs: Cutoffs | None = None
        self.report = SenderReport()

    @classmethod
    def from_settings(cls) -> "Sender":
        return cls(
            transport=ProbeTransport(
                base_url=settings.PROVIDER_URL,
                token=settings.PROVIDER_TOKEN,
                connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
                max_connections=settings.SENDER_CONCURRENCY_MAX,
            ),
            gate=ProviderGate(
                breaker_threshold=settings.SENDER_BREAKER_THRESHOLD,
                breaker_pause=settings.SENDER_BREAKER_PAUSE,
                auth_pause=settings.SENDER_AUTH_PAUSE,
                pacer=pacer_for(
                    initial=settings.SENDER_CONCURRENCY,
                    minimum=settings.SENDER_CONCURRENCY_MIN,
                    maximum=settings.SENDER_CONCURRENCY_MAX,
                    rate=settings.PROVIDER_RATE_LIMIT,
                    redis_url=settings.RATE_LIMIT_REDIS_URL,
                    file_path=Path(settings.RATE_LIMIT_FILE),
                ),
            ),
            # The ceiling: the gate's pace decides how much of it is used.
            concurrency=settings.SENDER_CONCURRENCY_MAX,
            end_margin=settings.SENDER_END_MARGIN,
            stop_grace=settings.SENDER_STOP_GRACE,
            request_timeout=settings.PROVIDER_REQUEST_TIMEOUT,
        )

    # --- running and stopping --------------------------------------------------------------------

    def run(self, *, until_idle: bool = False, seconds: float | None = None) -> SenderReport:
        """Send until `request_stop()` (from any thread); tests may also stop it when nothing is left
        to send (`until_idle`) or after `seconds`. Blocks; a worker runs it in a thread of its own.
        """
        # uvloop: the event loop is most of a sender's CPU (about a quarter less per message).
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(self._run(until_idle=until_idle, seconds=seconds))
        finally:
            self._db.submit(connections.close_all).result()
            self._db.shutdown()

    def request_stop(self) -> None:
        """Thread-safe and signal-safe: the sender stops claiming now and winds down."""
        self._stop.set()

    async def _run(self, *, until_idle: bool, seconds: float | None) -> SenderReport:
        loop = self._loop = asyncio.get_running_loop()
        self._cutoffs = Cutoffs(loop, self._request_timeout)
        self._results_ready, self._room = asyncio.Event(), asyncio.Event()
        stop_at = loop.time() + seconds if seconds is not None else math.inf
        async with self._transport:
            flusher = asyncio.create_task(self._flush_until_stopped())
            try:
                await self._feed(until_idle=until_idle, stop_at=stop_at)
                await self._wind_down()
            finally:
                self._flushed_last = True
                self._results_ready.set()
                await flusher  # never cancelled mid-write: a result once settled is written
                await self._in_db(services.sender_slots_release, holder=self.holder)
                await self._gate.aclose()
        return self.report

    async def _wind_down(self) -> None:
        """Stop: in-flight requests get `stop_grace` seconds, then they are cut (UNKNOWN).

        Leases and slots are still renewed meanwhile, so nobody else takes what is in flight.
        """
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._stop_grace
        if self._in_flight:
            log.info("sender %s stopping: %s requests in flight", self.holder, len(self._in_flight))
        while self._in_flight and loop.time() < give_up_at:
            await asyncio.wait(list(self._in_flight), timeout=min(REFRESH_EVERY, give_up_at - loop.time()))
            with contextlib.suppress(DatabaseError):  # the requests in flight matter more
                await self._refresh()
        still_running = list(self._in_flight)
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)

    def _in_db(self, function, /, **kwargs):
        """Database work runs in the sender's own thread (and connection), never on the event loop."""
        return self._loop.run_in_executor(self._db, lambda: function(**kwargs))

    # --- the feeder ------------------------------------------------------------------------------

    async def _feed(self, *, until_idle: bool, stop_at: float) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = next_release = 0.0
        last_claim = 0.0
        while not self._stop.is_set() and loop.time() < stop_at:
            now = loop.time()
            try:
                if now >= next_release:
                    await self._in_db(services.messages_release_expired_leases, now=timezone.now())
                    next_release = now + RELEASE_EVERY
                if now >= next_refresh:
                    await self._refresh()
                    next_refresh = loop.time() + REFRESH_EVERY
                    if until_idle and not self._runs and not self._in_flight and not self._results:
                        return
                await self._publish_pause()
                free = self._concurrency - len(self._in_flight)
                wanted = self._gate.capacity(free, len(self._in_flight))
                # Claim in batches at high throughput, but never leave a place idle for long.
                if wanted and (wanted >= max(1, self._concurrency // 8) or now - last_claim > 0.1):
                    last_claim = now
                    await self._claim(wanted)
            except DatabaseError:
                # The database is away (restart, failover): requests in flight go on, and so do we.
                log.exception("sender %s: database error, trying again in a second", self.holder)
                await asyncio.sleep(REFRESH_EVERY)
                continue
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), FEED_TICK if self._any_claimable() else 0.2)

    async def _publish_pause(self) -> None:
        """A pause this sender's gate started goes to every other sender at once."""
        pause = self._gate.take_pause_to_publish()
        if pause is None:
            return
        metrics.PROVIDER_PAUSES.labels("auth" if pause.critical else "breaker").inc()
        log.log(
            logging.CRITICAL if pause.critical else logging.WARNING,
            "%sprovider paused for %.0f s: %s",
            "ALERT " if pause.critical else "",
            pause.until - time.time(),
            pause.reason,
        )
        await self._in_db(services.provider_pause, until=datetime.fromtimestamp(pause.until, tz=UTC))

    def _any_claimable(self) -> bool:
        now = asyncio.get_running_loop().time()
        return any(run.held and run.sendable and now >= run.dry_until for run in self._runs.values())

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        in_flight_mailings = sorted({run.id for run, _ in self._in_flight.values()})
        tokens = list({token for _, token in self._in_flight.values()})
        view = await self._in_db(self._read_and_hold, in_flight_mailings=in_flight_mailings, tokens=tokens)
        self._gate.observe_shared_pause(view.paused_until)
        now_wall, now_loop = timezone.now(), loop.time()
        runs: dict[int, MailingRun] = {}
        for mailing_id, text, end_at in view.sendable:
            run = self._runs.get(mailing_id) or MailingRun(mailing_id, text, end_at)
            run.sendable, run.held = True, mailing_id in view.held
            self._move_end(run, end_at, now_wall, now_loop)
            runs[mailing_id] = run
        sendable = set(runs)
        for run in {run for run, _ in self._in_flight.values()}:
            if run.id in sendable:
                continue
            # Its claims not yet started go back to pending; every object of the mailing is told (one
            # dropped earlier may still have requests waiting in the gate beside a newer one).
            run.sendable = False
            if run.id not in runs:
                self._move_end(run, view.ends.get(run.id, run.end_at), now_wall, now_loop)
                runs[run.id] = run
        for run in self._runs.values():
            if run.id not in runs and run.end_at <= now_wall and not run.expired_pending:
                run.expired_pending = True
                await self._in_db(services.messages_expire_pending, now=now_wall, mailing_id=run.id)
        kept = {
            mailing_id: run
            for mailing_id, run in runs.items()
            if run.sendable or self._cutoffs.sending(mailing_id)
        }
        for mailing_id in self._runs.keys() - kept.keys():
            self._cutoffs.forget(mailing_id)
        self._runs = kept

    def _move_end(self, run: MailingRun, end_at: datetime, now_wall: datetime, now_loop: float) -> None:
        if run.deadline and end_at == run.end_at:
            return
        deadline = now_loop + (end_at - now_wall).total_seconds()
        if run.deadline:
            log.info("mailing=%s end moved to %s", run.id, end_at.isoformat(), extra=log_ids(mailing=run.id))
        # Later extends requests in flight (up to their own limit), earlier cuts them.
        self._cutoffs.set_end(run.id, deadline)
        run.end_at, run.deadline = end_at, deadline

    def _read_and_hold(self, *, in_flight_mailings: list[int], tokens: list[uuid.UUID]) -> "SenderView":
        """One visit to the database per second: everything the refresher needs, in its thread."""
        close_old_connections()  # a connection broken by a database restart is replaced here
        now = timezone.now()
        sendable = Mailing.objects.to_send(now, including=in_flight_mailings)
        wanted = sorted({mailing_id for mailing_id, _, _ in sendable} | set(in_flight_mailings))
        self._windows.keep_only(wanted)
        held = services.sender_slots_hold(holder=self.holder, mailing_ids=wanted, now=now)
        services.messages_renew_leases(tokens=tokens, now=now)
        paused_until = services.provider_paused_until(now=now)
        return SenderView(
            sendable=sendable,
            held=held,
            ends=Mailing.objects.ends(in_flight_mailings),
            paused_until=paused_until.timestamp() if paused_until else None,
        )

    async def _claim(self, wanted: int) -> int:
        """Claim up to `wanted` messages, shared in turn between the mailings this sender holds."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        margin = self._margin()
        candidates = [
            run
            for run in self._runs.values()
            if run.held and run.sendable and now >= run.dry_until and now + margin < run.deadline
        ]
        if not candidates:
            return 0
        self._rotation = (self._rotation + 1) % len(candidates)
        candidates = candidates[self._rotation :] + candidates[: self._rotation]
        share = math.ceil(wanted / len(candidates))
        asks = [(run.id, share) for run in candidates]
        claims, paused_until = await self._in_db(
            self._claim_in_db, asks=asks, wanted=wanted, holder=self.holder
        )
        self._gate.observe_shared_pause(paused_until)
        claimed = 0
        for claim in claims:
            run = self._runs.get(claim.mailing_id)
            if len(claim.rows) < share and run:
                run.dry_until = loop.time() + DRY_FOR
            for row in claim.rows:
                self._start(run, row, claim.token)
            claimed += len(claim.rows)
        return claimed

    def _claim_in_db(
        self, *, asks: list[tuple[int, int]], wanted: int, holder: str
    ) -> tuple[list[Claim], float | None]:
        """Claims in turn; none while another sender's pause holds (read first, one primary-key read)."""
        now, claims = timezone.now(), []
        paused_until = services.provider_paused_until(now=now)
        if paused_until is not None:
            return claims, paused_until.timestamp()
        for mailing_id, share in asks:
            limit = min(share, wanted)
            if limit <= 0:
                break
            window = self._windows[mailing_id]  # only clients whose local window is open now
            where = window.claim_condition(now)
            claim = services.messages_claim(
                mailing_id=mailing_id, limit=limit, now=now, holder=holder, where=where
            )
            if len(claim.rows) < limit:
                window.defer_stragglers(now)
            wanted -= len(claim.rows)
            claims.append(claim)
        return claims, None

    def _margin(self) -> float:
        return max(self._end_margin, self._gate.latency_percentile(END_PERCENTILE))

    # --- one request -------------------------------------------------------------------------

    def _start(self, run: MailingRun, row: ClaimedRow, token: uuid.UUID) -> None:
        task = asyncio.create_task(self._deliver(run, row, token))
        self._in_flight[task] = (run, token)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        del self._in_flight[task]
        self._room.set()

    async def _deliver(self, run: MailingRun, row: ClaimedRow, token: uuid.UUID) -> None:
        loop = asyncio.get_running_loop()
        started: float | None = None
        acquired = False
        cut: Cut | None = None
        try:
            if row.phone is None:
                return self._settle(run, row, token, Outcome.FAILED, "client was deleted")
            if not await self._gate.acquire():
                return self._settle(run, row, token, Outcome.DEFERRED, "sending paused")
            acquired = True
            if self._stop.is_set() or not run.sendable:
                self._gate.record(ProviderAnswer.NO_ANSWER, 0.0)
                return self._settle(run, row, token, Outcome.DEFERRED, "mailing not sendable now")
            task = asyncio.current_task()
            # The end's own timer has the last word: it may fire a moment before the deadline.
            if loop.time() + self._margin() >= run.deadline or not self._cutoffs.begin(run.id, task):
                self._gate.record(ProviderAnswer.NO_ANSWER, 0.0)
                return self._settle(run, row, token, Outcome.EXPIRED, "could not finish before the end")
            started = loop.time()
            try:
                await self._transport.send(OutgoingMessage(row.id, row.phone, run.text))
            finally:
                cut = self._cutoffs.end(run.id, task)
        except asyncio.CancelledError:
            if cut is not None:
                task.uncancel()  # cut by one of its limits, not by our wind-down: handled here
            if cut is Cut.TIMEOUT:  # no answer in time: try again
                metrics.PROVIDER_ERRORS.labels("timeout").inc()
                self._gate.record(ProviderAnswer.ERROR, loop.time() - started)
                self._settle(run, row, token, Outcome.RETRY, no_answer_within(self._request_timeout))
            elif started is None:  # our own wind-down, before the request started
                self._settle(run, row, token, Outcome.DEFERRED, "sender stopped")
            else:  # at the end or by our wind-down: the request may have reached the provider
                metrics.PROVIDER_ERRORS.labels("cut").inc()
                self._gate.record(ProviderAnswer.NO_ANSWER, 0.0)
                detail = "cut at the mailing's end" if cut is Cut.END else "cut by a stopping worker"
                self._settle(run, row, token, Outcome.UNKNOWN, detail)
        except TransportThrottled as error:
            # We go too fast: the pace slows down, the message goes back untouched (attempt given back).
            self._gate.record(ProviderAnswer.THROTTLED, loop.time() - started, retry_after=error.retry_after)
            self._settle(run, row, token, Outcome.THROTTLED, error.detail)
        except TransportAuthError as error:
            self._gate.record(ProviderAnswer.AUTH_REFUSED, loop.time() - started)
            self._settle(run, row, token, Outcome.DEFERRED, error.detail)
        except TransportError as error:
            latency = loop.time() - started
            if error.permanent:
                self._gate.record(ProviderAnswer.REJECTED, latency)
                self._settle(run, row, token, Outcome.FAILED, error.detail)
            else:
                self._gate.record(ProviderAnswer.ERROR, latency)
                self._settle(run, row, token, Outcome.RETRY, error.detail)
        except Exception as error:
            # A surprise (a bug, a library's exception): the message is tried again, not left claimed
            # until its lease runs out, and its place in the pace is given back.
            log.exception(
                "mailing=%s message=%s client=%s: unexpected error in sender %s",
                run.id,
                row.id,
                row.client_id,
                self.holder,
                extra=log_ids(mailing=run.id, message=row.id, client=row.client_id),
            )
            if acquired:
                self._gate.record(ProviderAnswer.ERROR, 0.0 if started is None else loop.time() - started)
            self._settle(run, row, token, Outcome.RETRY, f"unexpected {type(error).__name__}")
        else:
            self._gate.record(ProviderAnswer.ACCEPTED, loop.time() - started)
            self._settle(run, row, token, Outcome.SENT, "", answered_at=timezone.now())

    def _settle(
        self,
        run: MailingRun,
        row: ClaimedRow,
        token: uuid.UUID,
        outcome: Outcome,
        detail: str,
        *,
        answered_at: datetime | None = None,
    ):
        self._results.append(Result(row.id, token, outcome, row.attempt, detail, answered_at))
        self._results_ready.set()
        self.report.outcomes[outcome] += 1
        log.info(
            "mailing=%s message=%s client=%s attempt=%s outcome=%s%s",
            run.id,
            row.id,
            row.client_id,
            row.attempt,
            outcome,
            f" error={detail!r}" if detail else "",
            extra=log_ids(mailing=run.id, message=row.id, client=row.client_id),
        )

    # --- writing results -------------------------------------------------------------------------

    async def _flush_until_stopped(self) -> None:
        while True:
            await self._results_ready.wait()
            last = self._flushed_last
            try:
                await self._flush()
            except DatabaseError:
                log.exception("sender %s: results not written yet, trying again in a second", self.holder)
                await asyncio.sleep(REFRESH_EVERY)
                self._results_ready.set()
                continue
            if last:
                return
            await asyncio.sleep(FLUSH_PAUSE)

    async def _flush(self) -> None:
        self._results_ready.clear()
        if not self._results:
            return
        results, self._results = self._results, []
        # Deferred by a pause: due again when the pause ends, not before.
        deferred_until = datetime.fromtimestamp(max(self._gate.paused_until, time.time()), tz=UTC)
        try:
            await self._in_db(
                services.messages_record, results=results, now=timezone.now(), deferred_until=deferred_until
            )
        except DatabaseError:
            self._results[:0] = results  # kept, in order, for the next write
            raise


@dataclass(frozen=True, slots=True)
class SenderView:
    sendable: list[tuple[int, str, datetime]]
    held: set[int]
    ends: dict[int, datetime]
    paused_until: float | None
