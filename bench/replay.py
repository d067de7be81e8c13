"""Replay speed: fill a CALLS stream with realistic events, then time each way of reading it back.

    .venv/bin/python bench/replay.py            # 1,000,000 events (a few minutes)
    .venv/bin/python bench/replay.py --smoke    # 2,000 events: checks the bench still runs

Events are the calls of the golden log tests/golden/logs/spine_v0.jsonl, re-numbered with fresh call
ids until the stream holds N events (about 25 per call: incoming, decision, realtime events, end).
Measured: publishing them (JetStream acks, async window); reading the whole stream with nats-py's
ordered push consumer and its pull `fetch` (the baselines: nats-py's own consumers; timed over the
first 200k events, they are slow); with `subscribe.replay_stored` (raw bytes: what `replay --json`
does) and `subscribe.replay` (typed `LogEvent`s); a one-call replay (subject-filtered, while the stream
holds N events); and rebuilding the three projections from scratch into NATS KV.
Prints a table, then the same numbers as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import msgspec
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from switchboard.cli.natsserver import NatsServer
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.projections.rebuild import rebuild
from switchboard.shared.subscribe import Selection, replay, replay_stored

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "logs" / "spine_v0.jsonl"
NATS_PY_SAMPLE = 200_000


def call_templates() -> list[list[tuple[str, bytes]]]:
    """Each golden call's events as (kind, payload) with the call id replaced by a placeholder.

    The golden log predates ``dataschema``: each event is made again by `events.make_event` (keeping its
    id, source, lease and time), so the stream holds envelopes as Switchboard writes them today.
    """
    calls: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for line in GOLDEN.read_bytes().splitlines():
        old = events.decode(line)
        made = events.make_event(old.call_id, old.kind, old.data, source=old.source, event_id=old.id, lease=old.lease)
        payload = events.encode(msgspec.structs.replace(made, time=old.time))
        calls[old.call_id].append((old.kind, payload.replace(old.call_id.encode(), b"{CALL}")))
    return list(calls.values())


async def fill(bus: Bus, total: int) -> tuple[float, str]:
    """Publish `total` events; returns (seconds, the id of one call in the middle)."""
    templates = call_templates()
    started = time.perf_counter()
    published, n, middle = 0, 0, ""
    futures: list[asyncio.Future[object]] = []
    while published < total:
        template = templates[n % len(templates)]
        call_id = f"rtc_bench{n:023d}"
        if published <= total // 2:
            middle = call_id
        for kind, payload in template[: total - published]:
            data = payload.replace(b"{CALL}", call_id.encode())
            futures.append(await bus.js.publish_async(f"calls.{call_id}.{kind}", data))
            published += 1
        n += 1
        if len(futures) >= 20_000:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    return time.perf_counter() - started, middle


async def nats_py_ordered(bus: Bus, limit: int) -> int:
    sub = await bus.js.subscribe(
        "calls.>", stream="CALLS", ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    n = 0
    try:
        async for msg in sub.messages:
            n += 1
            if n >= limit or msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return n


async def nats_py_fetch(bus: Bus, limit: int) -> int:
    sub = await bus.js.pull_subscribe(
        "calls.>", stream="CALLS",
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30),
    )  # fmt: skip
    n = 0
    try:
        while n < limit:
            msgs = await sub.fetch(1000, timeout=5)
            n += len(msgs)
            if msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return n


async def raw_replay(bus: Bus, selection: Selection) -> int:
    return sum([len(batch) async for batch in replay_stored(bus, selection)])


async def typed_replay(bus: Bus) -> int:
    return sum([1 async for _ in replay(bus)])


async def timed(what: str, rows: list[dict[str, object]], run: object) -> None:
    started = time.perf_counter()
    count = await run  # type: ignore[misc]
    seconds = time.perf_counter() - started
    rows.append({"what": what, "events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds)})
    print(f"  {what:<44} {count:>10,} {seconds:>9.3f} s {count / seconds:>12,.0f}/s", file=sys.stderr, flush=True)


async def main(total: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        server = NatsServer(Path(tmp) / "nats")
        await server.start()
        bus = await Bus.connect(server.url, name="bench", give_up_after_s=5)
        try:
            await bus.ensure_stream()
            rows: list[dict[str, object]] = []
            print(f"filling CALLS with {total:,} events …", file=sys.stderr, flush=True)
            seconds, middle = await fill(bus, total)
            rows.append({"what": "publish (JetStream acks)", "events": total, "seconds": round(seconds, 3),
                         "events_per_s": round(total / seconds)})  # fmt: skip
            print(f"  {'publish (JetStream acks)':<44} {total:>10,} {seconds:>9.3f} s {total / seconds:>12,.0f}/s",
                  file=sys.stderr)  # fmt: skip
            sample = min(total, NATS_PY_SAMPLE)
            await timed("nats-py ordered consumer", rows, nats_py_ordered(bus, sample))
            await timed("nats-py pull fetch(1000)", rows, nats_py_fetch(bus, sample))
            await timed("replay_stored (raw, replay --json)", rows, raw_replay(bus, Selection()))
            await timed("replay (typed LogEvent)", rows, typed_replay(bus))
            await timed("replay --call (one call among all)", rows, raw_replay(bus, Selection(call=middle)))
            await timed("rebuild projections into KV", rows, rebuild(bus))
            info = await bus.js.stream_info("CALLS")
            return {"events": total, "stream_bytes": info.state.bytes, "results": rows}
        finally:
            await bus.close()
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="2,000 events, to check the bench runs")
    args = parser.parse_args()
    report = asyncio.run(main(2_000 if args.smoke else args.events))
    rows = report["results"]
    assert isinstance(rows, list)
    print(f"\nreplay bench: {report['events']:,} events, {report['stream_bytes']:,} bytes in the stream\n")
    print(f"{'what':<44} {'events':>10} {'seconds':>9} {'events/s':>12}")
    for row in rows:
        print(f"{row['what']:<44} {row['events']:>10,} {row['seconds']:>9.3f} {row['events_per_s']:>12,}")
    print("\n" + json.dumps(report))
