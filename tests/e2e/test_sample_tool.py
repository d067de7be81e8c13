"""`up` and `demo` serve the built-in policy's `lookup_order` tool, so the README's order_lookup call works."""

from __future__ import annotations

import json

from switchboard.cli.local import LocalSystem
from switchboard.cli.sample_tools import lookup_order
from switchboard.shared.bus import Bus
from tests.e2e.conftest import call_events


async def test_an_order_lookup_call_gets_the_sample_tools_answer(system: LocalSystem, bus: Bus) -> None:
    """The `order_lookup` caller, under the built-in policy, has its `lookup_order` call answered."""
    assert system.emulator is not None
    call_id = system.emulator.place_call("+14155550101", "+18005550100", script="order_lookup")
    events = await call_events(bus, call_id)
    completed = [e.data for e in events if e.kind == "tool.completed"]
    assert len(completed) == 1 and completed[0]["name"] == "lookup_order" and "error" not in completed[0]
    assert json.loads(completed[0]["output"]) == {"order_id": "A1234", "status": "shipped", "arrives": "tomorrow"}
    sent = [
        e["item"] for e in system.emulator.calls[call_id].client_events if e.get("type") == "conversation.item.create"
    ]
    assert [item["output"] for item in sent if item.get("type") == "function_call_output"] == [completed[0]["output"]]


def test_an_unknown_order_is_answered_not_found() -> None:
    """The sample tool answers an order it does not know with ``not found``, and bad arguments with an error."""
    assert lookup_order({"order_id": "Z9"}) == {"output": {"order_id": "Z9", "status": "not found"}}
    assert "error" in lookup_order({"order": "A1234"})
