"""The sending engine's one door to Django: `store.MessageStore` on the database.

Every call runs in the store's own thread (and database connection), never on the event loop, and
reads the time from the sender's clock. The rows' transitions themselves live in
`messages_app.services`; this module only puts them in the order one sender needs them.
"""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from django.db import DatabaseError, close_old_connections, connections

from mailings.models import Mailing
from messages_app import selectors, services
from messages_app.windows import WindowGuards

from .clock import Clock
from .outcomes import Result
from .store import Claim, SenderView, StoreUnavailable


class DjangoMessageStore:
    def __init__(self, *, holder: str, clock: Clock):
        self.holder = holder
        self._clock = clock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sender-db")
        self._windows = WindowGuards()  # the mailings' local-time windows; this thread only
        self._personalized: set[int] = set()  # mailings whose text has placeholders

    async def _in_thread(self, function, /, **kwargs):
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, lambda: function(**kwargs))
        except DatabaseError as error:
            raise StoreUnavailable(str(error)) from error

    def close(self) -> None:
        self._thread.submit(connections.close_all).result()
        self._thread.shutdown()

    async def look(self, *, in_flight_mailings: list[int], tokens: list[uuid.UUID]) -> SenderView:
        return await self._in_thread(self._look, in_flight_mailings=in_flight_mailings, tokens=tokens)

    def _look(self, *, in_flight_mailings: list[int], tokens: list[uuid.UUID]) -> SenderView:
        close_old_connections()  # a connection broken by a database restart is replaced here
        now = self._clock.now()
        sendable = selectors.mailings_to_send(now=now, including=in_flight_mailings)
        wanted = sorted({mailing_id for mailing_id, _, _ in sendable} | set(in_flight_mailings))
        self._personalized = {mailing_id for mailing_id, template, _ in sendable if template.placeholders}
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

    async def claim(self, *, asks: list[tuple[int, int]], wanted: int) -> tuple[list[Claim], float | None]:
        return await self._in_thread(self._claim, asks=asks, wanted=wanted)

    def _claim(self, *, asks: list[tuple[int, int]], wanted: int) -> tuple[list[Claim], float | None]:
        now, claims = self._clock.now(), list[Claim]()
        paused_until = services.provider_paused_until(now=now)  # one primary-key read
        if paused_until is not None:
            return claims, paused_until.timestamp()
        for mailing_id, share in asks:
            limit = min(share, wanted)
            if limit <= 0:
                break
            window = self._windows[mailing_id]  # only clients whose local window is open now
            claim = services.messages_claim(
                mailing_id=mailing_id,
                limit=limit,
                now=now,
                holder=self.holder,
                where=window.claim_condition(now),
                with_attributes=mailing_id in self._personalized,
            )
            if len(claim.rows) < limit:
                window.defer_stragglers(now)
            wanted -= len(claim.rows)
            claims.append(claim)
        return claims, None

    async def record(self, *, results: list[Result], deferred_until: float) -> int:
        return await self._in_thread(
            services.messages_record,
            results=results,
            now=self._clock.now(),
            deferred_until=datetime.fromtimestamp(deferred_until, tz=UTC),
        )

    async def release_expired_leases(self) -> int:
        return await self._in_thread(services.messages_release_expired_leases, now=self._clock.now())

    async def expire_pending(self, *, mailing_id: int) -> int:
        return await self._in_thread(
            services.messages_expire_pending, now=self._clock.now(), mailing_id=mailing_id
        )

    async def pause_all(self, *, until: float) -> None:
        await self._in_thread(services.provider_pause, until=datetime.fromtimestamp(until, tz=UTC))

    async def release_slots(self) -> int:
        return await self._in_thread(services.sender_slots_release, holder=self.holder)
