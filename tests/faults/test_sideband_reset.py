"""A sideband connection reset without a close frame (1006): the worker re-attaches; the call goes on."""

from __future__ import annotations

import asyncio
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
    per_call,
    place_burst,
    read_log,
    say_is_relayed,
    settle,
)
from tests.faults.report import Row


async def sideband_reset(rig: Rig, row: Row, *, calls: int, drops: int) -> None:
    await rig.start_nats()
    emulator = await rig.start_emulator()
    await rig.up(controllers=1, workers=1)
    placed: list[str] = []
    await place_burst(emulator, placed, calls, concurrency=calls)
    assert await settle(lambda: all_have(rig.bus, placed, "rt.response.done"), timeout=15), "calls not live"
    tally = Tally()
    marks: dict[str, float] = {}
    reattach: list[float] = []
    for d in range(drops):
        opened = {c: emulator.calls[c].sideband_count for c in placed}
        dropped_at = marks[f"sidebands reset ({d + 1})"] = time.time()
        for call_id in placed:
            emulator.drop_sideband(call_id, 1006)

        def reattached(opened: dict[str, int] = opened) -> bool:
            return all(emulator.calls[c].sideband_count > opened[c] for c in placed)

        back = await settle(reattached, timeout=10, what="re-attached")
        if not back:
            break
        reattach.append(max(emulator.calls[c].sideband_connections[-1].at - dropped_at for c in placed))
        failures = await asyncio.gather(*(say_is_relayed(rig, c) for c in placed))
        for call_id, why in zip(placed, failures, strict=True):
            if why is not None:
                tally.lose(call_id, f"not relaying after reset {d + 1}: {why}")
        ended_early = await per_call(rig.bus, "ended")
        for call_id in placed:
            if ended_early[call_id] or emulator.calls[call_id].state != "accepted":
                tally.lose(call_id, f"ended by reset {d + 1} (OpenAI: {emulator.calls[call_id].state})")
    ended = await hang_up_and_wait(rig, placed)

    log = await read_log(rig.bus)
    judge_calls(tally, log, emulator, placed)
    for call_id in placed:
        if emulator.calls[call_id].sideband_count < drops + 1:
            tally.lose(call_id, f"re-attached {emulator.calls[call_id].sideband_count - 1} of {drops} times")
        reasons = [e.data.get("reason") for e in log.of(call_id, "ended")]
        if reasons and reasons != ["caller_hangup"]:
            tally.wrongly(call_id, f"ended as {reasons}, not caller_hangup")
    row.recovery_s = round(max(reattach), 2) if len(reattach) == drops else None
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = f"{drops} reset(s) per call"
    assert tally.ok, explain(tally, log, rig, marks, extra=f"ended: {ended}")


async def test_a_sideband_reset_without_a_close_frame_is_reattached_and_the_call_goes_on(
    rig: Rig, fault_row: Callable[..., Row]
) -> None:
    """A 1006 reset: the worker re-attaches, the call is not ended, relays on, and ends once later."""
    row = fault_row("sideband reset (1006)", calls=3)
    await sideband_reset(rig, row, calls=3, drops=1)


@pytest.mark.fault_full
@pytest.mark.timeout(300)
async def test_sidebands_reset_again_and_again_are_reattached_every_time(
    rig: Rig, fault_row: Callable[..., Row]
) -> None:
    """Five resets in a row on each of 5 calls."""
    row = fault_row("sideband reset (1006) x5", calls=5)
    await sideband_reset(rig, row, calls=5, drops=5)
