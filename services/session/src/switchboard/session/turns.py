"""The model's function calls and our answers to them, as plain data, on either surface. Pure; no I/O.

A function call is complete when its response is done: ``response.done`` carries every
``function_call`` output item (name, call_id, arguments). We answer each with a
``conversation.item.create`` of a ``function_call_output`` and then one ``response.create`` so the
model speaks about the results. Live says the same in its own words: `protocol` gives each surface's
(`Realtime`, `Live`), so the call session above never asks which surface it is on.
"""

from __future__ import annotations

from typing import Any

import msgspec

TRANSFER_CALL = "transfer_call"
END_CALL = "end_call"
BUILTIN_TOOLS = frozenset({TRANSFER_CALL, END_CALL})


class FunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    tool_call_id: str
    name: str
    arguments: str
    item_id: str | None = None


def function_calls(response_done: dict[str, Any]) -> list[FunctionCall]:
    """The completed function calls in a ``response.done`` server event (malformed items skipped)."""
    response = response_done.get("response")
    output = response.get("output") if isinstance(response, dict) else None
    calls = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict) or item.get("type") != "function_call":
            continue
        tool_call_id, name = item.get("call_id"), item.get("name")
        if isinstance(tool_call_id, str) and isinstance(name, str):
            arguments = item.get("arguments")
            calls.append(
                FunctionCall(
                    tool_call_id=tool_call_id,
                    name=name,
                    arguments=arguments if isinstance(arguments, str) else "{}",
                    item_id=item.get("id") if isinstance(item.get("id"), str) else None,
                )
            )
    return calls


def output_text(reply: dict[str, Any]) -> tuple[str, str | None]:
    """A tool's reply (``{"output": …}`` or ``{"error": "…"}``) → (output string for the model, error)."""
    if "error" in reply and reply["error"] is not None:
        error = str(reply["error"])
        return msgspec.json.encode({"error": error}).decode(), error
    output = reply.get("output")
    if isinstance(output, str):
        return output, None
    return msgspec.json.encode(output).decode(), None


def function_output(tool_call_id: str, output: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": tool_call_id, "output": output},
    }


def response_create(instructions: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "response.create"}
    if instructions:
        event["response"] = {"instructions": instructions}
    return event


def parse_arguments(arguments: str) -> dict[str, Any]:
    """A function call's JSON arguments as an object ({} when they are not a JSON object)."""
    try:
        value = msgspec.json.decode(arguments)
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# --- the two surfaces' vocabularies ------------------------------------------------------------------

# Live reflects the call's audio on the sideband (~48 kB/s each way): counted, never relayed.
LIVE_AUDIO = frozenset({"session.input_audio.append", "session.output_audio.delta"})

# Live's `session.closed` reasons, as end reasons (docs/events.md); a reason not listed is kept as it is.
LIVE_CLOSED_REASONS = {
    "remote_hangup": "caller_hangup",
    "close_requested": "hangup",
    "expired": "expired",
    "content": "content_filter",
    "connection_lost": "connection_lost",
}


class Realtime:
    """The Realtime sideband: greet with ``response.create`` on ``session.created``, function calls in
    ``response.done``, answered with ``conversation.item.create`` and a ``response.create``."""

    surface = "realtime"
    greet_on: str | None = "session.created"
    response_done = "response.done"

    def greeting(self, text: str | None) -> dict[str, Any] | None:
        return response_create(text)

    def say(self, instructions: str) -> dict[str, Any]:
        return response_create(instructions)

    def relayed(self, type_: str | None) -> bool:
        return True

    def function_calls(self, type_: str | None, event: Any) -> list[FunctionCall]:
        return function_calls(event.data) if type_ == "response.done" else []

    def answers(self, outputs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        return [*(function_output(call_id, output) for call_id, output in outputs), response_create()]

    def is_response_done(self, type_: str | None, event: Any) -> bool:
        return type_ == "response.done"

    def closed_reason(self, type_: str | None, event: Any) -> str | None:
        return None


class Live:
    """The Live sideband: greet with ``session.commentary.append`` as soon as it is attached (Live has no
    client event that makes the voice model speak now); function calls come from the Responses backend
    of a ``responses`` delegation, nested in ``response.event``, and are answered with
    ``response.item.create`` and a ``response.create``; ``session.closed`` says why the call ended."""

    surface = "live"
    greet_on: str | None = None  # on attach
    response_done = "response.event"

    def greeting(self, text: str | None) -> dict[str, Any] | None:
        return self.say(text) if text else None

    def say(self, instructions: str) -> dict[str, Any]:
        return {"type": "session.commentary.append", "content": instructions, "delegation_id": None}

    def relayed(self, type_: str | None) -> bool:
        return type_ not in LIVE_AUDIO

    def function_calls(self, type_: str | None, event: Any) -> list[FunctionCall]:
        if type_ != "response.event":
            return []
        nested = event.data.get("event")
        if not isinstance(nested, dict) or nested.get("type") != "response.output_item.done":
            return []
        item = nested.get("item")
        return function_calls({"response": {"output": [item]}})

    def answers(self, outputs: list[tuple[str, str]]) -> list[dict[str, Any]]:
        items = [
            {"type": "response.item.create", "item": {"type": "function_call_output", "call_id": c, "output": o}}
            for c, o in outputs
        ]
        return [*items, {"type": "response.create"}]

    def is_response_done(self, type_: str | None, event: Any) -> bool:
        if type_ != "response.event":
            return False
        nested = event.data.get("event")
        return isinstance(nested, dict) and nested.get("type") in ("response.completed", "response.done")

    def closed_reason(self, type_: str | None, event: Any) -> str | None:
        if type_ != "session.closed":
            return None
        reason = event.data.get("reason")
        return LIVE_CLOSED_REASONS.get(reason, reason) if isinstance(reason, str) and reason else "hangup"


Protocol = Realtime | Live


def protocol(surface: str) -> Protocol:
    """The sideband vocabulary of a surface."""
    return Live() if surface == "live" else Realtime()
