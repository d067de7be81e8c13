"""nats-server killed -9 and restarted on its port and store while two workers hold live calls."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import pytest

from tests.faults._harness import (
    Rig,
    Tally,
    all_have,
    explain,
    hang_up_and_wait,
    judge_calls,
    place_burst,
    read_log,
    say_is_relayed,
    settle,
)
from tests.faults.report import Row


async def nats_restarted_under_live_calls(rig: Rig, row: Row, rng: random.Random, *, calls: int, restarts: int) -> None:
    await rig.start_nats()
    emulator = await rig.start_emulator()
    await rig.up(controllers=1, workers=2)
    placed: list[str] = []
    await place_burst(emulator, placed, calls, concurrency=calls)
    assert await settle(lambda: all_have(rig.bus, placed, "rt.response.done"), timeout=15), "calls not live"

    recovered: list[float] = []
    marks: dict[str, float] = {}
    for i in range(restarts):
        marks[f"nats killed ({i + 1})"] = rig.kill_nats()
        await asyncio.sleep(rng.uniform(0.5, 3.0))  # down for less, or more, than a lease
        await rig.restart_nats()
        back = marks[f"nats back ({i + 1})"] = time.time()
        # Relaying again: a say on every call is served by its holder and its response reaches the log.
        failures = await asyncio.gather(*(say_is_relayed(rig, c, timeout_s=15) for c in placed))
        recovered.append(time.time() - back)
        not_relaying = {c: f for c, f in zip(placed, failures, strict=True) if f is not None}
        if not_relaying:
            break
    ended = await hang_up_and_wait(rig, placed)

    log = await read_log(rig.bus)
    tally = Tally()
    judge_calls(tally, log, emulator, placed, claims=None)
    for call_id, why in not_relaying.items():
        tally.lose(call_id, f"not relaying after the restart: {why}")
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.recovery_s = round(max(recovered), 2) if recovered else None
    row.note = f"{len(recovered)} of {restarts} restarts survived"
    assert tally.ok, explain(tally, log, rig, marks, extra=f"every call ended: {ended}")


async def test_a_nats_restart_under_live_calls_keeps_one_holder_per_call_and_relays_on(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """kill -9 and restart of nats-server: one holder per call at a time, greeted once, relaying, ended once."""
    row = fault_row("nats-server kill -9 + restart", calls=10)
    await nats_restarted_under_live_calls(rig, row, rng, calls=10, restarts=1)


@pytest.mark.fault_full
@pytest.mark.timeout(300)
async def test_nats_restarted_again_and_again_under_live_calls_keeps_every_guarantee(
    rig: Rig, fault_row: Callable[..., Row], rng: random.Random
) -> None:
    """Four kill -9 and restarts of nats-server in a row under 20 live calls."""
    row = fault_row("nats-server kill -9 + restart x4", calls=20)
    await nats_restarted_under_live_calls(rig, row, rng, calls=20, restarts=4)
