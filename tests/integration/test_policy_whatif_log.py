"""Reading the log for ``policy whatif`` against a real nats-server: bounded, filtered, never waiting."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

from switchboard.controller.policy_commands import read_log
from switchboard.shared.bus import Bus
from switchboard.shared.events import Ended


async def test_the_log_is_read_to_its_end_across_batches(bus: Bus) -> None:
    """Every incoming/decided/ended event is returned, however many, and nothing else."""
    await asyncio.gather(*(bus.record(f"rtc_{i}", "ended", Ended(reason="x", duration_s=i)) for i in range(1100)))
    await bus.record("rtc_x", "rt.response.done", {"type": "response.done"})
    found = await read_log(bus, since=datetime.now(UTC) - timedelta(minutes=5))
    assert len(found) == 1100 and {e.kind for e in found} == {"ended"}


async def test_reading_stops_at_the_end_the_log_had_when_it_started(bus: Bus) -> None:
    """Events published while reading are not waited for: the read ends at the stream's end as it was."""
    await asyncio.gather(*(bus.record(f"rtc_{i}", "ended", Ended(reason="x", duration_s=0)) for i in range(600)))
    stop = asyncio.Event()

    async def keep_publishing() -> None:
        n = 0
        while not stop.is_set():
            await bus.record(f"rtc_late{n}", "ended", Ended(reason="x", duration_s=0))
            n += 1

    publisher = asyncio.create_task(keep_publishing())
    try:
        found = await asyncio.wait_for(read_log(bus, since=datetime.now(UTC) - timedelta(minutes=5)), 20)
        stored = (await bus.js.stream_info("CALLS")).state.messages
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await publisher
    assert {f"rtc_{i}" for i in range(600)} <= {e.call_id for e in found}
    assert len(found) < stored  # it returned while the log kept growing


async def test_an_empty_log_reads_as_nothing_at_once(bus: Bus) -> None:
    """With no events stored, reading returns an empty list without waiting."""
    assert await asyncio.wait_for(read_log(bus, since=datetime.now(UTC) - timedelta(hours=1)), 5) == []


async def test_events_before_since_are_not_read(bus: Bus) -> None:
    """Only events stored at or after `since` come back."""
    await bus.record("rtc_old", "ended", Ended(reason="x", duration_s=0))
    assert await read_log(bus, since=datetime.now(UTC) + timedelta(seconds=1)) == []
