"""A fake of the probe provider, a real HTTP server that tests, benchmarks and local runs start. It
also speaks Kannel's ``sendsms`` and posts delivery reports to each message's dlr-url (``--receipt-*``
options: undelivered, lost, duplicated and out-of-order shares, delay and its jitter).

Run it with ``python -m fake_provider --port 8070 --token TOKEN``; drive it from Python with
``fake_provider.client``. It does not import Django.
"""

import asyncio
from collections.abc import Coroutine
from typing import Any


def run_in_fast_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine in a new event loop, uvloop's when installed (it is optional here)."""
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine)
