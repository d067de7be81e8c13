"""Example subscriber: when a call ends, post a one-paragraph summary of it.

    NATS_URL=nats://127.0.0.1:4222 python examples/call_summary.py            # prints summaries
    SUMMARY_URL=https://hooks.example.com/calls python examples/call_summary.py  # POSTs them as JSON

It is a durable subscription (``call-summary``) on ``ended`` events: stop it, restart it later, and it
posts the summaries of every call that ended meanwhile — each once, because the summary is keyed by the
event's stream sequence (`Idempotency-Key` header) and the receiver can drop repeats. For each ended call
it reads only that call's events (a subject-filtered replay) and folds them with the same projections
Switchboard uses, so it needs nothing but the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import httpx

from switchboard.shared.bus import Bus
from switchboard.shared.projections import CALL_RECORDS, TRANSCRIPTS, fold
from switchboard.shared.subscribe import Durable, LogEvent, Selection, replay


async def summarise(bus: Bus, call_id: str) -> dict[str, Any]:
    """The call's record and transcript, from its own events."""
    log = [event async for event in replay(bus, Selection(call=call_id))]
    record = fold(CALL_RECORDS, log).get(call_id)
    transcript = fold(TRANSCRIPTS, log).get(call_id)
    turns = transcript.turns if transcript is not None else ()
    said = " / ".join(f"{t.speaker}: {t.text}" for t in turns)
    text = (
        f"Call {call_id} from {record.caller if record else '?'} to {record.dialled if record else '?'}: "
        f"{record.outcome if record else 'unknown'} by rule {record.rule if record else '?'}"
        f"{f', {record.duration_s:.1f} s' if record and record.duration_s is not None else ''}"
        f"{f', {len(turns)} turns: {said}' if turns else ''}."
    )
    return {"call_id": call_id, "text": text, "outcome": record.outcome if record else None, "turns": len(turns)}


class CallSummaries:
    """Posts (or prints) a summary for every call that ends."""

    def __init__(self, bus: Bus, url: str | None) -> None:
        self._bus = bus
        self._url = url
        self._http = httpx.AsyncClient(timeout=10.0)
        self.subscription = Durable(bus, "call-summary", Selection(kinds=("ended",)))

    async def on_event(self, event: LogEvent) -> None:
        summary = await summarise(self._bus, event.call_id)
        if self._url is None:
            print(summary["text"], flush=True)
            return
        response = await self._http.post(self._url, json=summary, headers={"Idempotency-Key": str(event.seq)})
        response.raise_for_status()  # an error is retried by the subscription, with backoff

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.subscription.run(self.on_event, stop)
        finally:
            await self._http.aclose()


async def main() -> int:
    url = os.environ.get("NATS_URL")
    if not url:
        print("NATS_URL is required (e.g. the one `switchboard up` prints)", file=sys.stderr)
        return 2
    bus = await Bus.connect(url, name="call-summary", give_up_after_s=10)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await CallSummaries(bus, os.environ.get("SUMMARY_URL")).run(stop)
    finally:
        await bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
