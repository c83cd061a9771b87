"""Delivery reports of the Kannel-shaped API, requested from each message's dlr-url as Kannel's
bearerbox does: a GET with Kannel's escapes filled in (%d the report's type, %A the SMSC's reply,
%T the time, %F the SMSC's id), late, lost, twice or out of order as the behaviour draws them."""

import asyncio
import itertools
import logging
import time
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp

logger = logging.getLogger(__name__)

# What an SMSC replies with each report type, as the SMPP receipts Kannel passes on in %A.
REPLIES = {1: "stat:DELIVRD err:000", 2: "stat:UNDELIV err:001", 8: "ACK/"}
CONNECTIONS = 100  # requests to the receipt endpoint at once, like a gateway's own pool


def dlr_msg_id(dlr_url: str) -> int | None:
    """The message id our dlr-url carries in its `id` parameter, None when it has none."""
    values = parse_qs(urlsplit(dlr_url).query).get("id", [])
    return int(values[0]) if len(values) == 1 and values[0].isascii() and values[0].isdigit() else None


def filled(dlr_url: str, report_type: int, smsc_id: str) -> str:
    escapes = {
        "%d": str(report_type),
        "%A": quote(REPLIES[report_type], safe=""),
        "%T": str(int(time.time())),
        "%F": smsc_id,
    }
    for escape, value in escapes.items():
        dlr_url = dlr_url.replace(escape, value)
    return dlr_url


class ReceiptPoster:
    """Posts the drawn reports of every accepted message and counts what became of them."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._smsc_ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.counts = {"planned": 0, "lost": 0, "posted": 0, "failed": 0}
        self.last_posted_at = 0.0  # unix time the latest report was answered (0: none yet)

    def stats(self) -> dict[str, int | float]:
        return self.counts | {"pending": len(self._tasks), "last_posted_at": self.last_posted_at}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def post_later(self, dlr_url: str, reports: list[tuple[float, int]]) -> None:
        """Post `reports` ((seconds from now, type), in order) to `dlr_url`; none: the receipt is lost."""
        if not reports:
            self.counts["lost"] += 1
            return
        self.counts["planned"] += len(reports)
        task = asyncio.get_running_loop().create_task(
            self._post(dlr_url, reports, f"fake-{next(self._smsc_ids)}")
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, dlr_url: str, reports: list[tuple[float, int]], smsc_id: str) -> None:
        assert self._session is not None
        started = time.monotonic()
        for after, report_type in reports:
            await asyncio.sleep(max(0.0, started + after - time.monotonic()))
            try:
                async with self._session.get(filled(dlr_url, report_type, smsc_id)) as response:
                    await response.read()
                    ok = response.status < 300
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                logger.warning("receipt not posted: %s", type(error).__name__)
                ok = False
            self.counts["posted" if ok else "failed"] += 1
            if ok:
                self.last_posted_at = time.time()
