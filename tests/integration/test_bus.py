"""The bus seam against a real nats-server: the stream, dedup, conditional publish, following."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.shared.bus import Bus
from switchboard.shared.errors import AlreadyRecorded


async def test_ensure_stream_is_idempotent(bus: Bus) -> None:
    """Creating the CALLS stream twice leaves one stream, no error."""
    await bus.ensure_stream()
    assert await bus.stream_exists()


async def test_same_msg_id_is_stored_once(bus: Bus) -> None:
    """Two publishes with one Nats-Msg-Id store one event; the second is reported as a duplicate."""
    first = await bus.publish(bus.event("rtc_a", "incoming", {"n": 1}), msg_id="wh_1")
    second = await bus.publish(bus.event("rtc_a", "incoming", {"n": 2}), msg_id="wh_1")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.seq == first.seq


async def test_conditional_publish_refuses_a_second_event_on_a_subject(bus: Bus) -> None:
    """With expect_empty_subject, only the first event on a subject is stored."""
    await bus.publish(bus.event("rtc_b", "decided", {"action": "accept"}), expect_empty_subject=True)
    with pytest.raises(AlreadyRecorded):
        await bus.publish(bus.event("rtc_b", "decided", {"action": "reject"}), expect_empty_subject=True)
    last = await bus.last_event("rtc_b", "decided")
    assert last is not None and last.data == {"action": "accept"}


async def test_follow_from_start_yields_events_in_order(bus: Bus) -> None:
    """Following from the start replays stored events in publish order, then new ones."""
    for i in range(3):
        await bus.record("rtc_c", f"k{i}", {"i": i})
    seen: list[str] = []

    async def collect() -> None:
        async for event in bus.follow("calls.rtc_c.>", from_start=True):
            seen.append(event.kind)
            if len(seen) == 4:
                return

    task = asyncio.create_task(collect())
    await bus.record("rtc_c", "k3", {"i": 3})
    await asyncio.wait_for(task, 5)
    assert seen == ["k0", "k1", "k2", "k3"]


async def test_connecting_to_no_server_gives_up_when_told_with_a_clear_error() -> None:
    """With give_up_after_s, an unreachable NATS ends in BusUnavailable naming the server (no password)."""
    from switchboard.shared.errors import BusUnavailable
    from switchboard.shared.natsserver import free_port

    url = f"nats://svc:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(BusUnavailable) as info:
        await Bus.connect(url, name="test", give_up_after_s=0.5)
    assert "could not connect to NATS at nats://127.0.0.1:" in str(info.value)
    assert "s3cret" not in str(info.value)
