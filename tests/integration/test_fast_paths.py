"""The fast paths and nats-py's public API store and read the same log; a garbled server line is survived."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats.js.errors
import pytest

from switchboard.cli.natsserver import NatsServer
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.subscribe import Selection, replay, replay_stored
from tests.fixtures.nats import TamperingProxy
from tests.golden import LOGS

PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "public-api"])


@contextlib.asynccontextmanager
async def _bus(url: str, *, fast_path: bool) -> AsyncIterator[Bus]:
    bus = await Bus.connect(url, name="t", give_up_after_s=5, fast_path=fast_path)
    try:
        await bus.ensure_stream()
        yield bus
    finally:
        await bus.close()


def _golden(name: str) -> list[bytes]:
    return [line for line in (LOGS / name).read_bytes().splitlines() if line.strip()]


async def _store_pipelined(bus: Bus, lines: list[bytes]) -> None:
    """Each line as the relay stores events (`send_many`); a line that is no event, as it is."""
    batch: list[tuple[events.CloudEvent, str | None, str | None]] = []
    for line in lines:
        try:
            batch.append((events.decode(line), None, None))
        except msgspec.ValidationError:
            await bus.confirm(await bus.send_many(batch))
            batch = []
            await bus.js.publish("calls.rtc_edge_odd.garbage", line, stream=events.STREAM)
    await bus.confirm(await bus.send_many(batch))


@PATHS
@pytest.mark.parametrize("log", ["spine_v0.jsonl", "edge_cases.jsonl"])
async def test_a_golden_log_pipelined_in_and_replayed_out_comes_back_as_recorded(
    nats_server: NatsServer, fast_path: bool, log: str
) -> None:
    """Stored with `send_many` and read back with `replay_stored`, every event is the recorded one, in order."""
    lines = _golden(log)
    async with _bus(nats_server.url, fast_path=fast_path) as bus:
        await _store_pipelined(bus, lines)
        stored = [m.data async for batch in replay_stored(bus) for m in batch]
        typed = [e async for e in replay(bus)]
    assert len(stored) == len(lines)
    for line, data in zip(lines, stored, strict=True):
        try:
            assert events.decode(data) == events.decode(line)
        except msgspec.ValidationError:
            assert data == line
    assert [e.seq for e in typed] == list(range(1, len(lines) + 1))


@PATHS
async def test_a_one_call_replay_reads_the_same_events_by_either_path(nats_server: NatsServer, fast_path: bool) -> None:
    """``replay --call`` by either path returns that call's events only, with their store times."""
    async with _bus(nats_server.url, fast_path=True) as writer:
        for i in range(30):
            await writer.record(f"rtc_{i % 3}", f"k{i}", {"i": i})
    async with _bus(nats_server.url, fast_path=fast_path) as bus:
        seen = [e async for e in replay(bus, Selection(call="rtc_1"))]
        raw = [m async for batch in replay_stored(bus, Selection(call="rtc_1")) for m in batch]
    assert [e.kind for e in seen] == [f"k{i}" for i in range(1, 30, 3)]
    assert all(m.time_ns > 1_700_000_000 * 10**9 for m in raw)


class _Garbler:
    """Garbles the first stored message sent to each of the chosen connections (0 = the first accepted)."""

    def __init__(self, connections: set[int]) -> None:
        self._pending = set(connections)
        self.garbled = 0

    def __call__(self, index: int, chunk: bytes) -> bytes:
        if index in self._pending and b"MSG calls." in chunk:
            self._pending.discard(index)
            self.garbled += 1
            return chunk.replace(b"MSG calls.", b"MSG\x00calls.", 1)
        return chunk


async def test_a_garbled_line_from_the_server_makes_a_replay_resume_without_gaps_or_repeats(
    nats_server: NatsServer, bus: Bus
) -> None:
    """The reader's connection gets a malformed line: the replay resumes after the last event it delivered."""
    for i in range(300):
        await bus.record(f"rtc_{i % 7}", f"k{i}", {"i": i})
    garbler = _Garbler({1})  # 0 is the bus's own connection, 1 the reader's
    proxy = TamperingProxy(nats_server.port, downstream=garbler)
    via = await Bus.connect(await proxy.start(), name="t", give_up_after_s=5)
    try:
        seqs = [m.seq async for batch in replay_stored(via, batch=50) for m in batch]
    finally:
        await via.close()
        await proxy.close()
    assert garbler.garbled == 1
    assert seqs == list(range(1, 301))


async def test_a_server_that_keeps_sending_garbage_fails_a_replay_with_one_clear_error(
    nats_server: NatsServer, bus: Bus
) -> None:
    """Every reader connection garbled: the replay gives up with one BusUnavailable quoting the bad line."""
    for i in range(10):
        await bus.record("rtc_g", f"k{i}", {"i": i})
    proxy = TamperingProxy(nats_server.port, downstream=_Garbler(set(range(1, 100))))
    via = await Bus.connect(await proxy.start(), name="t", give_up_after_s=5)
    try:
        with pytest.raises(BusUnavailable, match=r"replay failed after 4 attempts: unexpected line from the NATS"):
            _ = [m async for batch in replay_stored(via) for m in batch]
    finally:
        await via.close()
        await proxy.close()


@PATHS
async def test_a_kv_write_lands_only_on_the_revision_it_names(nats_server: NatsServer, fast_path: bool) -> None:
    """`kv_write` creates a key once (last=0), updates it on its revision, and refuses a stale revision."""
    async with _bus(nats_server.url, fast_path=fast_path) as bus:
        kv = await bus.key_value(f"cas_{'fast' if fast_path else 'public'}")
        first = await bus.kv_write(kv, "rtc_1", b"a", last=0)
        with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
            await bus.kv_write(kv, "rtc_1", b"b", last=0)
        second = await bus.kv_write(kv, "rtc_1", b"c", last=first)
        with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
            await bus.kv_write(kv, "rtc_1", b"d", last=first)
        entry = await kv.get("rtc_1")
    assert (entry.value, entry.revision) == (b"c", second)
