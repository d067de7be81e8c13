"""A tool call in flight when the worker running it dies: the next holder completes it, exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from switchboard.emulator.scripts import AskTool, Script
from tests.faults._harness import (
    CALLER,
    DIALLED,
    TOOL_TIMEOUT_S,
    Rig,
    Tally,
    event_time,
    explain,
    function_outputs,
    hang_up_and_wait,
    judge_calls,
    read_log,
    response_dones,
    settle,
    subject_events,
)
from tests.faults.report import Row

ASK_THEN_HOLD = Script("ask_then_hold", (AskTool("Can you check order A1234?", "lookup_order", {"order_id": "A1234"}),))
"""The caller asks about an order (the model calls lookup_order) and then stays on the line."""
FIRST_ANSWER_S = 2.0
"""The tool takes this long to answer its first request: the worker that asked is killed meanwhile."""


async def test_a_tool_call_in_flight_when_its_worker_dies_is_completed_once_by_the_next_holder(
    rig: Rig, fault_row: Callable[..., Row]
) -> None:
    """kill -9 while tools.lookup_order is answering: the new holder completes it; one tool.completed, one output."""
    row = fault_row("tool call in flight, worker kill -9", calls=1)
    await rig.start_nats()
    emulator = await rig.start_emulator()
    services = await rig.up(controllers=1, workers=2)
    asked: list[dict[str, str]] = []
    first_asked = asyncio.Event()

    async def lookup_order(subject: str, payload: bytes) -> bytes:
        asked.append(msgspec.json.decode(payload))
        if len(asked) == 1:
            first_asked.set()
            await asyncio.sleep(FIRST_ANSWER_S)
        return b'{"output": {"order_id": "A1234", "status": "shipped"}}'

    await rig.bus.serve("tools.lookup_order", lookup_order)
    call_id = emulator.place_call(CALLER, DIALLED, script=ASK_THEN_HOLD)
    record = emulator.calls[call_id]
    assert await settle(first_asked.is_set, timeout=15), "the model's function call never reached the tool"
    tool_call_id = asked[0]["tool_call_id"]
    holder = (await subject_events(rig.bus, call_id, "session.claimed"))[0].data["worker"]
    killed_at = await services[holder].kill()

    async def completed() -> bool:
        return bool(await subject_events(rig.bus, call_id, "tool.completed")) and bool(
            function_outputs(record, tool_call_id)
        )

    finished = await settle(completed, timeout=FIRST_ANSWER_S + TOOL_TIMEOUT_S + 5, what="the tool call completed")
    # The model speaks about the output once it has it: that response is relayed like any other.
    spoke = await settle(lambda: len(response_dones(record)) >= 3, timeout=5)  # greeting, function call, answer
    await asyncio.sleep(1.0)  # room for a second completion, if one were coming
    ended = await hang_up_and_wait(rig, [call_id])

    log = await read_log(rig.bus)
    tally = Tally()
    judge_calls(tally, log, emulator, [call_id], claims=None)
    done = [e for e in log.of(call_id, "tool.completed") if e.data.get("tool_call_id") == tool_call_id]
    tally.once(call_id, "tool.completed", len(done))
    tally.once(call_id, "function_call_output sent to OpenAI", len(function_outputs(record, tool_call_id)))
    if done and done[0].data.get("error"):
        tally.wrongly(call_id, f"completed with an error: {done[0].data['error']}")
    if not spoke:
        tally.lose(call_id, "the model's answer about the output never came")
    else:
        relayed = {e.data.get("event_id") for e in log.of(call_id, "rt.response.done") if isinstance(e.data, dict)}
        if response_dones(record)[-1].get("event_id") not in relayed:
            tally.lose(call_id, "the model's answer about the output was not relayed")
    row.recovery_s = round(event_time(done[0]) - killed_at, 2) if done else None
    row.lost, row.doubled = len(tally.lost), len(tally.doubled)
    row.note = f"tool asked {len(asked)} times"
    marks = {f"{holder} killed": killed_at}
    assert tally.ok, explain(tally, log, rig, marks, extra=f"completed: {finished}, ended: {ended}")
