"""Builders of Live server events, shaped like the openai SDK's `openai.types.live.ConnectServerEvent` union.

Pure: each function returns a JSON-ready dict with a fresh ``event_id`` (``event_…``), except the
reflected audio (``session.input_audio.append``, ``session.output_audio.delta``), which has none in the
SDK. Timeline fields (``start_ms``, ``end_ms``, ``offset_ms``) are milliseconds since the session
started; the session decides them. `responses_function_call` builds the Responses stream events a
``responses`` delegation wraps in ``response.event`` (shaped like `openai.types.responses` events).
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from switchboard.emulator.ids import new_id
from switchboard.emulator.responses import chunks, server_event

CloseReason = Literal["close_requested", "expired", "content", "remote_hangup", "connection_lost"]
AUDIO_FRAME_MS = 20
"""Audio time of one reflected audio frame."""
_SAMPLES_PER_MS = 24  # PCM16LE mono at 24 kHz


def audio_frame(ms: int = AUDIO_FRAME_MS) -> str:
    """Base64 PCM16LE mono 24 kHz of `ms` milliseconds (silence: the emulator has no real voice)."""
    return base64.b64encode(bytes(2 * _SAMPLES_PER_MS * ms)).decode()


def with_client_event_id(event: dict[str, Any], client_event_id: str | None) -> dict[str, Any]:
    """`event` acknowledging the client event `client_event_id` (left out when the client sent none)."""
    if client_event_id is not None:
        event["client_event_id"] = client_event_id
    return event


def session_started(resource: dict[str, Any]) -> dict[str, Any]:
    return server_event("session.started", session=resource)


def session_updated(resource: dict[str, Any], client_event_id: str | None) -> dict[str, Any]:
    return with_client_event_id(server_event("session.updated", session=resource), client_event_id)


def session_closed(reason: CloseReason, resource: dict[str, Any], seconds: float) -> dict[str, Any]:
    return server_event("session.closed", reason=reason, session=resource, usage={"seconds": round(seconds, 3)})


def usage_updated(seconds: float, usage_ratio: float) -> dict[str, Any]:
    return server_event(
        "session.usage.updated",
        usage={"seconds": round(seconds, 3)},
        context_window={"usage_ratio": round(usage_ratio, 4)},
    )


def input_audio(ms: int = AUDIO_FRAME_MS) -> dict[str, Any]:
    """Caller audio reflected to the sideband (no ``event_id``, no timestamps, as in the SDK)."""
    return {"type": "session.input_audio.append", "audio": audio_frame(ms)}


def output_audio(start_ms: int, end_ms: int) -> dict[str, Any]:
    """Agent audio reflected to the sideband (no ``event_id``; timestamps, as reflected events carry them)."""
    return {
        "type": "session.output_audio.delta",
        "delta": audio_frame(min(end_ms - start_ms, AUDIO_FRAME_MS)),
        "start_ms": start_ms,
        "end_ms": end_ms,
    }


def input_transcript(delta: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    return server_event("session.input_transcript.delta", delta=delta, start_ms=start_ms, end_ms=end_ms)


def output_transcript(delta: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    return server_event("session.output_transcript.delta", delta=delta, start_ms=start_ms, end_ms=end_ms)


def appended(kind: str, start_ms: int, end_ms: int, client_event_id: str | None) -> dict[str, Any]:
    """``session.{instructions,commentary,thinking}.appended``: the append is on the timeline."""
    event = server_event(f"session.{kind}.appended", start_ms=start_ms, end_ms=end_ms)
    return with_client_event_id(event, client_event_id)


def ack(type_: str, client_event_id: str | None) -> dict[str, Any]:
    """An acknowledgement with no fields of its own (mute/unmute, fixture playing/played)."""
    return with_client_event_id(server_event(type_), client_event_id)


def delegation_created(delegation_id: str, target: str, response_id: str | None, offset_ms: int) -> dict[str, Any]:
    delegation: dict[str, Any] = {"id": delegation_id, "target": target, "type": "delegation"}
    if response_id is not None:
        delegation["response_id"] = response_id
    return server_event("session.delegation.created", delegation=delegation, offset_ms=offset_ms)


def response_event(event: dict[str, Any], delegation_id: str) -> dict[str, Any]:
    """One Responses stream event of a ``responses`` delegation, wrapped."""
    return server_event("response.event", event=event, delegation_id=delegation_id)


def dtmf_received(digit: str) -> dict[str, Any]:
    return server_event("transport.dtmf.received", event=digit)


def dtmf_sent(digit: str, client_event_id: str | None) -> dict[str, Any]:
    return with_client_event_id(server_event("transport.dtmf.sent", event=digit), client_event_id)


def error(
    message: str, *, code: str | None, param: str | None, client_event_id: str | None, type_: str
) -> dict[str, Any]:
    """An ``error`` server event; `client_event_id` names the client event that caused it."""
    body: dict[str, Any] = {"type": type_, "code": code or "invalid_request", "message": message, "param": param}
    body["client_event_id"] = client_event_id
    return with_client_event_id(server_event("error", error=body), client_event_id)


def responses_function_call(name: str, arguments: str, call_id: str) -> list[dict[str, Any]]:
    """The Responses stream of one function call (``response.output_item.added``, argument deltas,
    ``response.function_call_arguments.done``, ``response.output_item.done``), as `openai.types.responses`
    shapes them: ``call_id`` and ``name`` are on the output item only."""
    item_id = new_id("fc")
    item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": ""}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress"}}
    ]
    for delta in chunks(arguments, words_per_chunk=1):
        events.append(
            {"type": "response.function_call_arguments.delta", "item_id": item_id, "output_index": 0, "delta": delta}
        )
    events.append(
        {"type": "response.function_call_arguments.done", "item_id": item_id, "output_index": 0, "arguments": arguments}
    )
    events.append(
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {**item, "arguments": arguments, "status": "completed"},
        }
    )
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events
