"""Console fan-out: the live calls stream to 20 browsers' worth of SSE connections while ~1,000 calls are live.

The console runs as its own process (``switchboard console``, as its container would), against a real
nats-server. This process is the load: it writes the events of `--calls` concurrent calls straight into
the CALLS stream (incoming, decided, accepted, claimed, a transcript turn every few seconds, transcript
deltas the console must never read, ended; each ended call replaced by a new one), and holds `--clients`
signed-in SSE connections to ``/events`` (the live table's stream). For every row update a client gets,
the latency is the time from the event being stored (its publish, acknowledged by JetStream; the SSE
id is its stream sequence) to the client reading it. The console's CPU is read from /proc over the
measured window. Target: p99 ≤ 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import uvloop

from bench._common import SEED, CpuWindow, Latency, add_output_args, machine, machine_line, publish, seeded, table
from bench._system import LOOPBACK, System, free_port
from switchboard.shared import events
from switchboard.shared.bus import Bus

TOKEN = "bench-console-token"
CALLER = "+14155550101"
DIALLED = "+18005550100"


class Load:
    """Writes the events of `calls` concurrent calls into the stream; remembers when each sequence was sent."""

    def __init__(self, bus: Bus, *, calls: int, duration_s: tuple[float, float], turn_every_s: float) -> None:
        self._bus = bus
        self._calls = calls
        self._duration = duration_s
        self._turn_every = turn_every_s
        self.sent_at: dict[int, float] = {}
        self.published = 0
        self.started_calls = 0
        self._rng = seeded("console-load")
        self._stop = asyncio.Event()

    async def _publish(self, call_id: str, kind: str, data: Any) -> None:
        envelope = events.make_event(call_id, kind, data, source="bench")
        sent = time.time()
        ack = await self._bus.js.publish(events.subject(call_id, kind), events.encode(envelope), timeout=10)
        self.sent_at[int(ack.seq)] = sent
        self.published += 1

    async def _call(self, n: int, ramp_s: float) -> None:
        await asyncio.sleep(ramp_s)
        while not self._stop.is_set():
            self.started_calls += 1
            call_id = f"rtc_bench{n:04d}x{self.started_calls:06d}"
            headers = [{"name": "From", "value": f"sip:{CALLER}@b"}, {"name": "To", "value": f"sip:{DIALLED}@b"}]
            webhook = {"id": f"evt_{call_id}", "type": "realtime.call.incoming", "created_at": int(time.time()),
                       "data": {"call_id": call_id, "sip_headers": headers}}  # fmt: skip
            await self._publish(call_id, "incoming", webhook)
            await self._publish(call_id, "decided", {"action": "accept", "rule": "support-line", "reason": "bench",
                                                     "agent": "concierge"})  # fmt: skip
            await self._publish(call_id, "accepted", {"http_status": 200, "latency_ms": 2.0, "agent": "concierge"})
            await self._publish(call_id, "session.claimed", {"worker": f"worker-{n % 4 + 1}", "attempt": 1})
            ends = time.monotonic() + self._rng.uniform(*self._duration)
            turn = 0
            while time.monotonic() < ends and not self._stop.is_set():
                await asyncio.sleep(self._turn_every * self._rng.uniform(0.5, 1.5))
                turn += 1
                await self._publish(call_id, "rt.response.output_audio_transcript.delta", {"delta": "Of cou"})
                await self._publish(call_id, "rt.response.output_audio_transcript.done",
                                    {"transcript": f"Turn {turn}: of course.", "item_id": f"item_{turn}"})  # fmt: skip
            await self._publish(call_id, "ended", {"reason": "caller_hangup", "duration_s": 1.0})

    async def run(self, ramp_s: float) -> None:
        tasks = [asyncio.create_task(self._call(n, ramp_s * n / self._calls)) for n in range(self._calls)]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()


class Client:
    """One browser's live-table stream: the latency of every row update it reads while measuring."""

    def __init__(self, load: Load) -> None:
        self._load = load
        self.latency = Latency()
        self.measuring = False
        self.received = 0
        self.connected = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession, base: str) -> None:
        async with http.get(f"{base}/events?after=0", timeout=aiohttp.ClientTimeout(total=None)) as stream:
            stream.raise_for_status()
            self.connected.set()
            event_id: int | None = None
            async for raw in stream.content:
                if raw.startswith(b"id: "):
                    event_id = int(raw[4:])
                elif raw == b"\n" and event_id is not None:
                    now = time.time()
                    self.received += 1
                    sent = self._load.sent_at.get(event_id)
                    if self.measuring and sent is not None:
                        self.latency.record_s(now - sent)
                    event_id = None


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    async with System() as system:
        await system.start_nats()
        port = free_port()
        console = await system.start_service("console", CONSOLE_PORT=str(port), SWITCHBOARD_CONSOLE_TOKEN=TOKEN)
        bus = await Bus.connect(system.nats_url, name="bench-console", give_up_after_s=10)
        await bus.ensure_stream()
        await system.ready(console)
        base = f"http://{LOOPBACK}:{port}"
        load = Load(bus, calls=args.calls, duration_s=(args.min_call_s, args.max_call_s), turn_every_s=args.turn_s)
        jar = aiohttp.CookieJar(unsafe=True)
        connector = aiohttp.TCPConnector(limit=args.clients + 5)
        async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as http:
            async with http.get(f"{base}/?token={TOKEN}&name=bench", allow_redirects=False) as r:
                assert r.status == 303, r.status
            clients = [Client(load) for _ in range(args.clients)]
            readers = [asyncio.create_task(c.run(http, base)) for c in clients]
            await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 30)
            loader = asyncio.create_task(load.run(args.ramp_s))
            try:
                await asyncio.sleep(args.ramp_s + args.settle_s)
                window = CpuWindow({"console": console.pid, "nats-server": system.nats.pid if system.nats else 0})
                published0 = load.published
                window.start()
                for c in clients:
                    c.measuring = True
                await asyncio.sleep(args.measure_s)
                for c in clients:
                    c.measuring = False
                window.stop()
                published = load.published - published0
            finally:
                load.stop()
                await loader
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
        await bus.close()
        total = Latency()
        for c in clients:
            total.merge(c.latency)
        cores = window.cores()
        return {
            "clients": args.clients,
            "calls": args.calls,
            "measure_s": args.measure_s,
            "events_stored_per_s": round(published / window.seconds, 1),
            "row_updates_per_client_per_s": round(total.count / args.clients / window.seconds, 1),
            "latency": total.summary(),
            "console_cores": cores["console"],
            "nats_cores": cores["nats-server"],
            "console_alive": console.alive,
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    print(f"console: {machine_line(info)}", flush=True)
    if args.smoke:
        args.calls, args.clients, args.ramp_s, args.settle_s, args.measure_s = 20, 3, 1.0, 0.5, 2.0
        args.min_call_s, args.max_call_s = 1.0, 3.0
    result = await measure(args)
    params = {k: getattr(args, k) for k in ("smoke", "calls", "clients", "ramp_s", "settle_s", "measure_s",
                                              "min_call_s", "max_call_s", "turn_s")}  # fmt: skip
    return {"benchmark": "console", "machine": info, "params": {**params, "seed": SEED}, "result": result}


def report(results: dict[str, Any]) -> str:
    r, p = results["result"], results["params"]
    lat = r["latency"]
    rows = [(r["clients"], r["calls"], r["events_stored_per_s"], r["row_updates_per_client_per_s"], lat["p50_ms"],
             lat["p99_ms"], lat["max_ms"], r["console_cores"])]  # fmt: skip
    return "\n".join([
        f"Console — {r['clients']} SSE clients on the live table, {r['calls']} concurrent calls "
        f"({p['min_call_s']:g}-{p['max_call_s']:g} s each), {r['measure_s']:g} s measured "
        f"(event stored → client read; target p99 ≤ 250 ms):",
        table(("clients", "calls", "events stored/s", "row updates/s per client", "p50 ms", "p99 ms", "max ms",
               "console cores"), rows),
    ])  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it still run?")
    parser.add_argument("--calls", type=int, default=1000, help="concurrent calls")
    parser.add_argument("--clients", type=int, default=20, help="SSE connections to the live table")
    parser.add_argument("--ramp-s", type=float, default=20.0, help="seconds over which the calls start")
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--measure-s", type=float, default=60.0)
    parser.add_argument("--min-call-s", type=float, default=30.0)
    parser.add_argument("--max-call-s", type=float, default=90.0)
    parser.add_argument("--turn-s", type=float, default=5.0, help="seconds between a call's transcript turns")
    add_output_args(parser, "console")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = uvloop.run(run(args))
    publish(args, results, report)
    result = results["result"]
    return 0 if result["console_alive"] and result["latency"]["count"] > 0 else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
