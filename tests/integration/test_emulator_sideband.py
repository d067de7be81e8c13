"""The emulated sideband WebSocket: auth, attach/re-attach, drops, client events and the scripted caller."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from switchboard.emulator import server
from switchboard.emulator.scripts import Dtmf, Hangup, Say, Script
from switchboard.emulator.server import Emulator
from tests.fixtures.emulator import (
    WebhookReceiver,
    accept,
    connect_sideband,
    next_event,
    read_until_closed,
    run_agent,
    sideband_url,
)


async def answered(emulator: Emulator, script: str | Script = "hold") -> str:
    call_id = emulator.place_call("+14155550100", "+18005551212", script=script)
    await accept(emulator, call_id)
    return call_id


async def refused_status(url: str, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, additional_headers=headers, open_timeout=5.0):
            pass
    return caught.value.response.status_code


async def test_sideband_requires_the_bearer_key(wired_emulator: Emulator) -> None:
    """The upgrade is refused with 401 without the key or with a wrong one, and the attempts are recorded."""
    call_id = await answered(wired_emulator)
    url = sideband_url(wired_emulator, call_id)
    assert await refused_status(url, {}) == 401
    assert await refused_status(url, {"Authorization": "Bearer sk-nope"}) == 401
    attempts = wired_emulator.calls[call_id].sideband_connections
    assert [(a.authorization, a.status) for a in attempts] == [("missing", 401), ("invalid", 401)]


async def test_sideband_for_unknown_call_is_404(wired_emulator: Emulator) -> None:
    """A sideband for a call id the emulator does not know is refused with 404."""
    headers = {"Authorization": f"Bearer {wired_emulator.config.api_key}"}
    assert await refused_status(sideband_url(wired_emulator, "rtc_" + "a" * 32), headers) == 404


async def test_sideband_for_ringing_call_is_400(wired_emulator: Emulator) -> None:
    """A sideband for a call that has not been accepted yet is refused with 400."""
    call_id = wired_emulator.place_call("+14155550100", "+18005551212", script="hold")
    headers = {"Authorization": f"Bearer {wired_emulator.config.api_key}"}
    assert await refused_status(sideband_url(wired_emulator, call_id), headers) == 400


async def test_injected_sideband_connect_fault_refuses_the_upgrade(wired_emulator: Emulator) -> None:
    """faults.add(sideband_connect, status=404) makes the next attach fail, the one after succeeds."""
    call_id = await answered(wired_emulator)
    wired_emulator.faults.add("sideband_connect", status=404, code="call_id_not_found")
    headers = {"Authorization": f"Bearer {wired_emulator.config.api_key}"}
    assert await refused_status(sideband_url(wired_emulator, call_id), headers) == 404
    async with await connect_sideband(wired_emulator, call_id) as ws:
        assert (await next_event(ws))["type"] == "session.created"


async def test_drop_sideband_is_an_abnormal_close(wired_emulator: Emulator) -> None:
    """drop_sideband aborts the connection: the client sees 1006, the call stays answered."""
    call_id = await answered(wired_emulator)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await next_event(ws)
        assert wired_emulator.drop_sideband(call_id) == 1
        with pytest.raises(ConnectionClosedError):
            await next_event(ws)
        assert ws.close_code == 1006
    record = wired_emulator.calls[call_id]
    assert record.state == "accepted" and record.sideband_connections[0].close_code == 1006


async def test_drop_sideband_with_a_close_code(wired_emulator: Emulator) -> None:
    """drop_sideband with code 1011 closes with that code instead of aborting."""
    call_id = await answered(wired_emulator)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await next_event(ws)
        wired_emulator.drop_sideband(call_id, code=1011)
        await read_until_closed(ws)
        assert ws.close_code == 1011


async def test_reattach_after_drop_gets_a_new_session_created(wired_emulator: Emulator) -> None:
    """After a drop a new sideband attaches to the live call and gets its own session.created."""
    call_id = await answered(wired_emulator)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        first = await next_event(ws)
        wired_emulator.drop_sideband(call_id)
        await read_until_closed(ws)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        second = await next_event(ws)
    assert second["type"] == "session.created" and second["event_id"] != first["event_id"]
    assert second["session"]["id"] == first["session"]["id"]
    assert wired_emulator.calls[call_id].sideband_count == 2


async def test_second_sideband_shares_later_events(wired_emulator: Emulator) -> None:
    """Two sidebands on one live call: each gets its own session.created, then both get the same events."""
    call_id = await answered(wired_emulator)
    async with (
        await connect_sideband(wired_emulator, call_id) as first,
        await connect_sideband(wired_emulator, call_id) as second,
    ):
        assert (await next_event(first))["type"] == "session.created"
        assert (await next_event(second))["type"] == "session.created"
        await first.send(json.dumps({"type": "response.create", "response": {"instructions": "Say: hi there"}}))
        seen_first = [await next_event(first) for _ in range(3)]
        seen_second = [await next_event(second) for _ in range(3)]
    assert seen_first == seen_second
    assert seen_first[0]["type"] == "response.created"


async def test_second_response_create_while_responding_is_an_error(wired_emulator: Emulator) -> None:
    """A response.create while a response is in progress gets conversation_already_has_active_response."""
    call_id = await answered(wired_emulator)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await next_event(ws)
        create = json.dumps({"type": "response.create", "event_id": "evt_second"})
        await ws.send(json.dumps({"type": "response.create"}))
        await ws.send(create)
        errors: list[dict[str, Any]] = []
        while not errors:
            event = await next_event(ws)
            if event["type"] == "error":
                errors.append(event)
    assert errors[0]["error"]["code"] == "conversation_already_has_active_response"
    assert errors[0]["error"]["event_id"] == "evt_second"


async def test_session_update_answers_session_updated(wired_emulator: Emulator) -> None:
    """session.update merges into the session and is answered with the full session.updated."""
    call_id = await answered(wired_emulator)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await next_event(ws)
        update = {"type": "realtime", "instructions": "Now be terse.", "audio": {"output": {"voice": "cedar"}}}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        updated = await next_event(ws)
    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] == "Now be terse."
    assert updated["session"]["audio"]["output"]["voice"] == "cedar"
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}


async def test_malformed_client_events_get_errors_not_crashes(wired_emulator: Emulator) -> None:
    """Invalid JSON, a missing type and a bad item each get an error event; the socket stays usable."""
    call_id = await answered(wired_emulator)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await next_event(ws)
        for bad in ("not json", json.dumps({"no": "type"}), json.dumps({"type": "conversation.item.create"})):
            await ws.send(bad)
            event = await next_event(ws)
            assert event["type"] == "error" and event["error"]["type"] == "invalid_request_error"
        await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
        assert (await next_event(ws))["type"] == "input_audio_buffer.cleared"
    assert len(wired_emulator.calls[call_id].client_events) == 4


async def test_function_call_output_item_is_added(wired_emulator: Emulator) -> None:
    """A function_call_output item is acknowledged with conversation.item.added then .done."""
    call_id = await answered(wired_emulator)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await next_event(ws)
        item = {"type": "function_call_output", "call_id": "call_x", "output": '{"ok": true}'}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        added, done = await next_event(ws), await next_event(ws)
    assert (added["type"], done["type"]) == ("conversation.item.added", "conversation.item.done")
    assert added["item"]["call_id"] == "call_x" and added["item"]["id"].startswith("item_")


async def test_scripted_caller_hangs_up_with_1000(wired_emulator: Emulator) -> None:
    """The short script: greeting, one caller turn with its answer, then the caller hangs up (1000)."""
    call_id = await answered(wired_emulator, "short")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws)
        assert ws.close_code == 1000
    transcripts = [e["transcript"] for e in events if e["type"].endswith("transcription.completed")]
    assert transcripts == ["Hello? Is this the right number?"]
    record = await wired_emulator.wait_ended(call_id, 5)
    assert (record.state, record.end_reason) == ("ended", "caller_hangup")


async def test_caller_proceeds_without_a_greeting(wired_emulator: Emulator) -> None:
    """If the agent never greets, the caller still speaks after a bounded wait and the model answers."""
    call_id = await answered(wired_emulator, Script("custom", (Say("Anyone there?", reply="Yes, hello!"), Hangup())))
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws, greeting=None)
    spoken = [e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert spoken == ["Yes, hello!"]


async def test_custom_script_dtmf_digits(wired_emulator: Emulator) -> None:
    """A custom script's Dtmf steps arrive as dtmf events in order."""
    call_id = await answered(wired_emulator, Script("keys", (Dtmf("1"), Dtmf("*"), Hangup())))
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws)
    assert [e["event"] for e in events if e["type"] == "input_audio_buffer.dtmf_event_received"] == ["1", "*"]


async def test_tool_not_in_session_is_answered_in_words(wired_emulator: Emulator) -> None:
    """order_lookup without a lookup_order tool in the session: the model answers instead of calling it."""
    call_id = await answered(wired_emulator, "order_lookup")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws)
    assert not [e for e in events if e["type"].startswith("response.function_call_arguments")]
    assert any(e["type"] == "response.output_audio_transcript.done" for e in events[-12:])


async def test_shutdown_closes_sidebands_and_is_idempotent(
    make_emulator: Callable[..., Awaitable[Emulator]], webhook_receiver: WebhookReceiver
) -> None:
    """Shutting down closes open sidebands (1001) and can be called twice."""
    emulator = await make_emulator(webhook_url=webhook_receiver.url)
    call_id = await answered(emulator)
    async with await connect_sideband(emulator, call_id) as ws:
        await next_event(ws)
        await asyncio.gather(emulator.shutdown(), emulator.shutdown())
        await read_until_closed(ws)
        assert ws.close_code == 1001
    await emulator.shutdown()


async def test_unattended_call_still_plays_out(wired_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answered call nobody attaches a sideband to still goes on: the caller talks, then hangs up."""
    monkeypatch.setattr(server, "MIN_SIDEBAND_WAIT_S", 0.01)
    call_id = await answered(wired_emulator, "silent")
    record = await wired_emulator.wait_ended(call_id, 5)
    assert (record.end_reason, record.sideband_count, record.server_events) == ("caller_hangup", 0, [])
