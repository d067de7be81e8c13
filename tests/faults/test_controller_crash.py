"""A controller killed -9 in the middle of a burst of calls: the other one finishes its work, once."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from tests.faults._harness import (
    Rig,
    Tally,
    accept_attempts,
    affected,
    answered_at,
    explain,
    hang_up_and_wait,
    judge_calls,
    place_burst,
    read_log,
    recovered_after,
    settle,
)
from tests.faults.report import Row

RECOVERY_S = 5.0
"""The calls a dead controller had taken are answered within this long of its death."""
OPENAI_ACCEPT_S = 0.25
"""OpenAI takes this long to answer an accept, so each controller has calls in flight when one dies."""


async def controller_killed_mid_burst(rig: Rig, row: Row, rng: random.Random, *, calls: int, concurrency: int) -> None:
    await rig.start_nats()
    emulator = await rig.start_emulator()
    services = await rig.up(controllers=2, workers=2, max_calls=calls)
    emulator.faults.add("accept", delay_s=OPENAI_ACCEPT_S, times=10 * calls)
    placed: list[str] = []
    burst = asyncio.create_task(place_burst(emulator, placed, calls, concurrency=concurrency))

    def answered() -> int:
        return sum(1 for c in placed if emulator.calls[c].state == "accepted")

    await settle(lambda: answered() >= calls // 4, timeout=30, what="a quarter of the calls answered")
    await asyncio.sleep(rng.uniform(0, OPENAI_ACCEPT_S))  # land anywhere in an accept's round trip
    victim = services[rng.choice(["controller-1", "controller-2"])]
    killed_at = await victim.kill()
    await burst
    everyone_answered = await settle(
        lambda: all(emulator.calls[c].state == "accepted" for c in placed), timeout=RECOVERY_S + 10
    )
    greeted = await settle(lambda: all(emulator.calls[c].client_events for c in placed), timeout=10)
    ended = await hang_up_and_wait(rig, placed)

    log = await read_log(rig.bus)
    tally = Tally()
    judge_calls(tally, log, emulator, placed)
    conflicts = 0
    for call_id in placed:
        tried, accepted = accept_attempts(emulator.calls[call_id]), log.of(call_id, "accepted")
        if tried and tried[-1].status == 409 and accepted:  # the dead replica's accept went through unseen
            conflicts += 1
            if accepted[0].data.get("confirmed_by") != "conflict":
                tally.wrongly(call_id, f"accepted after a 409 without confirmed_by conflict: {accepted[0].data}")
    hit = affected(emulator, placed, killed_at)
    late = [c for c in hit if (t := answered_at(log, emulator, c)) is None or t - killed_at > RECOVERY_S]
    row.recovery_s = recovered_after(log, emulator, hit, killed_at)
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = f"{victim.name} killed; {len(hit)} calls ringing then or placed within 1 s; {conflicts} confirmed by 409"

    marks = {f"{victim.name} killed": killed_at}
    extra = f"all answered: {everyone_answered}, greeted: {greeted}, ended: {ended}"
    assert tally.ok, explain(tally, log, rig, marks, extra=extra)
    assert not late, f"{len(late)} of {len(hit)} calls hit by the kill not answered within {RECOVERY_S} s"


async def test_a_controller_killed_mid_burst_loses_and_doubles_no_call(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """kill -9 of one of two controllers mid-burst: every call decided, accepted, greeted and ended once."""
    row = fault_row("controller kill -9 mid-burst", calls=60)
    await controller_killed_mid_burst(rig, row, rng, calls=60, concurrency=20)


@pytest.mark.fault_full
@pytest.mark.timeout(300)
async def test_a_controller_killed_mid_burst_of_300_loses_and_doubles_no_call(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """The same with 300 calls, 50 ringing at once."""
    row = fault_row("controller kill -9 mid-burst (300)", calls=300)
    await controller_killed_mid_burst(rig, row, rng, calls=300, concurrency=50)
