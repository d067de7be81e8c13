"""The subscriber library against a real nats-server: durable resumption, live follow, never crashing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from switchboard.cli.natsserver import NatsServer
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.subscribe import Durable, LogEvent, Selection, SubscriptionMismatch, follow, replay
from tests.waiting import eventually


async def _record(bus: Bus, n: int, *, call: str = "rtc_a", kind: str = "k", start: int = 0) -> None:
    for i in range(start, start + n):
        await bus.publish(bus.event(call, f"{kind}{i}", {"i": i}))


async def _run_until(sub: Durable, seen: list[LogEvent], count: int) -> None:
    """Run `sub`, collecting events, and stop it once `seen` holds `count` of them."""
    stop = asyncio.Event()

    async def handle(event: LogEvent) -> None:
        seen.append(event)
        if len(seen) >= count:
            stop.set()

    await asyncio.wait_for(sub.run(handle, stop), 20)


async def test_a_restarted_durable_subscription_misses_nothing_and_sees_nothing_twice(bus: Bus) -> None:
    """Stopped after 30 of 50 events and restarted (a new object, same name), it gets exactly the other 20 + new."""
    await _record(bus, 50)
    first: list[LogEvent] = []
    await _run_until(Durable(bus, "audit"), first, 30)
    await _record(bus, 10, start=50)
    second: list[LogEvent] = []
    await _run_until(Durable(bus, "audit"), second, 30)
    seqs = [e.seq for e in first + second]
    assert seqs == list(range(1, 61))
    assert await Durable(bus, "audit").pending() == 0


async def test_a_durable_subscription_filters_by_kind(bus: Bus) -> None:
    """A subscription on ``ended`` sees only ended events, across calls."""
    await _record(bus, 3, call="rtc_a")
    for call in ("rtc_a", "rtc_b"):
        await bus.record(call, "ended", events.Ended(reason="done", duration_s=1.0))
    seen: list[LogEvent] = []
    await _run_until(Durable(bus, "ends", Selection(kinds=("ended",))), seen, 2)
    assert [(e.call_id, e.kind, type(e.data)) for e in seen] == [
        ("rtc_a", "ended", events.Ended), ("rtc_b", "ended", events.Ended),
    ]  # fmt: skip


async def test_a_failing_handler_is_retried_in_order(bus: Bus) -> None:
    """A handler that fails once on an event gets it again before the next one."""
    await _record(bus, 3)
    seen: list[int] = []
    failed = False
    stop = asyncio.Event()

    async def handle(event: LogEvent) -> None:
        nonlocal failed
        if event.seq == 2 and not failed:
            failed = True
            raise RuntimeError("flaky downstream")
        seen.append(event.seq)
        if len(seen) == 3:
            stop.set()

    await asyncio.wait_for(Durable(bus, "flaky").run(handle, stop), 20)
    assert seen == [1, 2, 3]


async def test_reusing_a_name_with_another_selection_is_refused(bus: Bus) -> None:
    """A durable name is bound to its selection: a different one raises a clear error."""
    seen: list[LogEvent] = []
    await _record(bus, 1)
    await _run_until(Durable(bus, "named", Selection(kinds=("k0",))), seen, 1)
    with pytest.raises(SubscriptionMismatch, match="named"):
        await Durable(bus, "named", Selection(kinds=("ended",))).run(lambda e: asyncio.sleep(0), asyncio.Event())


@contextlib.asynccontextmanager
async def _collecting(stream: AsyncIterator[LogEvent]) -> AsyncIterator[list[LogEvent]]:
    seen: list[LogEvent] = []

    async def collect() -> None:
        async for event in stream:
            seen.append(event)

    task = asyncio.create_task(collect())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _count(seen: list[LogEvent], n: int) -> Callable[[], bool]:
    return lambda: len(seen) >= n


async def test_follow_from_start_gives_history_then_live_events_in_order(bus: Bus) -> None:
    """Following from the start yields stored events, then new ones as they are stored."""
    await _record(bus, 5)
    async with _collecting(follow(bus, from_start=True)) as seen:
        await eventually(_count(seen, 5), what="history")
        await _record(bus, 5, start=5)
        await eventually(_count(seen, 10), what="live events")
    assert [e.kind for e in seen] == [f"k{i}" for i in range(10)]


async def test_follow_survives_a_server_restart_without_gaps_or_repeats(tmp_path: Path) -> None:
    """The server restarts mid-follow: the follower resumes after the last event it delivered."""
    server = NatsServer(tmp_path / "nats")
    await server.start()
    bus = await Bus.connect(server.url, name="t", give_up_after_s=5)
    try:
        await bus.ensure_stream()
        await _record(bus, 3)
        async with _collecting(follow(bus, from_start=True)) as seen:
            await eventually(_count(seen, 3))
            await server.stop()
            await server.start()
            await eventually(lambda: bus.connected, timeout=15, what="bus reconnected")
            await _record(bus, 3, start=3)
            await eventually(_count(seen, 6), timeout=20, what="events after the restart")
        assert [e.seq for e in seen] == [1, 2, 3, 4, 5, 6]
    finally:
        await bus.close()
        await server.stop()


async def test_unknown_kinds_and_unreadable_events_are_delivered_not_dropped(bus: Bus) -> None:
    """A new kind arrives with its JSON; bytes that are no CloudEvent arrive with the reason."""
    await bus.record("rtc_a", "tool.requested", {"name": "lookup_order"})
    await bus.js.publish("calls.rtc_a.ended", b"{not json", stream="CALLS")
    seen = [e async for e in replay(bus)]
    assert [(e.kind, e.data, e.problem is None) for e in seen] == [
        ("tool.requested", {"name": "lookup_order"}, True), ("ended", "{not json", False),
    ]  # fmt: skip
