"""Raw load on the send endpoint, to measure what the fake itself sustains.

``python -m fake_provider.rawload --url http://127.0.0.1:8070/v1 --token T --concurrency 200 --seconds 10``
keeps `concurrency` valid sends in flight for `seconds` and prints
``{"requests": n, "seconds": s, "rate": r, "errors": e}``: `rate` is requests (errors included) per
second; refused connections are retried after 10 ms and counted as errors.

``--client requests`` does the same with `concurrency` threads, each with its own requests
Session: the client the design card started from, measured against the same provider.
"""

import argparse
import asyncio
import itertools
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import requests

from fake_provider import run_in_fast_loop

# Far above any real message id, so that load never collides with a mailing's messages.
ID_OFFSET = 10**12
PHONE = 79_000_000_000
REQUEST_TIMEOUT = 10.0


async def measure_async(
    url: str, token: str, concurrency: int, seconds: float, *, first_id: int = ID_OFFSET
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    send_url = url.rstrip("/") + "/send/"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ids = itertools.count(first_id)
    counts = {"requests": 0, "errors": 0}

    async def keep_sending(session: aiohttp.ClientSession, deadline: float) -> None:
        while loop.time() < deadline:
            msg_id = next(ids)
            body = b'{"id": %d, "phone": %d, "text": "load"}' % (msg_id, PHONE)
            ok = False
            try:
                async with session.post(f"{send_url}{msg_id}", data=body, headers=headers) as response:
                    ok = _is_acceptance(response.status, await response.read())
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.01)  # do not spin on refused connections
            counts["requests"] += 1
            counts["errors"] += not ok

    return await in_flight(keep_sending, counts, concurrency=concurrency, seconds=seconds)


async def in_flight(
    keep_requesting: Callable[[aiohttp.ClientSession, float], Awaitable[None]],
    counts: dict[str, int],
    *,
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    """`concurrency` runs of `keep_requesting(session, deadline)` on one session with as many
    connections, `seconds` from now the deadline; then the summary of the `counts` they kept."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = loop.time()
        deadline = started + seconds
        await asyncio.gather(*(keep_requesting(session, deadline) for _ in range(concurrency)))
        elapsed = loop.time() - started
    return _summary(counts, elapsed)


def _summary(counts: dict[str, int], elapsed: float) -> dict[str, Any]:
    return {
        "requests": counts["requests"],
        "seconds": round(elapsed, 3),
        "rate": round(counts["requests"] / elapsed, 1),
        "errors": counts["errors"],
    }


def _is_acceptance(status: int, answer: bytes) -> bool:
    if status != 200:
        return False
    try:
        payload = json.loads(answer)
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("code") == 0


def measure_threads(
    url: str, token: str, threads: int, seconds: float, *, first_id: int = ID_OFFSET
) -> dict[str, Any]:
    """`threads` threads, one requests Session each, sending back to back for `seconds`."""
    send_url = url.rstrip("/") + "/send/"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ids = itertools.count(first_id)
    lock = threading.Lock()
    counts = {"requests": 0, "errors": 0}

    def keep_sending(deadline: float) -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    msg_id = next(ids)
                body = b'{"id": %d, "phone": %d, "text": "load"}' % (msg_id, PHONE)
                try:
                    response = session.post(
                        f"{send_url}{msg_id}", data=body, headers=headers, timeout=REQUEST_TIMEOUT
                    )
                    ok = _is_acceptance(response.status_code, response.content)
                except requests.RequestException:
                    ok = False
                    time.sleep(0.01)
                with lock:
                    counts["requests"] += 1
                    counts["errors"] += not ok

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(threads):
            pool.submit(keep_sending, started + seconds)
    elapsed = time.monotonic() - started
    return _summary(counts, elapsed)


def measure(
    url: str, token: str, concurrency: int, seconds: float, *, first_id: int = ID_OFFSET
) -> dict[str, Any]:
    """Run the load in a new event loop (not from inside a running one); uvloop if installed.

    Ids count up from `first_id`: give each run against the same server its own range, or reset the
    server's records in between, unless duplicates are what you want to see.
    """
    return run_in_fast_loop(measure_async(url, token, concurrency, seconds, first_id=first_id))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fake_provider.rawload", description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8070/v1", help="base URL of the send API")
    parser.add_argument("--token", default=os.environ.get("PROVIDER_TOKEN"), help="default: $PROVIDER_TOKEN")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--first-id", type=int, default=ID_OFFSET, help="ids count up from here")
    parser.add_argument("--client", choices=("aiohttp", "requests"), default="aiohttp")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or $PROVIDER_TOKEN) is required")
    run = measure if args.client == "aiohttp" else measure_threads
    print(json.dumps(run(args.url, args.token, args.concurrency, args.seconds, first_id=args.first_id)))


if __name__ == "__main__":
    main()
