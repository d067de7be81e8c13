"""Everything the emulator sends parses with the openai SDK's own types: server events, the session, the
webhook (verified by the SDK's verifier). Whole scripted calls run over a real WebSocket on loopback."""

from __future__ import annotations

import json
from typing import Any

import openai
from openai.types.realtime import (
    CallAcceptParams,
    RealtimeResponseCreateParams,
    RealtimeServerEvent,
    RealtimeSessionCreateRequest,
    RealtimeSessionCreateResponse,
)
from openai.types.webhooks import RealtimeCallIncomingWebhookEvent
from pydantic import BaseModel, TypeAdapter

from switchboard.emulator.server import Emulator
from switchboard.emulator.session_config import RESPONSE_KEYS, SESSION_KEYS
from tests.fixtures.emulator import WebhookReceiver, accept, connect_sideband, run_agent
from tests.waiting import eventually

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
SESSION = TypeAdapter(RealtimeSessionCreateResponse)
WEBHOOK = TypeAdapter(RealtimeCallIncomingWebhookEvent)

# The GA session object carries `id`, `object` and `expires_at`, which the SDK models only on
# RealtimeSessionCreateResponse, not on the request shape it uses inside session.created/updated.
SESSION_EXTRAS = {"id", "object", "expires_at"}

ACCEPT_BODY: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You are Acme's friendly phone agent.",
    "audio": {
        "input": {"transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": {"type": "server_vad"}},
        "output": {"voice": "marin"},
    },
    "tools": [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Look up an order by id.",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        }
    ],
    "tool_choice": "auto",
}


def extras(value: Any, path: str = "$") -> list[str]:
    """Paths of fields the SDK models do not declare (what pydantic kept only as extras)."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            found.append(f"{path}.{key}")
        for name in type(value).model_fields:
            found += extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, element in enumerate(value):
            found += extras(element, f"{path}[{index}]")
    return found


def validate(event: dict[str, Any]) -> BaseModel:
    """Parse one server event with the SDK's union; it must land on the model of its own type, fully."""
    model = SERVER_EVENT.validate_python(event)
    assert isinstance(model, BaseModel)
    assert model.type == event["type"]
    allowed = {f"$.session.{key}" for key in SESSION_EXTRAS} if event["type"].startswith("session.") else set()
    assert set(extras(model)) <= allowed, f"{event['type']} has fields the SDK does not know: {extras(model)}"
    return model


async def answered_call(
    emulator: Emulator, receiver: WebhookReceiver, script: str, body: dict[str, Any] = ACCEPT_BODY
) -> str:
    call_id = emulator.place_call("+14155550100", "+18005551212", script=script)
    await eventually(lambda: receiver.received, what="webhook delivered")
    await accept(emulator, call_id, body)
    return call_id


async def test_default_call_events_all_parse_with_sdk_types(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """A whole default call: every server event parses as its own SDK model, with no unknown fields."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "default")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws)
    for event in events:
        validate(event)
    types = [e["type"] for e in events]
    assert types[0] == "session.created"
    assert types.count("response.done") == 3
    assert types.count("conversation.item.input_audio_transcription.completed") == 2
    record = await wired_emulator.wait_ended(call_id, 5)
    assert record.end_reason == "caller_hangup"
    assert record.server_events == events


async def test_response_event_sequence_matches_the_api(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """A spoken response runs created → item added → part added → deltas → done events → response.done."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "silent")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws)
    types = [e["type"] for e in events if e["type"] != "response.output_audio_transcript.delta"]
    assert types == [
        "session.created",
        "response.created",
        "conversation.item.added",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"]
    assert len(deltas) > 1 and "".join(deltas) == "Hello, thanks for calling Acme!"
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids) and all(i.startswith("event_") for i in ids)


async def test_order_lookup_function_call_parses_and_gets_an_answer(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """The order_lookup tool call parses with SDK types and the model speaks about the output it gets."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "order_lookup")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws, tool_outputs={"lookup_order": json.dumps({"status": "shipped"})})
    for event in events:
        validate(event)
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "lookup_order" and json.loads(done["arguments"]) == {"order_id": "A1234"}
    assert done["call_id"].startswith("call_")
    transcripts = [e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"]
    assert "status is shipped" in transcripts[-1]
    record = await wired_emulator.wait_ended(call_id, 5)
    outputs = [e for e in record.client_events if e["type"] == "conversation.item.create"]
    assert outputs[0]["item"]["call_id"] == done["call_id"]


async def test_dtmf_events_parse_with_sdk_types(wired_emulator: Emulator, webhook_receiver: WebhookReceiver) -> None:
    """Keypad presses arrive as input_audio_buffer.dtmf_event_received, digits in order."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "dtmf")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws)
    for event in events:
        validate(event)
    digits = [e["event"] for e in events if e["type"] == "input_audio_buffer.dtmf_event_received"]
    assert digits == ["4", "2", "#"]


async def test_session_created_reflects_the_accept_body(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """session.created carries the accepted model, instructions, voice and tools in the GA session shape."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "hold")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        created = json.loads(await ws.recv())
    validate(created)
    session = SESSION.validate_python(created["session"])
    assert not extras(session)
    assert session.model == "gpt-realtime"
    assert session.instructions == ACCEPT_BODY["instructions"]
    assert session.audio is not None and session.audio.output is not None and session.audio.output.voice == "marin"
    assert session.tools is not None and [t.name for t in session.tools] == ["lookup_order"]  # type: ignore[union-attr]


async def test_error_event_parses_with_sdk_types(wired_emulator: Emulator, webhook_receiver: WebhookReceiver) -> None:
    """An invalid client event is answered with an error event the SDK parses, naming the client event."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "hold")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "no.such.event", "event_id": "evt_mine"}))
        error = json.loads(await ws.recv())
    model = validate(error)
    assert model.error.type == "invalid_request_error"  # type: ignore[attr-defined]
    assert model.error.event_id == "evt_mine"  # type: ignore[attr-defined]


async def test_webhook_verifies_and_parses_with_the_sdk(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """The SDK's own webhooks.unwrap accepts our signature and parses a realtime.call.incoming event."""
    call_id = wired_emulator.place_call("+14155550100", "+18005551212", sip_headers=[("X-Campaign", "spring")])
    await eventually(lambda: webhook_receiver.received, what="webhook delivered")
    webhook = webhook_receiver.received[0]
    client = openai.OpenAI(api_key="x", webhook_secret=wired_emulator.config.webhook_secret)
    event = client.webhooks.unwrap(webhook.body, webhook.headers)
    assert isinstance(event, RealtimeCallIncomingWebhookEvent)
    strict = WEBHOOK.validate_json(webhook.body)
    assert not extras(strict)
    assert strict.data.call_id == call_id and strict.object == "event"
    assert [(h.name, h.value) for h in strict.data.sip_headers][:2] == [
        ("From", "sip:+14155550100@sip.example.com"),
        ("To", "sip:+18005551212@sip.example.com"),
    ]
    assert strict.data.sip_headers[-1].name == "X-Campaign"
    assert webhook.headers["user-agent"] == "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"


def test_accept_keys_match_the_sdk() -> None:
    """The accept/session keys the emulator allows are exactly the SDK's CallAcceptParams keys."""
    assert set(CallAcceptParams.__annotations__) == SESSION_KEYS
    assert set(RealtimeSessionCreateRequest.model_fields) == SESSION_KEYS


def test_response_create_keys_match_the_sdk() -> None:
    """The response.create keys the emulator allows are exactly the SDK's RealtimeResponseCreateParams."""
    assert set(RealtimeResponseCreateParams.model_fields) == RESPONSE_KEYS


async def test_sdk_realtime_client_joins_the_call(wired_emulator: Emulator, webhook_receiver: WebhookReceiver) -> None:
    """The SDK's own realtime client connects with call_id, sends a greeting and reads the call to its end."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "short")
    client = openai.AsyncOpenAI(api_key=wired_emulator.config.api_key, base_url=wired_emulator.base_url, max_retries=0)
    types: list[str] = []
    async with client, client.realtime.connect(call_id=call_id) as connection:
        await connection.response.create(response={"instructions": "Say: Hi from the SDK."})
        async for event in connection:
            types.append(event.type)
    assert types[0] == "session.created" and types.count("response.done") == 2
    record = await wired_emulator.wait_ended(call_id, 5)
    assert record.client_events[0] == {"type": "response.create", "response": {"instructions": "Say: Hi from the SDK."}}
