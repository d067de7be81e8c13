"""Everything the emulator says on the Live surface parses with the openai SDK's own types: every server event
as `openai.types.live.ConnectServerEvent` (the sideband's union), the Responses events a delegation wraps,
the webhook (verified by the SDK's verifier); and the emulator's accept validation agrees with the SDK's
`session_accept_params`. Whole scripted calls run over a real WebSocket on loopback."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.live import ConnectServerEvent, SessionResource
from openai.types.live.responses_delegation_config_param import ResponsesDelegationConfigParam
from openai.types.live.session_accept_params import Session, SessionAcceptParams
from openai.types.live.session_update_config_param import SessionUpdateConfigParam
from openai.types.responses import ResponseStreamEvent
from openai.types.webhooks import LiveTransportIncomingWebhookEvent
from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import get_type_hints  # the SDK's TypedDicts are typing_extensions'

from switchboard.emulator.errors import ApiError
from switchboard.emulator.live_config import RESPONSES_KEYS, SESSION_KEYS, UPDATE_KEYS, validate_accept
from switchboard.emulator.scripts import AskTool, Dtmf, Hangup, Say, Script
from switchboard.emulator.server import Emulator
from tests.fixtures.emulator import WebhookReceiver, attach_live, live_accept, next_event, next_of, run_live_agent
from tests.sdk_types import unknown_keys
from tests.unit.test_emulator_sdk_types import extras
from tests.waiting import eventually

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(ConnectServerEvent)
RESPONSES_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
RESOURCE = TypeAdapter(SessionResource)
WEBHOOK = TypeAdapter(LiveTransportIncomingWebhookEvent)
ACCEPT = TypeAdapter(SessionAcceptParams)

TOOLS_ACCEPT: dict[str, Any] = {
    "session": {
        "type": "live",
        "model": "gpt-live-1",
        "instructions": "You are Acme's phone agent.",
        "audio": {"output": {"voice": "cedar"}},
        "delegation": {
            "type": "responses",
            "responses": {
                "model": "gpt-5.5",
                "instructions": "Look orders up.",
                "tools": [
                    {
                        "type": "function",
                        "name": "lookup_order",
                        "description": "Look up an order by id.",
                        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
                    }
                ],
            },
        },
        "store": False,
        "safety_identifier": "caller-123",
    }
}


def validate(event: dict[str, Any]) -> BaseModel:
    """Parse one server event with the SDK's union; it must land on the model of its own type, fully."""
    model = SERVER_EVENT.validate_python(event)
    assert isinstance(model, BaseModel)
    assert model.type == event["type"]  # type: ignore[attr-defined]
    assert not extras(model), f"{event['type']} has fields the SDK does not know: {extras(model)}"
    if event["type"] == "response.event":
        inner = RESPONSES_EVENT.validate_python(event["event"])
        assert inner.type == event["event"]["type"] and not extras(inner)
    return model


async def live_call(emulator: Emulator, script: str | Script, body: dict[str, Any] = TOOLS_ACCEPT) -> str:
    session_id = emulator.place_call("+14155550100", "+18005551212", script=script, surface="live")
    await live_accept(emulator, session_id, body)
    return session_id


async def test_a_default_live_call_parses_with_sdk_types(wired_emulator: Emulator) -> None:
    """A whole default call on Live: every server event parses as its own ConnectServerEvent model."""
    session_id = await live_call(wired_emulator, "default")
    async with await attach_live(wired_emulator, session_id) as ws:
        events = await run_live_agent(ws)
    for event in events:
        validate(event)
    kinds = {e["type"] for e in events}
    assert {
        "session.started",
        "session.commentary.appended",
        "session.input_audio.append",
        "session.input_transcript.delta",
        "session.output_transcript.delta",
        "session.output_audio.delta",
        "session.usage.updated",
        "session.closed",
    } <= kinds
    assert (await wired_emulator.wait_ended(session_id, 5)).server_events == events


async def test_a_delegated_tool_call_parses_with_sdk_types(wired_emulator: Emulator) -> None:
    """The responses delegation's events, and the Responses stream events they wrap, parse with SDK types."""
    script = Script("tool", (AskTool("Where is A1?", "lookup_order", {"order_id": "A1"}), Hangup()))
    session_id = await live_call(wired_emulator, script)
    async with await attach_live(wired_emulator, session_id) as ws:
        events = await run_live_agent(ws, tool_outputs={"lookup_order": '{"status": "shipped"}'})
    for event in events:
        validate(event)
    inner = [e["event"]["type"] for e in events if e["type"] == "response.event"]
    assert inner[0] == "response.output_item.added" and inner[-1] == "response.output_item.done"
    assert "response.function_call_arguments.done" in inner


async def test_acks_dtmf_and_errors_parse_with_sdk_types(wired_emulator: Emulator) -> None:
    """Every acknowledgement, DTMF event, session.updated and error parses with the SDK's types."""
    session_id = await live_call(wired_emulator, Script("keys", (Dtmf("7"), Say("Hello?"))))
    async with await attach_live(wired_emulator, session_id) as ws:
        events = [await next_event(ws)]
        commands: list[dict[str, Any]] = [
            {"type": "session.instructions.append", "content": "Be brief.", "delegation_id": None, "event_id": "e1"},
            {"type": "session.thinking.append", "content": "Checking.", "delegation_id": None, "event_id": "e2"},
            {"type": "session.input_audio.mute", "event_id": "e3"},
            {"type": "session.input_audio.unmute", "event_id": "e4"},
            {"type": "session.output_audio.fixture.play", "audio": "AAAA", "event_id": "e5"},
            {"type": "transport.dtmf.send", "event": "9", "event_id": "e6"},
            {"type": "session.update", "session": {"delegation": {"type": "responses"}}, "event_id": "e7"},
            {"type": "session.update", "session": {"delegation": {"type": "client"}}, "event_id": "e8"},
        ]
        for command in commands:
            await ws.send(json.dumps(command))
        events.append(await next_of(ws, "error"))
        events.append(await next_of(ws, "session.input_transcript.delta"))  # after the keypress
        await wired_emulator.caller_hangup(session_id)
    record = wired_emulator.calls[session_id]
    for event in record.server_events:
        validate(event)
    sent = record.server_event_types()
    for kind in (
        "session.instructions.appended",
        "session.thinking.appended",
        "session.input_audio.muted",
        "session.input_audio.unmuted",
        "session.output_audio.fixture.playing",
        "session.output_audio.fixture.played",
        "transport.dtmf.sent",
        "transport.dtmf.received",
        "session.updated",
        "error",
    ):
        assert kind in sent, kind


async def test_session_started_reflects_the_accept_body(wired_emulator: Emulator) -> None:
    """session.started's session is a full SDK SessionResource carrying the accepted model, voice, delegation."""
    session_id = await live_call(wired_emulator, "hold")
    async with await attach_live(wired_emulator, session_id) as ws:
        started = validate(await next_event(ws))
    resource = started.session  # type: ignore[attr-defined]
    assert isinstance(resource, SessionResource)
    assert (resource.id, resource.model, resource.status) == (session_id, "gpt-live-1", "active")
    assert resource.audio is not None and resource.audio.output is not None and resource.audio.output.voice == "cedar"
    assert resource.delegation is not None and resource.delegation.type == "responses"
    assert resource.safety_identifier == "caller-123"


async def test_live_webhook_verifies_and_parses_with_the_sdk(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """The SDK's webhooks.unwrap accepts our signature and parses a live.transport.incoming event."""
    session_id = wired_emulator.place_call("+14155550100", "+18005551212", surface="live")
    await eventually(lambda: webhook_receiver.received, what="webhook delivered")
    webhook = webhook_receiver.received[0]
    client = openai.OpenAI(api_key="x", webhook_secret=wired_emulator.config.webhook_secret)
    event = client.webhooks.unwrap(webhook.body, webhook.headers)
    assert isinstance(event, LiveTransportIncomingWebhookEvent)
    strict = WEBHOOK.validate_json(webhook.body)
    assert not extras(strict)
    assert (strict.data.session_id, strict.data.type, strict.object) == (session_id, "sip", "event")


async def test_sdk_sideband_client_attaches_and_greets(wired_emulator: Emulator) -> None:
    """The SDK's own live sideband client attaches, appends commentary and reads the call to session.closed."""
    session_id = await live_call(wired_emulator, "short")
    client = openai.AsyncOpenAI(api_key=wired_emulator.config.api_key, base_url=wired_emulator.base_url, max_retries=0)
    kinds: list[str] = []
    async with client, client.live.sideband.connect(session_id=session_id, graceful_close=True) as connection:
        await connection.session.commentary.append(content="Say: Hi from the SDK.", delegation_id=None)
        async for event in connection:
            kinds.append(event.type)
            if event.type == "session.closed":
                break
    assert kinds[0] == "session.started" and kinds[-1] == "session.closed"
    record = await wired_emulator.wait_ended(session_id, 5)
    assert record.client_events[0]["type"] == "session.commentary.append"


# Accept bodies: the emulator refuses exactly what the SDK's types refuse.


def sdk_accepts(body: Any) -> bool:
    try:
        ACCEPT.validate_python(body)
    except ValidationError:
        return False
    return not unknown_keys(body, SessionAcceptParams)


def emulator_accepts(body: Any) -> bool:
    try:
        validate_accept(body)
    except ApiError:
        return False
    return True


LIVE = {"type": "live", "model": "gpt-live-1"}
ACCEPT_BODIES: list[tuple[str, Any, bool]] = [
    ("minimal", {"session": LIVE}, True),
    ("full", TOOLS_ACCEPT, True),
    ("custom voice", {"session": {**LIVE, "audio": {"output": {"voice": {"id": "voice_123"}}}}}, True),
    ("client delegation", {"session": {**LIVE, "delegation": {"type": "client", "acknowledgement_delay_ms": 0}}}, True),
    ("null delegation", {"session": {**LIVE, "delegation": None, "instructions": None}}, True),
    (
        "initial input",
        {"session": {**LIVE, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]}},
        True,
    ),
    ("no session", {}, False),
    ("flat like realtime", LIVE, False),
    ("no model", {"session": {"type": "live"}}, False),
    ("no type", {"session": {"model": "gpt-live-1"}}, False),
    ("realtime type", {"session": {**LIVE, "type": "realtime"}}, False),
    ("model not a string", {"session": {**LIVE, "model": 1}}, False),
    ("realtime tools", {"session": {**LIVE, "tools": []}}, False),
    ("audio format", {"session": {**LIVE, "audio": {"format": {"type": "audio/pcm"}}}}, False),
    ("made-up voice key", {"session": {**LIVE, "audio": {"output": {"voice": "marin", "speed": 1.0}}}}, False),
    ("custom voice without id", {"session": {**LIVE, "audio": {"output": {"voice": {"name": "x"}}}}}, False),
    ("unknown delegation", {"session": {**LIVE, "delegation": {"type": "bogus"}}}, False),
    ("responses without model", {"session": {**LIVE, "delegation": {"type": "responses", "responses": {}}}}, False),
    ("store not a bool", {"session": {**LIVE, "store": "maybe"}}, False),
    ("input system role", {"session": {**LIVE, "input": [{"role": "system", "content": []}]}}, False),
]


def test_the_live_sdk_check_catches_made_up_keys() -> None:
    """The SDK-side check used below does catch a key the SDK does not define, however deep."""
    body = json.loads(json.dumps(TOOLS_ACCEPT))
    body["session"]["delegation"]["responses"]["tools"][0]["volume"] = 11
    assert unknown_keys(body, SessionAcceptParams) == ["$.session.delegation.responses.tools[0].volume"]


@pytest.mark.parametrize(("name", "body", "valid"), ACCEPT_BODIES, ids=[name for name, _, _ in ACCEPT_BODIES])
def test_live_accept_validation_agrees_with_the_sdk(name: str, body: Any, valid: bool) -> None:
    """The emulator accepts a Live accept body exactly when the SDK's SessionAcceptParams does."""
    assert sdk_accepts(body) is valid
    assert emulator_accepts(body) is valid


def test_live_keys_match_the_sdk() -> None:
    """The Live session, session.update and responses-backend keys the emulator allows are exactly the SDK's."""
    assert set(get_type_hints(Session)) == SESSION_KEYS
    assert set(get_type_hints(SessionUpdateConfigParam)) == UPDATE_KEYS
    assert set(get_type_hints(ResponsesDelegationConfigParam)) == RESPONSES_KEYS
    assert set(SessionResource.model_fields) >= SESSION_KEYS - {"type"}
