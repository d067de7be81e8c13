"""Readiness follows NATS: every service's /readyz turns 503 when NATS dies and 200 when it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.faults._harness import Rig, Service
from tests.faults.report import Row

NOT_READY_WITHIN_S = 2.0
READY_AGAIN_WITHIN_S = 15.0


async def first_answer(service: Service, wanted: int, timeout_s: float) -> tuple[float | None, list[int | None]]:
    """How long until /readyz answers `wanted` (None if it never did within `timeout_s`), and what it said."""
    started = time.time()
    seen: list[int | None] = []
    while time.time() - started < timeout_s:
        status = await service.readiness(timeout_s=0.5)
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == wanted:
            return time.time() - started, seen
        await asyncio.sleep(0.05)
    return None, seen


async def test_every_services_readiness_follows_the_nats_connection(rig: Rig, fault_row: Callable[..., Row]) -> None:
    """NATS killed: ingress, controller, session and projector /readyz 503 within 2 s; 200 again once it is back."""
    row = fault_row("readiness with NATS down", calls=0)
    await rig.start_nats()
    await rig.start_emulator()
    services = await rig.start(
        rig.service("ingress"), rig.service("controller"), rig.service("session"), rig.service("projector")
    )
    rig.kill_nats()
    down = await asyncio.gather(*(first_answer(s, 503, NOT_READY_WITHIN_S + 3) for s in services))
    await rig.restart_nats()
    up = await asyncio.gather(*(first_answer(s, 200, READY_AGAIN_WITHIN_S) for s in services))

    stayed_ready = {
        s.name: f"after {t:.2f} s" if t is not None else f"never (answered {seen})"
        for s, (t, seen) in zip(services, down, strict=True)
        if t is None or t > NOT_READY_WITHIN_S
    }
    stayed_down = {s.name: seen for s, (t, seen) in zip(services, up, strict=True) if t is None}
    back = [t for t, _ in up]
    row.lost, row.doubled = 0, 0
    row.recovery_s = None if None in back else round(max(t for t in back if t is not None), 2)
    row.note = "; ".join(
        [f"not 503 within {NOT_READY_WITHIN_S:g} s: {', '.join(stayed_ready)}"] * bool(stayed_ready)
        + [f"not ready again: {', '.join(stayed_down)}"] * bool(stayed_down)
    )
    assert not stayed_ready, f"/readyz did not turn 503 within {NOT_READY_WITHIN_S} s of NATS dying: {stayed_ready}"
    assert not stayed_down, f"/readyz not 200 within {READY_AGAIN_WITHIN_S} s of NATS coming back: {stayed_down}"
