"""Command line: ``python -m fake_provider --port 8070 --token TOKEN --latency 0.05 ...``."""

import argparse
import asyncio
import logging
import os
import signal
import sys

from fake_provider import run_in_fast_loop
from fake_provider.behaviour import Config
from fake_provider.server import FakeProvider

# The Kannel-shaped API's delivery reports (fake_provider.behaviour.Config).
RECEIPT_OPTIONS = {
    "receipt_undelivered_rate": "share of reports saying not delivered to the phone",
    "receipt_lost_rate": "share of accepted messages whose reports are never posted",
    "receipt_duplicate_rate": "share whose final report is posted twice",
    "receipt_reorder_rate": "share whose SMSC acceptance (8, if the dlr-mask asks) is posted after the final",
    "receipt_delay": "seconds from acceptance to the final report",
    "receipt_delay_jitter": "uniform +/- seconds on the receipt delay",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fake_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8070, help="port of the send API (/v1/send/{msgId})")
    parser.add_argument(
        "--control-port", type=int, default=None, help="port of the control API (default: port + 1)"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("PROVIDER_TOKEN"),
        help="the bearer token sends must carry (default: $PROVIDER_TOKEN)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--latency-jitter", type=float, default=0.0, help="uniform +/- seconds on latency")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of sends answered 503 or 500")
    parser.add_argument(
        "--garbage-rate", type=float, default=0.0, help="share answered 200 with a non-JSON or code-less body"
    )
    parser.add_argument("--hang-rate", type=float, default=0.0, help="share never answered")
    parser.add_argument("--hang-seconds", type=float, default=3600.0, help="how long a hang lasts")
    parser.add_argument("--reject-rate", type=float, default=0.0, help="share answered code 3, rejected")
    parser.add_argument(
        "--rate-limit", type=float, default=0.0, help="sends per second allowed, 429 above (0: no limit)"
    )
    parser.add_argument(
        "--rate-limit-burst",
        type=float,
        default=0.0,
        help="bucket size of the limit (0: a tenth of a second's)",
    )
    parser.add_argument(
        "--retry-after", type=float, default=0.0, help="Retry-After seconds on a 429 (0: none)"
    )
    for option, help_text in RECEIPT_OPTIONS.items():
        parser.add_argument(f"--{option.replace('_', '-')}", type=float, default=0.0, help=help_text)
    parser.add_argument("--seed", type=int, default=None, help="seed of the random draws")
    parser.add_argument("--access-log", action="store_true", help="log every request (slows the fake)")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("--token (or $PROVIDER_TOKEN) is required")
    if args.control_port is None:
        args.control_port = args.port + 1 if args.port else 0
    try:
        args.config = Config(
            token=args.token,
            latency=args.latency,
            latency_jitter=args.latency_jitter,
            error_rate=args.error_rate,
            garbage_rate=args.garbage_rate,
            hang_rate=args.hang_rate,
            hang_seconds=args.hang_seconds,
            reject_rate=args.reject_rate,
            rate_limit=args.rate_limit,
            rate_limit_burst=args.rate_limit_burst,
            retry_after=args.retry_after,
            **{option: getattr(args, option) for option in RECEIPT_OPTIONS},
        )
    except ValueError as error:
        parser.error(str(error))
    return args


async def serve(args: argparse.Namespace) -> None:
    provider = FakeProvider(
        args.config,
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        seed=args.seed,
        access_log=args.access_log,
    )
    await provider.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    print(
        f"fake provider listening on http://{provider.host}:{provider.port}/v1"
        f" (control on :{provider.control_port})",
        flush=True,
    )
    try:
        await stopping.wait()
    finally:
        await provider.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # INFO is quiet unless --access-log: only outages are logged.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    run_in_fast_loop(serve(args))


if __name__ == "__main__":
    main()
