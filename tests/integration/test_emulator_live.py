"""The emulated Live surface: its webhook, REST under /v1/live/sessions, the attach sideband, and calls rung
on both surfaces."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from switchboard.emulator.scripts import AskTool, Dtmf, Hangup, Say, Script
from switchboard.emulator.server import Emulator, PlaceSurface
from switchboard.shared.webhooks import verify
from tests.fixtures.emulator import (
    LIVE_ACCEPT,
    WebhookReceiver,
    accept,
    attach_live,
    auth,
    live_accept,
    live_rest,
    live_sideband_url,
    next_event,
    next_of,
    read_until_closed,
    rest,
    run_live_agent,
)
from tests.waiting import eventually

RESPONSES_ACCEPT: dict[str, Any] = {
    "session": {
        "type": "live",
        "model": "gpt-live-1",
        "instructions": "You are Acme's phone agent.",
        "audio": {"output": {"voice": "marin"}},
        "delegation": {
            "type": "responses",
            "responses": {
                "model": "gpt-5.5",
                "tools": [{"type": "function", "name": "lookup_order", "parameters": {"type": "object"}}],
            },
        },
    }
}


def ring(emulator: Emulator, script: str | Script = "hold", surface: PlaceSurface = "live") -> str:
    return emulator.place_call("+14155550100", "+18005551212", script=script, surface=surface)


async def answered(emulator: Emulator, script: str | Script = "hold", body: dict[str, Any] = LIVE_ACCEPT) -> str:
    session_id = ring(emulator, script)
    await live_accept(emulator, session_id, body)
    return session_id


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


# The webhook.


async def test_live_call_sends_a_signed_live_transport_incoming(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """A Live call is offered with a signed live.transport.incoming carrying its live_ session id."""
    session_id = ring(wired_emulator)
    assert session_id.startswith("live_") and len(session_id) == len("live_") + 32
    await eventually(lambda: webhook_receiver.received, what="webhook delivered")
    webhook = webhook_receiver.received[0]
    assert verify(webhook.headers, webhook.body, [wired_emulator.config.webhook_secret], now=time.time())
    event = webhook.event
    assert (event["type"], event["object"]) == ("live.transport.incoming", "event")
    assert event["data"]["session_id"] == session_id and event["data"]["type"] == "sip"
    assert event["data"]["sip_media_security"] == "srtp"
    assert [h["name"] for h in event["data"]["sip_headers"]] == ["From", "To", "Call-ID"]
    assert wired_emulator.calls[session_id].surface == "live"


async def test_live_webhook_is_retried_with_the_same_id(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """A 500 answer to a Live webhook is retried with the same webhook-id, as on Realtime."""
    webhook_receiver.statuses = [500]
    session_id = ring(wired_emulator)
    await eventually(lambda: len(wired_emulator.calls[session_id].webhook_deliveries) == 2, what="a retry")
    first, second = webhook_receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body


# REST.


async def test_live_accept_is_recorded_exactly(wired_emulator: Emulator) -> None:
    """A valid Live accept answers 200 with an empty body; the record keeps the body as sent."""
    session_id = ring(wired_emulator)
    response = await live_rest(wired_emulator, session_id, "accept", RESPONSES_ACCEPT)
    assert response.status_code == 200 and response.json() == {}
    record = wired_emulator.calls[session_id]
    assert record.state == "accepted" and record.accept_body == RESPONSES_ACCEPT
    assert [(r.op, r.status) for r in record.rest_requests] == [("accept", 200)]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"session": {"type": "live"}}, "session.model", "missing_required_parameter"),
        ({"session": {"model": "gpt-live-1"}}, "session.type", "missing_required_parameter"),
        ({"session": {"type": "realtime", "model": "gpt-live-1"}}, "session.type", "invalid_value"),
        ({"type": "live", "model": "gpt-live-1"}, "type", "unknown_parameter"),
        ({"session": {**LIVE_ACCEPT["session"], "tools": []}}, "session.tools", "unknown_parameter"),
        ({"session": {**LIVE_ACCEPT["session"], "model": 1}}, "session.model", "invalid_type"),
        ({"session": {**LIVE_ACCEPT["session"], "audio": {"format": {}}}}, "session.audio.format", "unknown_parameter"),
        ({"session": {**LIVE_ACCEPT["session"], "store": "yes"}}, "session.store", "invalid_type"),
    ],
)
async def test_invalid_live_accept_is_400_naming_the_field(
    wired_emulator: Emulator, body: dict[str, Any], param: str, code: str
) -> None:
    """An invalid Live accept body is refused with 400 invalid_request_error naming the field; it keeps ringing."""
    session_id = ring(wired_emulator)
    response = await live_rest(wired_emulator, session_id, "accept", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert wired_emulator.calls[session_id].state == "ringing"


@pytest.mark.parametrize("body", [None, {}, {"status_code": 200}, {"status_code": 700}, {"status_code": "486"}])
async def test_live_reject_needs_a_status_code_from_300_to_699(wired_emulator: Emulator, body: Any) -> None:
    """A Live reject without a status_code, or with one outside 300-699, is refused with 400."""
    session_id = ring(wired_emulator)
    response = await live_rest(wired_emulator, session_id, "reject", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "status_code"


async def test_live_reject_ends_the_call(wired_emulator: Emulator) -> None:
    """A Live reject with status 486 ends the call rejected, recording the status."""
    session_id = ring(wired_emulator)
    response = await live_rest(wired_emulator, session_id, "reject", {"status_code": 486})
    assert response.status_code == 200
    record = await wired_emulator.wait_ended(session_id, 5)
    assert (record.state, record.end_reason, record.status_code) == ("rejected", "rejected", 486)


async def test_live_refer_needs_a_target_and_ends_the_call(wired_emulator: Emulator) -> None:
    """A Live refer with a blank target is 400; with a tel: URI the call ends referred."""
    session_id = await answered(wired_emulator)
    blank = await live_rest(wired_emulator, session_id, "refer", {"target_uri": " "})
    assert blank.status_code == 400 and blank.json()["error"]["param"] == "target_uri"
    ok = await live_rest(wired_emulator, session_id, "refer", {"target_uri": "tel:+14155550123"})
    assert ok.status_code == 200
    record = await wired_emulator.wait_ended(session_id, 5)
    assert (record.state, record.target_uri) == ("referred", "tel:+14155550123")


async def test_second_live_accept_is_409(wired_emulator: Emulator) -> None:
    """Accepting an answered Live session again is 409 call_already_handled."""
    session_id = await answered(wired_emulator)
    response = await live_rest(wired_emulator, session_id, "accept", LIVE_ACCEPT)
    assert response.status_code == 409 and response.json()["error"]["code"] == "call_already_handled"


async def test_surfaces_do_not_know_each_others_ids(wired_emulator: Emulator) -> None:
    """A live_ id is unknown (404) under /realtime/calls, and an rtc_ id under /live/sessions."""
    session_id = ring(wired_emulator)
    call_id = ring(wired_emulator, surface="realtime")
    on_realtime = await rest(wired_emulator, session_id, "accept", {"type": "realtime"})
    on_live = await live_rest(wired_emulator, call_id, "accept", LIVE_ACCEPT)
    assert (on_realtime.status_code, on_live.status_code) == (404, 404)
    assert on_live.json()["error"]["code"] == "call_id_not_found"


async def test_live_rest_requires_the_bearer_key(wired_emulator: Emulator) -> None:
    """A Live accept without the bearer key is 401 invalid_api_key and recorded as such."""
    session_id = ring(wired_emulator)
    response = await live_rest(wired_emulator, session_id, "accept", LIVE_ACCEPT, headers={})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert wired_emulator.calls[session_id].rest_requests[0].authorization == "missing"


async def test_injected_accept_fault_applies_to_live(wired_emulator: Emulator) -> None:
    """An armed accept fault answers a Live accept with its status; the next accept succeeds."""
    session_id = ring(wired_emulator)
    wired_emulator.faults.add("accept", status=500)
    failed = await live_rest(wired_emulator, session_id, "accept", LIVE_ACCEPT)
    assert failed.status_code == 500 and wired_emulator.calls[session_id].state == "ringing"
    await live_accept(wired_emulator, session_id)


# The sideband.


async def test_attach_to_a_ringing_session_is_refused(wired_emulator: Emulator) -> None:
    """Attaching to a session that is not accepted is refused (400); to an unknown one, 404."""
    session_id = ring(wired_emulator)
    for target, status in ((session_id, 400), ("live_" + "0" * 32, 404)):
        with pytest.raises(InvalidStatus) as caught:
            async with connect(live_sideband_url(wired_emulator, target), additional_headers=auth(wired_emulator)):
                pass
        assert caught.value.response.status_code == status


async def test_attach_sends_session_started(wired_emulator: Emulator) -> None:
    """An attached sideband first gets session.started with the resolved session (id, model, voice)."""
    session_id = await answered(wired_emulator, body=RESPONSES_ACCEPT)
    async with await attach_live(wired_emulator, session_id) as ws:
        started = await next_event(ws)
    assert started["type"] == "session.started" and started["event_id"].startswith("event_")
    session = started["session"]
    assert (session["id"], session["model"], session["status"]) == (session_id, "gpt-live-1", "active")
    assert session["audio"]["output"]["voice"] == "marin" and session["delegation"]["type"] == "responses"
    assert session["instructions"] == "You are Acme's phone agent." and session["expires_at"] > time.time()


async def test_graceful_close_query_is_accepted(wired_emulator: Emulator) -> None:
    """The attach URL takes ?graceful_close=true."""
    session_id = await answered(wired_emulator)
    url = live_sideband_url(wired_emulator, session_id) + "?graceful_close=true"
    async with connect(url, additional_headers=auth(wired_emulator)) as ws:
        assert (await next_event(ws))["type"] == "session.started"


async def test_commentary_is_acked_then_spoken(wired_emulator: Emulator) -> None:
    """session.commentary.append is acked with its client_event_id, then the agent says it (transcript + audio)."""
    session_id = await answered(wired_emulator)
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        commentary = {
            "type": "session.commentary.append",
            "event_id": "evt_greet",
            "content": "Greet the caller with 'Hello, you have reached Acme.'",
            "delegation_id": None,
        }
        await ws.send(json.dumps(commentary))
        ack = await next_event(ws)
        events = [await next_event(ws) for _ in range(6)]
    assert ack["type"] == "session.commentary.appended" and ack["client_event_id"] == "evt_greet"
    assert ack["start_ms"] <= ack["end_ms"]
    deltas = [e for e in events if e["type"] == "session.output_transcript.delta"]
    audio = [e for e in events if e["type"] == "session.output_audio.delta"]
    assert "".join(d["delta"] for d in deltas) == "Hello, you have reached Acme."
    assert len(audio) == len(deltas) and all("event_id" not in a for a in audio)
    assert [d["start_ms"] for d in deltas] == sorted(d["start_ms"] for d in deltas)
    assert all(d["start_ms"] < d["end_ms"] for d in deltas)


async def test_caller_speech_is_reflected_and_transcribed(wired_emulator: Emulator) -> None:
    """The caller's words arrive as reflected audio frames and input transcript deltas, then the agent answers."""
    script = Script("one", (Say("I would like to check my order please.", reply="Sure, one moment."),))
    session_id = await answered(wired_emulator, script)
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        events: list[dict[str, Any]] = []
        while "".join(e["delta"] for e in events if e["type"] == "session.output_transcript.delta") != (
            "Sure, one moment."
        ):
            events.append(await next_event(ws))
    heard = [e for e in events if e["type"] == "session.input_transcript.delta"]
    assert len(heard) > 1 and "".join(e["delta"] for e in heard) == "I would like to check my order please."
    assert all(a["end_ms"] <= b["start_ms"] for a, b in itertools.pairwise(heard))
    frames = [e for e in events if e["type"] == "session.input_audio.append"]
    assert frames and all(set(f) == {"type", "audio"} for f in frames)
    first_answer = types(events).index("session.output_transcript.delta")
    assert first_answer > types(events).index("session.input_transcript.delta")


async def test_dtmf_is_received_and_sent(wired_emulator: Emulator) -> None:
    """The caller's keypress arrives as transport.dtmf.received; transport.dtmf.send is acked as .sent."""
    session_id = await answered(wired_emulator, Script("keys", (Dtmf("5"),)))
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        received = await next_of(ws, "transport.dtmf.received")
        await ws.send(json.dumps({"type": "transport.dtmf.send", "event": "#", "event_id": "evt_key"}))
        sent = await next_of(ws, "transport.dtmf.sent")
    assert received["event"] == "5"
    assert (sent["event"], sent["client_event_id"]) == ("#", "evt_key")


async def test_tool_call_through_responses_delegation(wired_emulator: Emulator) -> None:
    """AskTool with a responses delegation: delegation.created, a function call in response.event, the agent
    speaks about the output it is sent."""
    script = Script("tool", (AskTool("Where is order A1?", "lookup_order", {"order_id": "A1"}), Hangup()))
    session_id = await answered(wired_emulator, script, RESPONSES_ACCEPT)
    async with await attach_live(wired_emulator, session_id) as ws:
        events = await run_live_agent(ws, tool_outputs={"lookup_order": '{"status": "shipped"}'})
    created = next(e for e in events if e["type"] == "session.delegation.created")
    delegation = created["delegation"]
    assert delegation["id"].startswith("del_") and delegation["target"] == "responses"
    assert delegation["response_id"].startswith("resp_") and delegation["type"] == "delegation"
    inner = [e for e in events if e["type"] == "response.event"]
    assert all(e["delegation_id"] == delegation["id"] for e in inner)
    done = next(e["event"] for e in inner if e["event"]["type"] == "response.output_item.done")
    item = done["item"]
    assert (item["type"], item["name"], json.loads(item["arguments"])) == (
        "function_call",
        "lookup_order",
        {"order_id": "A1"},
    )
    assert item["call_id"].startswith("call_")
    assert any(e["event"]["type"] == "response.function_call_arguments.done" for e in inner)
    spoken = "".join(e["delta"] for e in events if e["type"] == "session.output_transcript.delta")
    assert "status is shipped" in spoken
    record = await wired_emulator.wait_ended(session_id, 5)
    sent = [e for e in record.client_events if e["type"] == "response.item.create"]
    assert sent[0]["item"]["call_id"] == item["call_id"]


async def test_tool_not_offered_gets_words_instead(wired_emulator: Emulator) -> None:
    """Without a responses delegation offering the tool, the agent answers AskTool in words, no delegation."""
    script = Script("tool", (AskTool("Where is my order?", "lookup_order", {}, fallback_reply="I can't."), Hangup()))
    session_id = await answered(wired_emulator, script)
    async with await attach_live(wired_emulator, session_id) as ws:
        events = await run_live_agent(ws, greeting=None)
    assert "session.delegation.created" not in types(events)
    assert "".join(e["delta"] for e in events if e["type"] == "session.output_transcript.delta") == "I can't."


async def test_rest_hangup_closes_with_close_requested(wired_emulator: Emulator) -> None:
    """A REST hangup sends session.closed close_requested with the final session and usage, then closes 1000."""
    session_id = await answered(wired_emulator)
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        assert (await live_rest(wired_emulator, session_id, "hangup")).status_code == 200
        events = await read_until_closed(ws)
        assert ws.close_code == 1000
    closed = events[-1]
    assert (closed["type"], closed["reason"]) == ("session.closed", "close_requested")
    assert closed["session"]["id"] == session_id and closed["usage"]["seconds"] >= 0
    record = wired_emulator.calls[session_id]
    assert (record.state, record.end_reason) == ("ended", "hangup")


async def test_session_close_closes_with_close_requested(wired_emulator: Emulator) -> None:
    """A client session.close ends the call like a hangup: session.closed close_requested, then 1000."""
    session_id = await answered(wired_emulator)
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        await ws.send(json.dumps({"type": "session.close"}))
        events = await read_until_closed(ws)
        assert ws.close_code == 1000
    assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "close_requested"
    assert wired_emulator.calls[session_id].end_reason == "hangup"


async def test_caller_hangup_closes_with_remote_hangup(wired_emulator: Emulator) -> None:
    """When the caller hangs up, the sideband gets session.closed remote_hangup and the call ends caller_hangup."""
    session_id = await answered(wired_emulator)
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        await wired_emulator.caller_hangup(session_id)
        events = await read_until_closed(ws)
    assert events[-1]["type"] == "session.closed" and events[-1]["reason"] == "remote_hangup"
    assert wired_emulator.calls[session_id].end_reason == "caller_hangup"


async def test_scripted_call_runs_to_remote_hangup(wired_emulator: Emulator) -> None:
    """The default script on Live: greeting, two caller turns answered, the caller hangs up (remote_hangup)."""
    session_id = await answered(wired_emulator, "default")
    async with await attach_live(wired_emulator, session_id) as ws:
        events = await run_live_agent(ws)
    heard = "".join(e["delta"] for e in events if e["type"] == "session.input_transcript.delta")
    assert heard == "Hi, I'd like to check on my order.Thanks, that's all. Bye!"
    assert "session.usage.updated" in types(events)
    assert events[-1]["reason"] == "remote_hangup"


async def test_drop_sideband_sends_no_session_closed(wired_emulator: Emulator) -> None:
    """drop_sideband aborts a Live sideband without session.closed; the session stays accepted."""
    session_id = await answered(wired_emulator)
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        assert wired_emulator.drop_sideband(session_id) == 1
        events = await read_until_closed(ws)
        assert ws.close_code == 1006
    assert "session.closed" not in types(events)
    assert wired_emulator.calls[session_id].state == "accepted"


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "no.such.event", "event_id": "evt_1"}, "invalid_value"),
        ({"type": "session.commentary.append", "event_id": "evt_1", "content": "hi"}, "missing_required_parameter"),
        ({"type": "transport.dtmf.send", "event_id": "evt_1", "event": "55"}, "invalid_value"),
        ({"type": "response.create", "event_id": "evt_1"}, "invalid_request"),
    ],
)
async def test_invalid_client_events_get_errors(wired_emulator: Emulator, event: dict[str, Any], code: str) -> None:
    """An unknown or invalid client event is answered with error (invalid_request_error, its client_event_id)."""
    session_id = await answered(wired_emulator)
    async with await attach_live(wired_emulator, session_id) as ws:
        await next_event(ws)
        await ws.send(json.dumps(event))
        error = await next_event(ws)
    assert error["type"] == "error"
    assert (error["error"]["type"], error["error"]["code"]) == ("invalid_request_error", code)
    assert error["error"]["client_event_id"] == "evt_1"
    assert wired_emulator.calls[session_id].client_events == [event]


# One SIP call, both surfaces.


async def test_call_rung_on_both_sends_two_webhooks_with_one_call_id(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """surface=both: one realtime.call.incoming and one live.transport.incoming, own ids, the same SIP headers."""
    call_id = ring(wired_emulator, surface="both")
    session_id = wired_emulator.twin(call_id)
    assert call_id.startswith("rtc_") and session_id is not None and session_id.startswith("live_")
    assert wired_emulator.twin(session_id) == call_id
    await eventually(lambda: len(webhook_receiver.received) == 2, what="both webhooks")
    by_type = {w.event["type"]: w.event["data"] for w in webhook_receiver.received}
    assert by_type["realtime.call.incoming"]["call_id"] == call_id
    assert by_type["live.transport.incoming"]["session_id"] == session_id
    assert by_type["realtime.call.incoming"]["sip_headers"] == by_type["live.transport.incoming"]["sip_headers"]
    assert (wired_emulator.calls[call_id].surface, wired_emulator.calls[session_id].surface) == ("realtime", "live")


async def test_first_accept_wins_and_the_twin_is_409(wired_emulator: Emulator) -> None:
    """The first accept (Live here) selects the surface: the Realtime twin ends answered_elsewhere, accept is 409."""
    call_id = ring(wired_emulator, surface="both")
    session_id = wired_emulator.twin(call_id)
    assert session_id is not None
    await live_accept(wired_emulator, session_id)
    late = await rest(wired_emulator, call_id, "accept", {"type": "realtime", "model": "gpt-realtime"})
    assert late.status_code == 409 and late.json()["error"]["code"] == "call_already_handled"
    twin = wired_emulator.calls[call_id]
    assert (twin.state, twin.end_reason) == ("ended", "answered_elsewhere")
    assert wired_emulator.calls[session_id].state == "accepted"


async def test_realtime_accept_wins_over_live(wired_emulator: Emulator) -> None:
    """Accepting on Realtime first makes the Live twin's accept and reject 409 call_already_handled."""
    call_id = ring(wired_emulator, surface="both")
    session_id = wired_emulator.twin(call_id)
    assert session_id is not None
    await accept(wired_emulator, call_id)
    for op, body in (("accept", LIVE_ACCEPT), ("reject", {"status_code": 486})):
        response = await live_rest(wired_emulator, session_id, op, body)
        assert response.status_code == 409 and response.json()["error"]["code"] == "call_already_handled"
    assert (await wired_emulator.wait_ended(session_id, 1)).end_reason == "answered_elsewhere"


async def test_reject_on_either_surface_ends_both(wired_emulator: Emulator) -> None:
    """A reject on the Live twin ends the Realtime one too (one SIP call)."""
    call_id = ring(wired_emulator, surface="both")
    session_id = wired_emulator.twin(call_id)
    assert session_id is not None
    assert (await live_rest(wired_emulator, session_id, "reject", {"status_code": 486})).status_code == 200
    record = await wired_emulator.wait_ended(call_id, 5)
    assert (record.state, record.end_reason, record.status_code) == ("rejected", "rejected", 486)
    assert (await rest(wired_emulator, call_id, "accept", {"type": "realtime"})).status_code == 404
