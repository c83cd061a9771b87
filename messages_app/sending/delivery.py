"""The requests a sender has in flight, one task each, from the gate to a settled result.

A request is routed to a provider first (`routing.Providers`), asks that provider's gate (pause,
pace), then sends until an answer, its own timeout
or its mailing's end, whichever comes first (`cutoffs.Cutoffs`); what ended it is classified once,
by `outcomes.fate_of`, which says both what becomes of the message and what the gate learns.
"""

import asyncio
import logging
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ops import metrics
from ops.logging import log_ids

from . import outcomes
from .clock import Clock
from .cutoffs import Cut, Cutoffs
from .outcomes import Fate, Outcome, ProviderAnswer, Result, fate_of, final_fate
from .results import ResultWriter
from .routing import NoRoute, Providers, Route
from .runs import MailingRun
from .store import ClaimedRow
from .transports.base import OutgoingMessage, TransportError

log = logging.getLogger(__name__)

END_PERCENTILE = 0.99  # of recent latencies: a request must have this long left before the end


@dataclass(slots=True)
class SenderReport:
    outcomes: Counter = field(default_factory=Counter)

    def __getitem__(self, outcome: Outcome) -> int:
        return self.outcomes[outcome]


class Deliveries:
    def __init__(
        self,
        *,
        providers: Providers,
        cutoffs: Cutoffs,
        writer: ResultWriter,
        clock: Clock,
        stopping: threading.Event,
        end_margin: float,
        request_timeout: float,
        max_attempts: int,
        report: SenderReport,
        holder: str,
    ):
        self._providers = providers
        self._cutoffs = cutoffs
        self._writer = writer
        self._clock = clock
        self._stopping = stopping
        self._end_margin = end_margin
        self._request_timeout = request_timeout
        self._max_attempts = max_attempts
        self._report = report
        self._holder = holder
        self._tasks: dict[asyncio.Task, tuple[MailingRun, uuid.UUID]] = {}
        self.room = asyncio.Event()  # set when a request ends: the feeder may claim again

    # --- what is in flight ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tasks)

    def tasks(self) -> list[asyncio.Task]:
        return list(self._tasks)

    def runs(self) -> set[MailingRun]:
        return {run for run, _ in self._tasks.values()}

    def mailing_ids(self) -> list[int]:
        return sorted({run.id for run, _ in self._tasks.values()})

    def tokens(self) -> list[uuid.UUID]:
        return list({token for _, token in self._tasks.values()})

    def margin(self) -> float:
        """How long before its mailing's end a request may still start."""
        return max(self._end_margin, self._providers.latency_percentile(END_PERCENTILE))

    def start(self, run: MailingRun, row: ClaimedRow, token: uuid.UUID) -> None:
        task = asyncio.create_task(self._deliver(run, row, token))
        self._tasks[task] = (run, token)
        task.add_done_callback(self._finished)

    async def cancel_all(self) -> None:
        """Cuts every request still in flight (each settles as its fate says) and waits for them."""
        still_running = self.tasks()
        for task in still_running:
            task.cancel()
        await asyncio.gather(*still_running, return_exceptions=True)

    def _finished(self, task: asyncio.Task) -> None:
        del self._tasks[task]
        self.room.set()

    # --- one request ---------------------------------------------------------------------------

    async def _deliver(self, run: MailingRun, row: ClaimedRow, token: uuid.UUID) -> None:
        if row.client_id is None:
            return self._settle(run, row, token, outcomes.CLIENT_DELETED)
        try:
            route = self._providers.choose(row.operator_code)
        except NoRoute as error:
            return self._settle(run, row, token, outcomes.unroutable(str(error)))
        if route is None:  # every provider that takes it is paused
            return self._settle(run, row, token, outcomes.PAUSED)
        route.in_flight += 1
        try:
            await self._deliver_through(route, run, row, token)
        finally:
            route.in_flight -= 1

    async def _deliver_through(
        self, route: Route, run: MailingRun, row: ClaimedRow, token: uuid.UUID
    ) -> None:
        task = asyncio.current_task()
        assert task is not None  # this coroutine runs as the task start() made
        started: float | None = None
        acquired = False
        cut: Cut | None = None
        try:
            if not await route.gate.acquire():
                return self._settle(run, row, token, outcomes.PAUSED)
            acquired = True
            if self._stopping.is_set() or not run.sendable:
                return self._settle_heard(route, run, row, token, None, outcomes.NOT_SENDABLE)
            # The end's own timer has the last word: it may fire a moment before the deadline.
            if self._clock.monotonic() + self.margin() >= run.deadline or not self._cutoffs.begin(
                run.id, task
            ):
                return self._settle_heard(route, run, row, token, None, outcomes.TOO_LATE)
            started = self._clock.monotonic()
            try:
                text = run.template.render(row.attributes)
                provider_message_id = await route.transport.send(OutgoingMessage(row.id, row.phone, text))
            finally:
                cut = self._cutoffs.end(run.id, task)
        except asyncio.CancelledError:
            if cut is not None:
                task.uncancel()  # cut by one of its limits, not by our wind-down: handled here
            if started is None:  # our own wind-down, before the request started
                return self._settle(run, row, token, outcomes.STOPPED)
            metrics.PROVIDER_ERRORS.labels("timeout" if cut is Cut.TIMEOUT else "cut").inc()
            self._settle_heard(route, run, row, token, started, self._fate(cut or Cut.STOP))
        except Exception as error:
            if not isinstance(error, TransportError):
                log.exception(
                    "mailing=%s message=%s client=%s: unexpected error in sender %s",
                    run.id,
                    row.id,
                    row.client_id,
                    self._holder,
                    extra=log_ids(mailing=run.id, message=row.id, client=row.client_id),
                )
            fate = self._fate(error)
            if acquired:  # its place in the pace is given back
                self._settle_heard(route, run, row, token, started, fate)
            else:
                self._settle(run, row, token, fate)
        else:
            self._settle_heard(route, run, row, token, started, self._fate(None), provider_message_id)

    def _fate(self, ended_by: Exception | Cut | None) -> Fate:
        return fate_of(ended_by, request_timeout=self._request_timeout)

    def _settle_heard(
        self,
        route: Route,
        run: MailingRun,
        row: ClaimedRow,
        token: uuid.UUID,
        started: float | None,
        fate: Fate,
        provider_message_id: str = "",
    ) -> None:
        """Settles a request the gate let through: every acquire() is followed by one record()."""
        now = self._clock.monotonic()
        latency = 0.0 if started is None or fate.answer is ProviderAnswer.NO_ANSWER else now - started
        route.gate.record(fate.answer, latency, retry_after=fate.retry_after)
        self._providers.heard(route, fate.answer)
        answered_at = self._clock.now() if fate.outcome is Outcome.SENT else None
        self._settle(
            run,
            row,
            token,
            fate,
            answered_at=answered_at,
            provider=route.name,
            provider_message_id=provider_message_id,
        )

    def _settle(
        self,
        run: MailingRun,
        row: ClaimedRow,
        token: uuid.UUID,
        fate: Fate,
        *,
        answered_at: datetime | None = None,
        provider: str = "",
        provider_message_id: str = "",
    ) -> None:
        fate = final_fate(
            fate, attempt=row.attempt, max_attempts=self._max_attempts, unanswered_before=row.unanswered
        )
        due_at = None
        if fate.outcome is Outcome.DEFERRED and (resume_at := self._providers.resume_at(row.operator_code)):
            due_at = datetime.fromtimestamp(resume_at, tz=UTC)
        self._writer.add(
            Result(
                row.id,
                token,
                fate.outcome,
                row.attempt,
                fate.detail,
                answered_at,
                provider,
                provider_message_id[:64],  # the column's length: a longer id is no provider's
                due_at,
            )
        )
        self._report.outcomes[fate.outcome] += 1
        log.info(
            "mailing=%s message=%s client=%s attempt=%s provider=%s outcome=%s%s",
            run.id,
            row.id,
            row.client_id,
            row.attempt,
            provider or "-",
            fate.outcome,
            f" error={fate.detail!r}" if fate.detail else "",
            extra=log_ids(mailing=run.id, message=row.id, client=row.client_id),
        )
