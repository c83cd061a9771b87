"""The sender: one loop per worker process that sends the due messages of every sendable mailing.

It runs in a thread of its own in each Celery pool process (`messages_app.tasks` starts it), so
sending never holds a pool slot and launch, scan and sweep tasks never wait behind it. It wires:

- `runs.MailingRuns`: which mailings may send now (refreshed every second) and claims shared in
  turn between them;
- the feeder (`_feed`, here): fills the request places the gate's pace allows with claims;
- `delivery.Deliveries`: one task per request, routed to a provider (`routing.Providers`), through
  that provider's gate (`gate.ProviderGate`: pause, breaker, adaptive in-flight limit, rate limits)
  and its limits (`cutoffs.Cutoffs`), classified by `outcomes.fate_of`;
- `results.ResultWriter`: writes results in batches, each fenced by its claim token.

The mailing's end is a hard deadline: no request starts unless it can finish before it (margin: a
high percentile of recent latencies), a request still in flight at the end is cut and recorded as
UNKNOWN (it reached the provider, its answer did not reach us), and moving the end moves the
deadline of requests in flight, earlier or later (later only up to the request's own timeout).

Stopping (`request_stop`, SIGTERM in a worker): no more claims, requests in flight get up to
`stop_grace` seconds, those still running are cut (UNKNOWN), every result is written and the
slots are given back. All time comes from one `clock.Clock`; the database only through the
`store.MessageStore` it is given.
"""

import asyncio
import contextlib
import logging
import math
import threading

from ops import metrics

from .clock import Clock
from .cutoffs import Cutoffs
from .delivery import Deliveries, SenderReport
from .results import ResultWriter
from .routing import Providers, Route
from .runs import MailingRuns
from .store import MessageStore, StoreUnavailable

log = logging.getLogger(__name__)

FEED_TICK = 0.02  # seconds between the feeder's looks at the free request places
IDLE_TICK = 0.2  # the same when no mailing may be claimed for
REFRESH_EVERY = 1.0  # seconds between re-reads of the mailings (and lease renewals)
RELEASE_EVERY = 2.0  # seconds between looks for leases that dead senders left behind
CLAIM_AT_LEAST_EVERY = 0.1  # seconds: a small free place is claimed for no later than this
DELIVERY_SPEEDS_EVERY = 60.0  # seconds between looks at how fast the providers deliver


class Sender:
    def __init__(
        self,
        *,
        providers: Providers,
        store: MessageStore,
        clock: Clock,
        concurrency: int,
        end_margin: float,
        stop_grace: float,
        request_timeout: float,
        max_attempts: int,
    ):
        self.holder = store.holder
        self.report = SenderReport()
        self._providers = providers
        self._store = store
        self._clock = clock
        self._concurrency = concurrency  # the ceiling: the gate's pace decides how much of it is used
        self._end_margin = end_margin
        self._stop_grace = stop_grace
        self._request_timeout = request_timeout
        self._max_attempts = max_attempts
        self._stop = threading.Event()

    def run(self, *, until_idle: bool = False, seconds: float | None = None) -> SenderReport:
        """Send until `request_stop()` (from any thread); tests may also stop it when nothing is left
        to send (`until_idle`) or after `seconds`. Blocks; a worker runs it in a thread of its own.
        """
        try:
            with asyncio.Runner(loop_factory=self._clock.new_event_loop) as runner:
                return runner.run(self._run(until_idle=until_idle, seconds=seconds))
        finally:
            self._store.close()

    def request_stop(self) -> None:
        """Thread-safe and signal-safe: the sender stops claiming now and winds down."""
        self._stop.set()

    async def _run(self, *, until_idle: bool, seconds: float | None) -> SenderReport:
        cutoffs = Cutoffs(asyncio.get_running_loop(), self._request_timeout)
        self._writer = ResultWriter(store=self._store)
        self._mailings = MailingRuns(
            store=self._store, providers=self._providers, cutoffs=cutoffs, clock=self._clock
        )
        self._deliveries = Deliveries(
            providers=self._providers,
            cutoffs=cutoffs,
            writer=self._writer,
            clock=self._clock,
            stopping=self._stop,
            end_margin=self._end_margin,
            request_timeout=self._request_timeout,
            max_attempts=self._max_attempts,
            report=self.report,
            holder=self.holder,
        )
        stop_at = self._clock.monotonic() + seconds if seconds is not None else math.inf
        async with self._providers:
            writing = asyncio.create_task(self._writer.run())
            try:
                await self._feed(until_idle=until_idle, stop_at=stop_at)
                await self._wind_down()
            finally:
                self._writer.close()
                await writing  # never cancelled mid-write: a result once settled is written
                await self._store.release_slots()
                await self._providers.aclose()
        return self.report

    async def _feed(self, *, until_idle: bool, stop_at: float) -> None:
        next_refresh = next_release = next_speeds = last_claim = 0.0
        providers_version: str | None = None
        while not self._stop.is_set() and self._clock.monotonic() < stop_at:
            now = self._clock.monotonic()
            try:
                if now >= next_release:
                    await self._store.release_expired_leases()
                    next_release = now + RELEASE_EVERY
                if now >= next_speeds:
                    await self._judge_delivery_speeds()
                    next_speeds = now + DELIVERY_SPEEDS_EVERY
                if now >= next_refresh:
                    await self._mailings.refresh(self._deliveries)
                    await self._publish_weights()
                    if providers_version is None:
                        providers_version = self._mailings.providers_version
                    elif self._mailings.providers_version != providers_version:
                        # Built from the providers as they were: its worker starts a new sender.
                        log.info("sender %s: the providers changed, starting anew", self.holder)
                        return
                    next_refresh = self._clock.monotonic() + REFRESH_EVERY
                    if until_idle and not (self._mailings or self._deliveries or self._writer):
                        return
                await self._publish_pauses()
                wanted = self._providers.capacity(self._concurrency - len(self._deliveries))
                # Claim in batches at high throughput, but never leave a place idle for long.
                if wanted and (
                    wanted >= max(1, self._concurrency // 8) or now - last_claim > CLAIM_AT_LEAST_EVERY
                ):
                    last_claim = now
                    for run, claim in await self._mailings.claim(wanted, margin=self._deliveries.margin()):
                        for row in claim.rows:
                            self._deliveries.start(run, row, claim.token)
            except StoreUnavailable:
                # The database is away (restart, failover): requests in flight go on, and so do we.
                log.exception("sender %s: database error, trying again in a second", self.holder)
                await asyncio.sleep(REFRESH_EVERY)
                continue
            self._deliveries.room.clear()
            with contextlib.suppress(TimeoutError):
                tick = FEED_TICK if self._mailings.claimable() else IDLE_TICK
                await asyncio.wait_for(self._deliveries.room.wait(), tick)

    async def _publish_pauses(self) -> None:
        for route in self._providers.routes:
            await self._publish_pause(route)

    async def _publish_pause(self, route: Route) -> None:
        """A pause a provider's gate started goes to every other sender at once."""
        pause = route.gate.take_pause_to_publish()
        if pause is None:
            return
        metrics.PROVIDER_PAUSES.labels("auth" if pause.critical else "breaker").inc()
        log.log(
            logging.CRITICAL if pause.critical else logging.WARNING,
            "%sprovider paused: %s for %.0f s, %s",
            "ALERT " if pause.critical else "",
            route.name,
            pause.until - self._clock.wall(),
            pause.reason,
        )
        await self._store.pause(provider=route.name, until=pause.until)

    async def _judge_delivery_speeds(self) -> None:
        """Providers whose recent messages were delivered late lose weight (`Weights.slow`)."""
        weights = self._providers.weights
        speeds = await self._store.delivery_speeds(
            providers=self._providers.names(), slow_after=weights.slow.after, window=weights.slow.window
        )
        for name, speed in speeds.items():
            weights.on_delivery_speed(name, speed)

    async def _publish_weights(self) -> None:
        """Weights shifted by errors or slow delivery, or drifting back, are logged and recorded
        with their reason."""
        weights = self._providers.weights
        weights.drift()
        changes = weights.take_changes()
        for change in changes:
            log.warning(
                "provider %s weight %s -> %s: %s",
                change.provider,
                change.weight_from,
                change.weight_to,
                change.reason,
            )
        if changes:
            await self._store.record_weight_changes(changes=changes)

    async def _wind_down(self) -> None:
        """Stop: in-flight requests get `stop_grace` seconds, then they are cut (UNKNOWN).

        Leases and slots are still renewed meanwhile, so nobody else takes what is in flight.
        """
        give_up_at = self._clock.monotonic() + self._stop_grace
        if self._deliveries:
            log.info("sender %s stopping: %s requests in flight", self.holder, len(self._deliveries))
        while self._deliveries and self._clock.monotonic() < give_up_at:
            timeout = min(REFRESH_EVERY, give_up_at - self._clock.monotonic())
            await asyncio.wait(self._deliveries.tasks(), timeout=timeout)
            with contextlib.suppress(StoreUnavailable):  # the requests in flight matter more
                await self._mailings.refresh(self._deliveries)
        await self._deliveries.cancel_all()
