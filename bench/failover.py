"""Failover: how long a live call's events stop when the worker holding it dies (kill -9).

Two ``switchboard session`` processes, one ``chatter`` call (the emulator streams its events at pace 1,
about 10 a second). Each repeat: wait until the call is held and its events flow, wait a seeded random
0.2-1.2 s (so the kill lands anywhere in the lease's heartbeat cycle), SIGKILL the holder, and time on
the bus (a core NATS subscription in this process, receive time):

- kill → ``session.claimed`` with the next attempt (the lease expired and another worker took it);
- kill → the first ``rt.*`` event published under the new lease (the call's events flowing again);
- the gap in the call's events: the last ``rt.*`` before the kill → that first one after.

A fresh standby worker is started after each repeat, so there are always two. The lease is
``LEASE_S`` (1.5 s) in services/session/src/switchboard/session/worker.py: failover is bounded below by it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import nats
from nats.aio.msg import Msg

from bench._common import SEED, Latency, add_output_args, machine, machine_line, publish, seeded, table
from bench._system import Process, System, free_port
from switchboard.emulator.client import EmulatorClient
from switchboard.session.worker import LEASE_S
from switchboard.shared import events

CALLER = "+14155550101"
DIALLED = "+18005550100"
STEP_TIMEOUT_S = 30.0


@dataclass
class Seen:
    at: float
    kind: str
    lease: int | None
    worker: str | None
    attempt: int | None


class Watch:
    """Every event of the call as this process receives it from the bus."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.changed = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        at = time.time()
        try:
            event = events.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        worker = attempt = None
        if event.kind == "session.claimed" and isinstance(event.data, dict):
            worker, attempt = event.data.get("worker"), event.data.get("attempt")
        self.seen.append(Seen(at, event.kind, event.lease, worker, attempt))
        self.changed.set()

    async def until(self, found: Any, timeout_s: float = STEP_TIMEOUT_S) -> Seen:
        """The first event (from the start of the log) for which `found(event)` holds."""
        deadline = time.monotonic() + timeout_s
        checked = 0
        while True:
            for event in self.seen[checked:]:
                if found(event):
                    return event
            checked = len(self.seen)
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the awaited event did not come")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def claim(self) -> Seen | None:
        return next((s for s in reversed(self.seen) if s.kind == "session.claimed"), None)


async def run_failover(repeats: int) -> list[dict[str, Any]]:
    rng = seeded("failover")
    rows: list[dict[str, Any]] = []
    async with System() as system:
        await system.start_nats()
        ingress_port = free_port()
        ingress = await system.start_service("ingress", INGRESS_PORT=str(ingress_port))
        emulator = await system.start_emulator(webhook_url=f"http://127.0.0.1:{ingress_port}/webhooks/openai", pace=1.0)
        controller = await system.start_service("controller")
        workers: dict[str, Process] = {}
        spawned = 0

        async def spawn_worker() -> Process:
            nonlocal spawned
            spawned += 1
            name = f"worker-{spawned}"
            proc = await system.start_service("session", name=name, SWITCHBOARD_WORKER=name)
            workers[name] = proc
            return proc

        first = [await spawn_worker(), await spawn_worker()]
        await system.ready(ingress, emulator, controller, *first)
        watch = Watch()
        nc = await nats.connect(system.nats_url)
        try:
            await nc.subscribe("calls.>", cb=watch.on_msg)
            async with EmulatorClient(system.emulator_url) as client:
                call_id = await client.place_call(CALLER, DIALLED, script="chatter")
                claim = await watch.until(lambda s: s.kind == "session.claimed")
                for repeat in range(repeats):
                    attempt = claim.attempt or 0
                    await watch.until(lambda s, a=attempt: s.kind.startswith("rt.") and s.lease == a)
                    await asyncio.sleep(rng.uniform(0.2, 1.2))
                    holder = workers[str(claim.worker)]
                    last_rt = next(s for s in reversed(watch.seen) if s.kind.startswith("rt."))
                    killed_at = time.time()
                    holder.kill()
                    new_claim = await watch.until(
                        lambda s, a=attempt: s.kind == "session.claimed" and (s.attempt or 0) > a
                    )
                    flowing = await watch.until(
                        lambda s, a=new_claim.attempt: s.kind.startswith("rt.") and s.lease == a
                    )
                    rows.append({
                        "repeat": repeat + 1,
                        "killed": claim.worker,
                        "taken_by": new_claim.worker,
                        "attempt": new_claim.attempt,
                        "kill_to_claimed_s": round(new_claim.at - killed_at, 3),
                        "kill_to_events_s": round(flowing.at - killed_at, 3),
                        "event_gap_s": round(flowing.at - last_rt.at, 3),
                        "first_event_after": flowing.kind,
                    })  # fmt: skip
                    print(f"  repeat {repeat + 1}: events again {rows[-1]['kill_to_events_s']} s after the kill",
                          flush=True)  # fmt: skip
                    claim = new_claim
                    if repeat + 1 < repeats:
                        await system.ready(await spawn_worker())
                await client.hangup(call_id)
        finally:
            await nc.close()
    return rows


def summary(rows: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r[key] for r in rows]
    latency = Latency().extend_s(values)
    return {"p50_s": (latency.ms(50) or 0) / 1000, "max_s": max(values) if values else None, "n": len(values)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    print(f"failover: {machine_line(info)}", flush=True)
    repeats = 1 if args.smoke else args.repeats
    rows = await run_failover(repeats)
    return {
        "benchmark": "failover",
        "machine": info,
        "params": {"smoke": args.smoke, "repeats": repeats, "lease_s": LEASE_S, "emulator_pace": 1.0, "seed": SEED},
        "repeats": rows,
        "kill_to_claimed": summary(rows, "kill_to_claimed_s"),
        "kill_to_events": summary(rows, "kill_to_events_s"),
        "event_gap": summary(rows, "event_gap_s"),
    }


def report(results: dict[str, Any]) -> str:
    p = results["params"]
    rows = [
        (name, results[key]["p50_s"], results[key]["max_s"], results[key]["n"])
        for name, key in (
            ("kill -9 → session.claimed (next attempt)", "kill_to_claimed"),
            ("kill -9 → the call's events flowing again", "kill_to_events"),
            ("gap in the call's events (last before → first after)", "event_gap"),
        )
    ]
    return "\n".join([
        f"Failover — kill -9 of the worker holding a live call, 2 workers, lease {p['lease_s']:g} s, "
        f"{p['repeats']} repeats:",
        table(("measure", "p50 s", "max s", "repeats"), rows),
        "",
        table(("repeat", "killed", "taken by", "attempt", "→ claimed s", "→ events s", "gap s"),
              [(r["repeat"], r["killed"], r["taken_by"], r["attempt"], r["kill_to_claimed_s"], r["kill_to_events_s"],
                r["event_gap_s"]) for r in results["repeats"]]),
    ])  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one repeat: does it still run?")
    parser.add_argument("--repeats", type=int, default=5)
    add_output_args(parser, "failover")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    publish(args, results, report)
    return 0 if results["repeats"] else 1


if __name__ == "__main__":
    sys.exit(main())
