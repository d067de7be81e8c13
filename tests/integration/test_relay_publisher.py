"""The worker's one relay publisher stores every call's events in order and does not hold a full batch back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from switchboard.cli.natsserver import NatsServer
from switchboard.session import relay
from switchboard.session.telemetry import SessionMetrics
from switchboard.shared.bus import Bus
from switchboard.shared.openai import ServerEvent
from switchboard.shared.subscribe import replay


@contextlib.asynccontextmanager
async def _publisher(url: str) -> AsyncIterator[relay.Publisher]:
    bus = await Bus.connect(url, name="t", give_up_after_s=5)
    publisher = relay.Publisher(bus, SessionMetrics())
    try:
        await bus.ensure_stream()
        publisher.start()
        yield publisher
    finally:
        await publisher.stop()
        await bus.close()


def _event(n: int) -> ServerEvent:
    raw = b'{"type":"response.output_audio_transcript.delta","event_id":"ev_%d","delta":"w%d"}' % (n, n)
    parsed = ServerEvent.parse(raw)
    assert parsed is not None
    return parsed


async def test_events_of_calls_relayed_together_are_stored_each_calls_in_the_order_handed_over(
    nats_server: NatsServer,
) -> None:
    """Three calls' events handed over interleaved are all stored, every call's in its own order."""
    async with _publisher(nats_server.url) as publisher:
        relays = {f"rtc_{c}": publisher.relay(f"rtc_{c}", lease=1) for c in range(3)}
        for n in range(60):
            relays[f"rtc_{n % 3}"].put(_event(n))
        await asyncio.gather(*(r.flush(timeout_s=10) for r in relays.values()))
        stored = [e async for e in replay(publisher.bus)]
    assert len(stored) == 60
    for call_id in relays:
        deltas = [e.data["delta"] for e in stored if e.call_id == call_id]  # type: ignore[index]
        assert deltas == [f"w{n}" for n in range(60) if f"rtc_{n % 3}" == call_id]


async def test_a_full_batch_is_stored_without_waiting_out_the_linger(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a linger far longer than the wait, a full batch's worth of events is still stored at once."""
    monkeypatch.setattr(relay, "_LINGER_S", 60.0)
    async with _publisher(nats_server.url) as publisher:
        call = publisher.relay("rtc_full", lease=1)
        call.put(_event(0))  # the first event after idle goes at once; the linger starts from it
        await call.flush(timeout_s=10)
        for n in range(1, 1 + relay._BATCH_FULL):  # trickling in while the publisher lingers
            call.put(_event(n))
            await asyncio.sleep(0)
        await call.flush(timeout_s=10)
        stored = [e async for e in replay(publisher.bus)]
    assert len(stored) == 1 + relay._BATCH_FULL
