"""The Live emulator's pure parts: accept validation, the session resource, updates, and event builders."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.emulator import live_events as lev
from switchboard.emulator.errors import ApiError
from switchboard.emulator.live_config import (
    apply_update,
    check_status_code,
    delegation_type,
    function_tool_names,
    session_resource,
    validate_update,
)

TOOLS = [{"type": "function", "name": "lookup_order"}, {"type": "web_search"}]
RESPONSES = {"type": "responses", "responses": {"model": "gpt-5.5", "tools": TOOLS}}


def test_resource_resolves_defaults() -> None:
    """A minimal accept starts with voice marin, client delegation, status active and an expiry."""
    resource = session_resource("live_1", {"type": "live", "model": "gpt-live-1"})
    assert (resource["id"], resource["model"], resource["status"]) == ("live_1", "gpt-live-1", "active")
    assert resource["audio"] == {"output": {"voice": "marin"}}
    assert delegation_type(resource) == "client" and resource["store"] is False


def test_only_function_tools_of_a_responses_delegation_are_callable() -> None:
    """The model can call the responses backend's function tools, not hosted ones, and none on client."""
    assert function_tool_names(session_resource("live_1", {"delegation": RESPONSES})) == {"lookup_order"}
    assert function_tool_names(session_resource("live_1", {})) == set()


def test_update_keeps_the_delegation_type_and_merges_settings() -> None:
    """session.update may tune the delegation (same type) key by key; changing its type is refused."""
    resource = session_resource("live_1", {"delegation": RESPONSES})
    update: dict[str, Any] = {"delegation": {"type": "responses", "responses": {"instructions": "Be terse."}}}
    validate_update(update, resource)
    updated = apply_update(resource, update)
    assert updated["delegation"]["responses"] == {"model": "gpt-5.5", "tools": TOOLS, "instructions": "Be terse."}
    with pytest.raises(ApiError) as caught:
        validate_update({"delegation": {"type": "client"}}, resource)
    assert caught.value.param == "session.delegation.type"


@given(st.integers(min_value=-1000, max_value=2000))
def test_reject_status_code_must_be_300_to_699(status_code: int) -> None:
    """A Live reject's status_code is accepted exactly when it is between 300 and 699."""
    try:
        check_status_code({"status_code": status_code})
    except ApiError:
        assert not 300 <= status_code <= 699
    else:
        assert 300 <= status_code <= 699


def test_reflected_audio_is_pcm16_at_24khz_without_event_id() -> None:
    """A reflected frame is base64 PCM16 (48 bytes a millisecond) and carries no event_id."""
    frame = lev.input_audio(20)
    assert set(frame) == {"type", "audio"} and len(base64.b64decode(frame["audio"])) == 20 * 48
    assert "event_id" not in lev.output_audio(0, 350)


def test_function_call_stream_names_the_call_on_its_item_only() -> None:
    """The wrapped Responses stream gives call_id and name on the output item, arguments in full at done."""
    events = lev.responses_function_call("lookup_order", '{"order_id": "A1"}', "call_1")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.output_item.added" and kinds[-1] == "response.output_item.done"
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == '{"order_id": "A1"}' and "call_id" not in done
    assert events[-1]["item"]["call_id"] == "call_1" and events[-1]["item"]["name"] == "lookup_order"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
