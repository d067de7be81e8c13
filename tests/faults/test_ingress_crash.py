"""The ingress killed -9 in the middle of a burst of webhooks and restarted: OpenAI's retries land once."""

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
    settle,
)
from tests.faults.report import Row


async def ingress_killed_mid_burst(
    rig: Rig, row: Row, rng: random.Random, *, calls: int, concurrency: int, kills: int
) -> None:
    await rig.start_nats()
    emulator = await rig.start_emulator()
    services = await rig.up(controllers=1, workers=1, max_calls=calls)
    ingress = services["ingress"]
    placed: list[str] = []
    burst = asyncio.create_task(place_burst(emulator, placed, calls, concurrency=concurrency, interval_s=0.02))
    marks: dict[str, float] = {}
    killed_at = 0.0
    for k in range(kills):
        wanted = calls * (k + 1) // (kills + 2)

        def delivered(n: int = wanted) -> bool:
            return sum(1 for c in placed if any(d.status == 200 for d in emulator.calls[c].webhook_deliveries)) >= n

        await settle(delivered, timeout=30, what=f"{wanted} webhooks delivered")
        killed_at = marks[f"ingress killed ({k + 1})"] = await ingress.kill()
        await asyncio.sleep(rng.uniform(0.3, 1.5))
        await ingress.restart()
        marks[f"ingress back ({k + 1})"] = time.time()
    await burst
    # OpenAI's back-off between retries reaches 5 s: give the last retries time to come.
    everyone_answered = await settle(lambda: all(emulator.calls[c].state == "accepted" for c in placed), timeout=30)
    await settle(lambda: all(emulator.calls[c].client_events for c in placed), timeout=10)
    ended = await hang_up_and_wait(rig, placed)

    log = await read_log(rig.bus)
    tally = Tally()
    judge_calls(tally, log, emulator, placed)
    for call_id in placed:
        tally.once(call_id, "incoming stored", log.count(call_id, "incoming"))
    hit = affected(emulator, placed, killed_at)
    retried = sum(1 for c in placed if len(emulator.calls[c].webhook_deliveries) > 1)
    row.recovery_s = recovered_after(log, emulator, hit, killed_at)
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = f"{kills} ingress kill(s); {retried} webhooks redelivered"
    extra = f"all answered: {everyone_answered}, ended: {ended}"
    assert tally.ok, explain(tally, log, rig, marks, extra=extra)


async def test_an_ingress_killed_mid_burst_stores_every_answered_webhook_once(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """kill -9 of the ingress mid-burst, restarted: every webhook answered 200 stored once, each call decided once."""
    row = fault_row("ingress kill -9 mid-burst + restart", calls=40)
    await ingress_killed_mid_burst(rig, row, rng, calls=40, concurrency=20, kills=1)


@pytest.mark.fault_full
@pytest.mark.timeout(300)
async def test_an_ingress_killed_twice_in_a_burst_of_200_stores_every_answered_webhook_once(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """Two kills and restarts of the ingress in a burst of 200 calls, 50 ringing at once."""
    row = fault_row("ingress kill -9 mid-burst + restart x2 (200)", calls=200)
    await ingress_killed_mid_burst(rig, row, rng, calls=200, concurrency=50, kills=2)
