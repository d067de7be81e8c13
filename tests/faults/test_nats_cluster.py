"""A 3-node NATS cluster loses the CALLS stream's leader while calls are being placed."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from tests.faults._harness import (
    Rig,
    Tally,
    affected,
    explain,
    hang_up_and_wait,
    judge_calls,
    place_burst,
    read_log,
    recovered_after,
    say_is_relayed,
    settle,
)
from tests.faults.report import Row


async def leader_killed_mid_burst(
    rig: Rig, row: Row, rng: random.Random, *, calls: int, concurrency: int, kills: int
) -> None:
    await rig.start_nats(nodes=3)
    emulator = await rig.start_emulator()
    # In two waves: on a fresh cluster, services racing to create the same KV bucket can time out reading
    # it, and a controller exits on that (reported separately; this scenario is about losing a leader).
    await rig.start(rig.service("ingress"), rig.service("controller", "controller-1"))
    await rig.start(
        rig.service("controller", "controller-2"),
        *(rig.service("session", f"worker-{i + 1}", SESSION_MAX_CALLS=str(calls)) for i in range(2)),
    )
    placed: list[str] = []
    burst = asyncio.create_task(place_burst(emulator, placed, calls, concurrency=concurrency, interval_s=0.1))
    marks: dict[str, float] = {}
    live_before: list[str] = []
    recovery: list[float] = []
    not_relaying: dict[str, str] = {}
    for k in range(kills):
        wanted = calls * (k + 1) // (kills + 2)

        def answered(n: int = wanted) -> bool:
            return sum(1 for c in placed if emulator.calls[c].state == "accepted") >= n

        await settle(answered, timeout=30, what=f"{wanted} calls answered")
        await asyncio.sleep(rng.uniform(0, 0.2))
        leader = rig.node(await rig.stream_leader())
        live_before = [c for c in placed if emulator.calls[c].client_events]
        killed_at = marks[f"stream leader {leader.name} killed"] = rig.kill_nats(leader)
        # The calls that were live when the leader died keep relaying (checked while the burst goes on).
        failures = await asyncio.gather(*(say_is_relayed(rig, c, timeout_s=15) for c in live_before))
        not_relaying.update({c: f for c, f in zip(live_before, failures, strict=True) if f is not None})
        if k + 1 < kills:
            await rig.restart_nats(leader)  # back as a follower before the next leader goes
            marks[f"{leader.name} back"] = time.time()
        recovery.append(killed_at)
    await burst
    everyone_answered = await settle(lambda: all(emulator.calls[c].state == "accepted" for c in placed), timeout=20)
    await settle(lambda: all(emulator.calls[c].client_events for c in placed), timeout=10)
    ended = await hang_up_and_wait(rig, placed, timeout_s=20)

    log = await read_log(rig.bus)
    tally = Tally()
    judge_calls(tally, log, emulator, placed, claims=None)  # a lease may expire while the cluster elects
    for call_id, why in not_relaying.items():
        tally.lose(call_id, f"not relaying after the leader died: {why}")
    hit = affected(emulator, placed, recovery[-1])
    row.recovery_s = recovered_after(log, emulator, hit, recovery[-1])
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = f"{kills} stream leader kill(s); {len(hit)} calls ringing at the last or placed within 1 s"
    extra = f"all answered: {everyone_answered}, ended: {ended}"
    assert tally.ok, explain(tally, log, rig, marks, extra=extra)


async def test_losing_the_stream_leader_mid_burst_loses_no_webhook_and_decides_each_call_once(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """kill -9 of the CALLS leader (replicas 3): every stored webhook kept, one decision each, calls relay on."""
    row = fault_row("3-node cluster: stream leader kill -9", calls=30)
    await leader_killed_mid_burst(rig, row, rng, calls=30, concurrency=10, kills=1)


@pytest.mark.fault_full
@pytest.mark.timeout(300)
async def test_losing_the_stream_leader_twice_in_a_burst_of_120_keeps_every_guarantee(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """Two leader kills (the first back as a follower before the second) in a burst of 120 calls."""
    row = fault_row("3-node cluster: stream leader kill -9 x2", calls=120)
    await leader_killed_mid_burst(rig, row, rng, calls=120, concurrency=30, kills=2)
