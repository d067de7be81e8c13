"""The OpenAI emulator as its own process, with the knobs the benchmarks need (``switchboard emulator`` has
no ring-timeout option: a benchmark that rings a thousand calls before answering them needs a long one).

    python -m bench._emulator --port P --pace X --webhook-url URL [--ring-timeout-s S]

The API key and webhook secret come from ``OPENAI_API_KEY`` and ``OPENAI_WEBHOOK_SECRET``; logs at warning
level (an info line per call would be a cost of its own at benchmark rates).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal

import uvloop

from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.server import serve
from switchboard.shared.logging import configure


async def _main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = EmulatorConfig(
        port=args.port,
        api_key=os.environ["OPENAI_API_KEY"],
        webhook_url=args.webhook_url,
        webhook_secret=os.environ["OPENAI_WEBHOOK_SECRET"].split(",")[0],
        pace=args.pace,
        ring_timeout_s=args.ring_timeout_s,
    )
    freezer = asyncio.create_task(_freeze_records(stop))
    try:
        await serve(config, stop)
    finally:
        freezer.cancel()


async def _freeze_records(stop: asyncio.Event) -> None:
    """Keep what the emulator has recorded out of the collector's scans.

    It records every event of every call until the run ends, so after a minute of a thousand calls the
    garbage collector would walk a million long-lived objects on each full collection, pausing the
    load generator for hundreds of milliseconds. Freezing what exists every second (objects that die
    later are still freed by reference counting) keeps those pauses off the measured latencies. Young
    collections are made rare too: every recorded event is a new object that survives, so at the
    default threshold they ran several times a second, 5-20 ms each, and the events held back
    meanwhile reached the system as a burst.
    """
    gc.set_threshold(200_000, 50, 1000)
    while not stop.is_set():
        await asyncio.sleep(1.0)
        gc.freeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pace", type=float, default=1.0)
    parser.add_argument("--webhook-url", required=True)
    parser.add_argument("--ring-timeout-s", type=float, default=600.0)
    configure(fmt="console", level=os.environ.get("LOG_LEVEL", "warning"))
    uvloop.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
