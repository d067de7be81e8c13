"""A session worker frozen (SIGSTOP) past its lease: another takes the call; woken, the old one stays quiet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from switchboard.session.worker import LEASE_S
from switchboard.shared.events import CloudEvent
from tests.faults._harness import (
    CALLER,
    DIALLED,
    Rig,
    Tally,
    client_events_since,
    event_time,
    explain,
    function_outputs,
    hang_up_and_wait,
    judge_calls,
    read_log,
    response_dones,
    say_is_relayed,
    settle,
    subject_events,
)
from tests.faults.report import Row

FROZEN_S = 4.0
"""Well past the lease: the call is taken over while the worker is frozen."""


async def test_a_worker_woken_after_losing_its_lease_sends_and_records_nothing_more(
    rig: Rig, fault_row: Callable[..., Row]
) -> None:
    """SIGSTOP 4 s, taken over, SIGCONT: the old holder sends nothing, runs no tool, records nothing more."""
    row = fault_row("session worker SIGSTOP past its lease", calls=1)
    await rig.start_nats()
    emulator = await rig.start_emulator()
    services = await rig.up(controllers=1, workers=2)
    tool_requests: list[dict[str, object]] = []

    async def lookup_order(subject: str, payload: bytes) -> bytes:
        tool_requests.append(msgspec.json.decode(payload))
        return b'{"output": {"order_id": "A1", "status": "shipped"}}'

    await rig.bus.serve("tools.lookup_order", lookup_order)
    call_id = emulator.place_call(CALLER, DIALLED, script="hold")
    record = emulator.calls[call_id]
    assert await settle(lambda: subject_events(rig.bus, call_id, "rt.response.done"), timeout=15), "not greeted"
    first = (await subject_events(rig.bus, call_id, "session.claimed"))[0].data
    frozen = services[first["worker"]]
    frozen_at = frozen.freeze()

    async def taken_over() -> bool:
        return len(await subject_events(rig.bus, call_id, "session.claimed")) >= 2

    took_over = await settle(taken_over, timeout=FROZEN_S, what="another worker claimed the call")
    # While the old holder is frozen, its socket buffers fill with what it must not act on when it wakes:
    # a say command (it serves cmd.<id>.*) and a model function call (it runs tools).
    said = await say_is_relayed(rig, call_id)
    dones = len(response_dones(record))
    live = emulator.live(call_id)
    assert live is not None and live.realtime is not None
    tool_call_id = await live.realtime.function_call("lookup_order", {"order_id": "A1"})
    answered = await settle(lambda: function_outputs(record, tool_call_id), timeout=FROZEN_S)
    await settle(lambda: len(response_dones(record)) >= dones + 2, timeout=FROZEN_S)  # the call's, the follow-up
    await asyncio.sleep(max(0.0, frozen_at + FROZEN_S - time.time()))
    thawed_at = frozen.thaw()
    old_sideband = record.sideband_connections[0]
    let_go = await settle(lambda: old_sideband.closed_at is not None, timeout=5, what="the old sideband closed")
    await asyncio.sleep(1.0)  # let the woken worker act on anything else it had buffered
    after_wake = client_events_since(record, thawed_at)
    ended = await hang_up_and_wait(rig, [call_id])

    log = await read_log(rig.bus)
    tally = Tally()
    judge_calls(tally, log, emulator, [call_id], claims=None, one_holder=False)
    if not took_over:
        tally.lose(call_id, f"not taken over within {FROZEN_S} s of the freeze")
    if said is not None:
        tally.lose(call_id, f"the new holder did not relay a say: {said}")
    if not answered:
        tally.lose(call_id, "the model's function call got no output")
    if not let_go:
        tally.double(call_id, "the woken worker kept its sideband open")
    if after_wake:
        kinds = [e.get("type") if isinstance(e, dict) else e for e in after_wake]
        tally.double(call_id, f"the woken worker sent {len(after_wake)} client events: {kinds}")
    tally.once(call_id, "tool run", len(tool_requests))
    old_lease = first["attempt"]

    def under_old_lease(e: CloudEvent) -> bool:
        if e.kind.startswith("session."):
            return e.data.get("worker") == frozen.name and e.data.get("attempt") == old_lease
        return e.lease == old_lease and not e.kind.startswith("rt.")

    stale = [e.kind for e in log.of(call_id) if event_time(e) >= thawed_at and under_old_lease(e)]
    if stale:
        tally.double(call_id, f"recorded under the old lease after waking: {stale}")
    claims = log.of(call_id, "session.claimed")
    row.recovery_s = round(event_time(claims[1]) - frozen_at, 2) if len(claims) > 1 else None
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = f"frozen {FROZEN_S:g} s with a {LEASE_S:g} s lease"
    marks = {f"{frozen.name} frozen": frozen_at, f"{frozen.name} thawed": thawed_at}
    assert tally.ok, explain(tally, log, rig, marks, extra=f"ended: {ended}")
