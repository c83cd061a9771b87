"""The dispatcher: sends one mailing's due messages with many requests in flight.

One dispatcher runs inside one Celery task for a bounded time. Its feeder claims due messages
from the database in batches and queues them; `concurrency` worker coroutines take them off the
queue and send each through the transport; results are written back in bulk every fraction of a
second. Database work runs in one thread beside the event loop, so HTTP never waits for it.

The mailing's end time is a hard deadline: no request starts after it, none in flight outlives
it, and anything unsent when it comes is expired.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import uvloop
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from mailings.models import Mailing

from . import services
from .services import ClaimedRow, Outcomes
from .transports.base import OutgoingMessage, Transport, TransportAuthError, TransportError
from .transports.probe import ProbeTransport
from .window_guard import WindowGuard

log = logging.getLogger(__name__)

FEED_TICK = 0.02  # seconds between the feeder's looks at the queue
FLUSH_EVERY = 0.25  # seconds between bulk writes of results
FLUSH_AT = 1000  # results that force a write sooner
REFRESH_EVERY = 1.0  # seconds between re-reads of the mailing (end time moved, deleted)
HEARTBEAT_EVERY = 5.0
# Longest idle wait (a local window may open hours later): a task's countdown must stay below the
# broker's visibility timeout (Redis: one hour), or the task would be delivered twice.
LONGEST_WAIT = 600.0


@dataclass(slots=True)
class DispatchReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    expired: int = 0
    # Seconds after which a new dispatch should look again; None when this mailing needs none.
    next_run_in: float | None = None

    def add(self, outcomes: Outcomes) -> None:
        self.sent += len(outcomes.sent)
        self.failed += len(outcomes.failed)
        self.retried += len(outcomes.retry)
        self.deferred += len(outcomes.deferred)
        self.expired += len(outcomes.expired)


def _in_db_thread(function, /, **kwargs):
    return sync_to_async(function, thread_sensitive=True)(**kwargs)


class Dispatcher:
    def __init__(
        self,
        mailing_id: int,
        *,
        transport: Transport,
        concurrency: int,
        run_seconds: float,
        end_margin: float,
        breaker_threshold: int,
        breaker_pause: float,
        auth_pause: float,
    ):
        self.mailing_id = mailing_id
        self._transport = transport
        self._concurrency = concurrency
        self._run_seconds = run_seconds
        self._end_margin = end_margin
        self._breaker_threshold = breaker_threshold
        self._breaker_pause = breaker_pause
        self._auth_pause = auth_pause

        self._mailing: Mailing | None = None
        self._window: WindowGuard | None = None  # the mailing's local-time window, once loaded
        self._deadline = 0.0  # event-loop time at which sending must have stopped
        self._deadline_scopes: set[asyncio.Timeout] = set()
        self._paused_until = 0.0  # event-loop time; set by the breaker or a refused token
        # After a pause one message goes alone (half-open); full speed only once it is accepted.
        self._probing = False
        self._pause_to_publish: float | None = None  # seconds, for the other dispatchers
        self._consecutive_failures = 0
        self._busy = 0
        self._outcomes = Outcomes()
        self._report = DispatchReport()

    @classmethod
    def from_settings(cls, mailing_id: int) -> "Dispatcher":
        return cls(
            mailing_id,
            transport=ProbeTransport(
                base_url=settings.PROVIDER_URL,
                token=settings.PROVIDER_TOKEN,
                connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
                read_timeout=settings.PROVIDER_READ_TIMEOUT,
                max_connections=settings.SENDER_CONCURRENCY,
            ),
            concurrency=settings.SENDER_CONCURRENCY,
            run_seconds=settings.SENDER_TASK_SECONDS,
            end_margin=settings.SENDER_END_MARGIN,
            breaker_threshold=settings.SENDER_BREAKER_THRESHOLD,
            breaker_pause=settings.SENDER_BREAKER_PAUSE,
            auth_pause=settings.SENDER_AUTH_PAUSE,
        )

    def run(self) -> DispatchReport:
        # uvloop: the event loop is most of a dispatcher's CPU (about a quarter less per message).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(self._run())

    async def _run(self) -> DispatchReport:
        queue: asyncio.Queue[tuple[ClaimedRow, OutgoingMessage]] = asyncio.Queue()
        async with self._transport:
            workers = [asyncio.create_task(self._work(queue)) for _ in range(self._concurrency)]
            try:
                self._report.next_run_in = await self._feed(queue)
                await queue.join()
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                try:
                    await self._flush()
                finally:
                    # The database thread outlives this run: leave no connection open in it.
                    await _in_db_thread(connections.close_all)
        return self._report

    # --- the feeder: claims, refreshes, flushes ----------------------------------------------

    async def _feed(self, queue: asyncio.Queue) -> float | None:
        loop = asyncio.get_running_loop()
        stop_claiming_at = loop.time() + self._run_seconds
        next_refresh = next_heartbeat = next_flush = 0.0
        while True:
            now = loop.time()
            if now >= next_refresh:
                if not await self._refresh():
                    return None
                next_refresh = now + REFRESH_EVERY
            if now >= self._deadline:
                await self._flush()
                await _in_db_thread(
                    services.messages_expire_pending, now=self._mailing.end_at, mailing_id=self.mailing_id
                )
                return None
            if now >= next_heartbeat:
                await _in_db_thread(
                    services.mailing_heartbeat, mailing_id=self.mailing_id, now=timezone.now()
                )
                next_heartbeat = now + HEARTBEAT_EVERY
            if self._pause_to_publish is not None:
                await _in_db_thread(
                    services.provider_pause, seconds=self._pause_to_publish, now=timezone.now()
                )
                self._pause_to_publish = None

            claimed = 0
            if now >= stop_claiming_at:
                if queue.empty() and not self._busy:
                    return 0.0  # more may be due: a fresh task carries on
            else:
                wanted = self._claim_size(queue)
                # The shared pause is read only when claiming: the queue holds a fraction of a second.
                if wanted and not await self._paused():
                    claimed = await self._claim_into(queue, limit=wanted)

            if len(self._outcomes) >= FLUSH_AT or (now >= next_flush and len(self._outcomes)):
                await self._flush()
                next_flush = now + FLUSH_EVERY

            if not claimed and queue.empty() and not self._busy:
                await self._flush()
                wait = await self._idle_wait()
                if wait is None:
                    return None
                if wait > stop_claiming_at - loop.time():
                    return wait
                await asyncio.sleep(max(wait, FEED_TICK))
                continue
            await asyncio.sleep(FEED_TICK)

    async def _refresh(self) -> bool:
        """Re-read the mailing: its end may have moved, it may be gone. False: stop now."""
        mailing = await _in_db_thread(self._load_mailing)
        if mailing is None:
            log.info("mailing %s: deleted, dispatcher stops", self.mailing_id)
            return False
        self._mailing = mailing
        if self._window is None:
            self._window = WindowGuard.for_mailing(mailing)
        loop = asyncio.get_running_loop()
        left = (mailing.end_at - timezone.now()).total_seconds() - self._end_margin
        deadline = loop.time() + left
        if self._deadline and deadline < self._deadline - 0.01:
            log.info("mailing %s: end moved earlier to %s", self.mailing_id, mailing.end_at.isoformat())
            for scope in self._deadline_scopes:
                scope.reschedule(deadline)
        self._deadline = deadline
        return True

    def _load_mailing(self) -> Mailing | None:
        return (
            Mailing.objects.filter(pk=self.mailing_id)
            .only(
                "text", "start_at", "end_at", "fanout_completed_at", "local_window_start", "local_window_end"
            )
            .first()
        )

    async def _paused(self) -> bool:
        loop = asyncio.get_running_loop()
        until = await _in_db_thread(services.provider_paused_until, now=timezone.now())
        if until is not None:
            self._probing = True
            self._paused_until = max(
                self._paused_until, loop.time() + (until - timezone.now()).total_seconds()
            )
        return loop.time() < self._paused_until

    def _claim_size(self, queue: asyncio.Queue) -> int:
        """Refill once the queue is down to half; after a pause, one message alone (the probe)."""
        if self._probing:
            return 1 if queue.empty() and not self._busy else 0
        if queue.qsize() <= self._concurrency // 2:
            return self._concurrency - queue.qsize()
        return 0

    async def _claim_into(self, queue: asyncio.Queue, *, limit: int) -> int:
        rows = await _in_db_thread(self._claim, limit=limit, now=timezone.now())
        text = self._mailing.text
        for row in rows:
            queue.put_nowait((row, OutgoingMessage(row.id, row.phone, text)))
        return len(rows)

    def _claim(self, *, limit: int, now: datetime) -> list[ClaimedRow]:
        """In the database thread: only messages whose client's local window is open now."""
        condition = self._window.claim_condition(now)
        return services.messages_claim(mailing_id=self.mailing_id, limit=limit, now=now, condition=condition)

    async def _idle_wait(self) -> float | None:
        """Nothing to send right now: seconds until something may be, None if never."""
        if self._mailing.fanout_completed_at is None:
            return REFRESH_EVERY  # the launcher is still creating messages
        paused_for = self._paused_until - asyncio.get_running_loop().time()
        # Due messages of closed zones, which no claim hands out, are deferred to their opening first.
        next_due = await _in_db_thread(self._window.next_attempt_at, now=timezone.now())
        if next_due is None:
            return None
        return min(max(paused_for, (next_due - timezone.now()).total_seconds(), 0.0), LONGEST_WAIT)

    async def _flush(self) -> None:
        if not len(self._outcomes):
            return
        outcomes, self._outcomes = self._outcomes, Outcomes()
        loop = asyncio.get_running_loop()
        now = timezone.now()
        deferred_until = now + timedelta(seconds=max(0.0, self._paused_until - loop.time()))
        await _in_db_thread(
            services.messages_record, outcomes=outcomes, now=now, deferred_until=deferred_until
        )
        self._report.add(outcomes)

    # --- the workers: one request at a time each ---------------------------------------------

    async def _work(self, queue: asyncio.Queue) -> None:
        while True:
            row, message = await queue.get()
            self._busy += 1
            try:
                await self._deliver(row, message)
            finally:
                self._busy -= 1
                queue.task_done()

    async def _deliver(self, row: ClaimedRow, message: OutgoingMessage) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if message.phone is None:
            self._settle(row, "failed", "client was deleted")
            return
        if started >= self._deadline:
            self._settle(row, "expired", "mailing ended")
            return
        if started < self._paused_until:
            self._settle(row, "deferred", "sending paused")
            return
        try:
            async with asyncio.timeout_at(self._deadline) as scope:
                self._deadline_scopes.add(scope)
                try:
                    await self._transport.send(message, timeout=self._deadline - started)
                finally:
                    self._deadline_scopes.discard(scope)
        except TimeoutError:
            self._settle(row, "expired", "mailing ended during the request")
        except TransportAuthError as error:
            self._pause(
                self._auth_pause,
                f"ALERT {error.detail}: nothing is sent until the token works",
                level=logging.CRITICAL,
            )
            self._settle(row, "deferred", error.detail)
        except TransportError as error:
            if error.permanent:
                self._settle(row, "failed", error.detail)
            elif loop.time() >= self._deadline:
                self._settle(row, "expired", error.detail)
            else:
                self._consecutive_failures += 1
                if self._probing or self._consecutive_failures >= self._breaker_threshold:
                    self._pause(self._breaker_pause, f"{self._consecutive_failures} failures in a row")
                    self._consecutive_failures = 0
                self._settle(row, "retry", error.detail)
        else:
            self._consecutive_failures = 0
            self._probing = False
            self._settle(row, "sent", "")

    def _settle(self, row: ClaimedRow, outcome: str, detail: str) -> None:
        if outcome == "sent":
            self._outcomes.sent.append(row.id)
        elif outcome == "failed":
            self._outcomes.failed.append((row.id, detail))
        elif outcome == "retry":
            self._outcomes.retry.append((row.id, row.attempt, detail))
        elif outcome == "deferred":
            self._outcomes.deferred.append((row.id, detail))
        else:
            self._outcomes.expired.append(row.id)
        log.info(
            "mailing=%s message=%s client=%s attempt=%s outcome=%s%s",
            self.mailing_id,
            row.id,
            row.client_id,
            row.attempt,
            outcome,
            f" error={detail!r}" if detail and outcome != "expired" else "",
        )

    def _pause(self, seconds: float, why: str, *, level: int = logging.WARNING) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._paused_until:
            return
        self._paused_until = loop.time() + seconds
        self._pause_to_publish = seconds
        self._probing = True
        log.log(level, "mailing=%s provider paused for %.0f s: %s", self.mailing_id, seconds, why)
