"""A session worker killed -9 in the middle of its calls: another worker re-attaches and relays on."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import pytest

from switchboard.session.worker import LEASE_S
from tests.faults._harness import (
    Rig,
    Tally,
    event_time,
    explain,
    hang_up_and_wait,
    judge_calls,
    per_call,
    place_burst,
    read_log,
    say_is_relayed,
    settle,
)
from tests.faults.report import Row

FAILOVER_S = 2.0
"""kill → the next ``session.claimed`` of each of the dead worker's calls."""


async def worker_killed_mid_call(rig: Rig, row: Row, rng: random.Random, *, calls: int, workers: int) -> None:
    await rig.start_nats()
    emulator = await rig.start_emulator()
    services = await rig.up(controllers=1, workers=workers, max_calls=calls)
    placed: list[str] = []
    await place_burst(emulator, placed, calls, concurrency=calls)

    async def all_held() -> bool:
        return set(await per_call(rig.bus, "session.claimed")) >= set(placed) and all(
            emulator.calls[c].client_events for c in placed
        )

    assert await settle(all_held, timeout=15), "not every call was claimed and greeted"
    before = await read_log(rig.bus)
    holder = {c: before.of(c, "session.claimed")[-1].data["worker"] for c in placed}
    victim = services[Counter(holder.values()).most_common(1)[0][0]]
    orphans = [c for c in placed if holder[c] == victim.name]
    await asyncio.sleep(rng.uniform(0, LEASE_S / 4))  # anywhere in the heartbeat cycle
    killed_at = await victim.kill()

    async def taken_over() -> bool:
        claims = await per_call(rig.bus, "session.claimed")
        return all(claims[c] >= 2 for c in orphans)

    await settle(taken_over, timeout=10, what="every orphan claimed again")
    failures = await asyncio.gather(*(say_is_relayed(rig, c) for c in orphans))
    ended = await hang_up_and_wait(rig, placed)

    log = await read_log(rig.bus)
    tally = Tally()
    judge_calls(tally, log, emulator, placed, claims=None)
    failover: dict[str, float | None] = {}
    for call_id in placed:
        claims = log.of(call_id, "session.claimed")
        if call_id not in orphans:
            tally.once(call_id, "session.claimed (its worker lived)", len(claims))
            continue
        later = [e for e in claims if e.data["worker"] != victim.name]
        failover[call_id] = event_time(later[0]) - killed_at if later else None
        if not later:
            tally.lose(call_id, "never claimed by another worker")
        tally.once(call_id, "session.lost for the dead worker's lease", log.count(call_id, "session.lost"))
    for call_id, why in zip(orphans, failures, strict=True):
        if why is not None:
            tally.lose(call_id, f"not relaying after the takeover: {why}")
    times = list(failover.values())
    row.recovery_s = None if None in times else round(max(t for t in times if t is not None), 2)
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = f"{victim.name} killed holding {len(orphans)} of {calls} calls"
    marks = {f"{victim.name} killed": killed_at}
    assert tally.ok, explain(tally, log, rig, marks, extra=f"every call ended: {ended}")
    slow = {c: t for c, t in failover.items() if t is None or t > FAILOVER_S}
    assert not slow, f"failover took longer than {FAILOVER_S} s: {slow}"


async def test_a_killed_workers_calls_are_reattached_within_two_seconds_and_relay_on(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """kill -9 of a worker mid-call: re-claimed within 2 s, relaying, one holder at a time, ended once."""
    row = fault_row("session worker kill -9 mid-call", calls=6)
    await worker_killed_mid_call(rig, row, rng, calls=6, workers=2)


@pytest.mark.fault_full
@pytest.mark.timeout(300)
async def test_a_killed_worker_holding_a_dozen_calls_hands_every_one_over(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """The same with 36 calls on three workers."""
    row = fault_row("session worker kill -9 mid-call (36)", calls=36)
    await worker_killed_mid_call(rig, row, rng, calls=36, workers=3)
