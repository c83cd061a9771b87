"""Delivery receipts posted as fast as a web takes them, from a plain aiohttp client in a process of
its own: ``python -m bench.receipt_load --base-url http://127.0.0.1:8000 --provider default
--first-id 1 --last-id 20000 --concurrency 100 --seconds 20`` (the provider's receipt secret in
$BENCH_RECEIPT_SECRET) requests each message's dlr-url with a final report (delivered), as Kannel's
bearerbox does, ids in order, with `concurrency` in flight, until every id is posted or `seconds`
have passed; prints ``{"requests": n, "seconds": s, "rate": r, "errors": e}``. Imports no Django.
"""

import argparse
import asyncio
import json
import os
from typing import Any

import aiohttp

from fake_provider import run_in_fast_loop
from fake_provider.behaviour import KANNEL_DELIVERED
from fake_provider.rawload import in_flight
from fake_provider.receipts import filled
from messages_app.sending.receipts import kannel_dlr_url


async def post_receipts(
    base_url: str, provider: str, secret: str, ids: range, concurrency: int, seconds: float
) -> dict[str, Any]:
    pending = iter(ids)
    counts = {"requests": 0, "errors": 0}

    async def keep_posting(session: aiohttp.ClientSession, deadline: float) -> None:
        for msg_id in pending:
            if asyncio.get_running_loop().time() >= deadline:
                return
            dlr_url = kannel_dlr_url(base_url=base_url, provider=provider, secret=secret, message_id=msg_id)
            try:
                async with session.get(filled(dlr_url, KANNEL_DELIVERED, f"load-{msg_id}")) as response:
                    await response.read()
                    ok = response.status < 300
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            counts["requests"] += 1
            counts["errors"] += not ok

    return await in_flight(keep_posting, counts, concurrency=concurrency, seconds=seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receipt_load", description=__doc__)
    parser.add_argument("--base-url", required=True, help="the service's RECEIPT_BASE_URL")
    parser.add_argument("--provider", default="default")
    parser.add_argument("--first-id", type=int, required=True)
    parser.add_argument("--last-id", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    secret = os.environ.get("BENCH_RECEIPT_SECRET")
    if not secret:
        parser.error("$BENCH_RECEIPT_SECRET is required")
    ids = range(args.first_id, args.last_id + 1)
    result = post_receipts(args.base_url, args.provider, secret, ids, args.concurrency, args.seconds)
    print(json.dumps(run_in_fast_loop(result)))


if __name__ == "__main__":
    main()
