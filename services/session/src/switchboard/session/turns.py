"""The model's function calls and our answers to them, as plain data. Pure; no I/O.

A function call is complete when its response is done: ``response.done`` carries every
``function_call`` output item (name, call_id, arguments). We answer each with a
``conversation.item.create`` of a ``function_call_output`` and then one ``response.create`` so the
model speaks about the results.
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
