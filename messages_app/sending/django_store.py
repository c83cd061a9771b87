"""The sending engine's one door to Django: `store.MessageStore` on the database.

Every call runs in the store's own thread (and database connection), never on the event loop, and
reads the time from the sender's clock. The rows' transitions themselves live in
`messages_app.services`; this module only puts them in the order one sender needs them.
"""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from mailings.models import Mailing
from messages_app import selectors, services
from messages_app.windows import WindowGuards
from providers.selectors import providers_version
from providers.services import provider_weight_changes_record

from .clock import Clock
from .outcomes import Result
from .store import Claim, DeliverySpeed, SenderView, StoreUnavailable, WeightChange


class DjangoMessageStore:
    def __init__(self, *, holder: str, clock: Clock):
        self.holder = holder
        self._clock = clock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sender-db")
        self._windows = WindowGuards()  # the mailings' local-time windows; this thread only
        self._cap_exempt: dict[int, bool] = {}  # frozen at launch, so read once per mailing
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
        services.sender_heartbeat(holder=self.holder, now=now)
        self._cap_exempt = {
            mailing_id: self._cap_exempt[mailing_id]
            for mailing_id in wanted
            if mailing_id in self._cap_exempt
        }
        held = services.sender_slots_hold(holder=self.holder, mailing_ids=wanted, now=now)
        services.messages_renew_leases(tokens=tokens, now=now)
        return SenderView(
            sendable=sendable,
            held=held,
            ends=Mailing.objects.ends(in_flight_mailings),
            pauses=self._pauses(now),
            providers_version=providers_version(),
        )

    @staticmethod
    def _pauses(now: datetime) -> dict[str, float]:
        return {name: until.timestamp() for name, until in services.provider_pauses(now=now).items()}

    async def claim(
        self, *, asks: list[tuple[int, int]], wanted: int, providers: list[str]
    ) -> tuple[list[Claim], dict[str, float]]:
        return await self._in_thread(self._claim, asks=asks, wanted=wanted, providers=providers)

    def _claim(
        self, *, asks: list[tuple[int, int]], wanted: int, providers: list[str]
    ) -> tuple[list[Claim], dict[str, float]]:
        now, claims = self._clock.now(), list[Claim]()
        pauses = self._pauses(now)  # a small table: a row per provider ever paused
        if set(providers) <= pauses.keys():
            return claims, pauses
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
                cap=self._cap(mailing_id),
                with_attributes=mailing_id in self._personalized,
            )
            if len(claim.rows) < limit:
                window.defer_stragglers(now)
            wanted -= len(claim.rows)
            claims.append(claim)
        return claims, pauses

    def _cap(self, mailing_id: int) -> int | None:
        """CLIENT_MAX_MESSAGES_PER_DAY for the mailing's claims; None when off or it is exempt."""
        if settings.CLIENT_MAX_MESSAGES_PER_DAY is None:
            return None
        if mailing_id not in self._cap_exempt:
            self._cap_exempt[mailing_id] = Mailing.objects.filter(pk=mailing_id, cap_exempt=True).exists()
        return None if self._cap_exempt[mailing_id] else settings.CLIENT_MAX_MESSAGES_PER_DAY

    async def record(self, *, results: list[Result]) -> int:
        return await self._in_thread(services.messages_record, results=results, now=self._clock.now())

    async def release_expired_leases(self) -> int:
        return await self._in_thread(services.messages_release_expired_leases, now=self._clock.now())

    async def expire_pending(self, *, mailing_id: int) -> int:
        return await self._in_thread(
            services.messages_expire_pending, now=self._clock.now(), mailing_id=mailing_id
        )

    async def pause(self, *, provider: str, until: float) -> None:
        await self._in_thread(
            services.provider_pause, provider=provider, until=datetime.fromtimestamp(until, tz=UTC)
        )

    async def record_weight_changes(self, *, changes: list[WeightChange]) -> None:
        await self._in_thread(provider_weight_changes_record, changes=changes, holder=self.holder)

    async def delivery_speeds(
        self, *, providers: list[str], slow_after: float, window: float
    ) -> dict[str, DeliverySpeed]:
        return await self._in_thread(
            selectors.delivery_speeds,
            providers=providers,
            now=self._clock.now(),
            slow_after=slow_after,
            window=window,
        )

    async def release_slots(self) -> int:
        return await self._in_thread(self._release_slots)

    def _release_slots(self) -> int:
        services.sender_heartbeat_end(holder=self.holder)
        return services.sender_slots_release(holder=self.holder)
