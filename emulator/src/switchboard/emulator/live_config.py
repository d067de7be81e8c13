"""The Live session an accepted call runs with: validating Live accept bodies and session updates the way
the API does, and building the `SessionResource` that ``session.started`` / ``session.updated`` /
``session.closed`` report.

Pure functions over JSON-like dicts. The key sets mirror the openai SDK's `session_accept_params.Session`
and `SessionResource` (a unit test keeps them in step, since the SDK is only a test dependency).
Validation is shallow, like `session_config`'s: the keys at each level, the types of the common fields,
the delegation variants and function tools, enough to refuse what OpenAI would refuse with 400.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from switchboard.emulator.errors import ApiError
from switchboard.emulator.session_config import check_keys, expect, invalid

ACCEPT_KEYS: frozenset[str] = frozenset({"session"})
"""Top-level keys of a Live accept body (SDK `SessionAcceptParams`)."""
SESSION_KEYS: frozenset[str] = frozenset(
    {"type", "model", "instructions", "audio", "delegation", "input", "triggers", "store", "safety_identifier"}
)
"""Keys of the accept body's ``session`` (SDK `session_accept_params.Session`)."""
UPDATE_KEYS: frozenset[str] = frozenset({"delegation", "triggers"})
"""Keys a ``session.update`` may change (SDK `SessionUpdateConfigParam`)."""
DELEGATION_KEYS: dict[str, frozenset[str]] = {
    "client": frozenset({"type", "acknowledgement_delay_ms"}),
    "responses": frozenset({"type", "responses", "acknowledgement_delay_ms"}),
    "decisions": frozenset({"type", "decisions", "acknowledgement_delay_ms"}),
}
RESPONSES_KEYS: frozenset[str] = frozenset(
    {
        "model",
        "instructions",
        "max_output_tokens",
        "parallel_tool_calls",
        "reasoning",
        "service_tier",
        "text",
        "tool_choice",
        "tools",
    }
)
"""Keys of a ``responses`` delegation's backend config (SDK `ResponsesDelegationConfigParam`)."""
FUNCTION_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})
_INPUT_ROLES = frozenset({"developer", "user", "assistant"})

DEFAULT_LIVE_MODEL = "gpt-live-1"
DEFAULT_VOICE = "marin"
_SESSION_TTL_S = 3600


def missing(param: str) -> ApiError:
    """The error for a required parameter that is absent."""
    return invalid(param, f"Missing required parameter: '{param}'.", "missing_required_parameter")


def _check_delegation(delegation: Any, param: str) -> None:
    expect(delegation, dict, param, "an object")
    kind = delegation.get("type")
    if kind not in DELEGATION_KEYS:
        raise invalid(
            f"{param}.type",
            f"Invalid value: '{kind}'. Supported values are: 'client', 'responses' and 'decisions'.",
            "invalid_value",
        )
    check_keys(delegation, DELEGATION_KEYS[kind], f"{param}.")
    if "acknowledgement_delay_ms" in delegation:
        expect(delegation["acknowledgement_delay_ms"], int, f"{param}.acknowledgement_delay_ms", "an integer")
    if kind == "client":
        return
    if kind not in delegation:
        raise missing(f"{param}.{kind}")
    backend = delegation[kind]
    expect(backend, dict, f"{param}.{kind}", "an object")
    if not isinstance(backend.get("model"), str):
        raise invalid(
            f"{param}.{kind}.model",
            f"Missing required parameter: '{param}.{kind}.model'.",
            "missing_required_parameter",
        )
    if kind == "responses":
        _check_responses(backend, f"{param}.responses")
    elif not isinstance(backend.get("questions"), list):
        raise invalid(
            f"{param}.decisions.questions",
            f"Missing required parameter: '{param}.decisions.questions'.",
            "missing_required_parameter",
        )


def _check_responses(backend: Mapping[str, Any], param: str) -> None:
    check_keys(backend, RESPONSES_KEYS, f"{param}.")
    if "instructions" in backend and backend["instructions"] is not None:
        expect(backend["instructions"], str, f"{param}.instructions", "a string")
    if "tools" not in backend:
        return
    expect(backend["tools"], list, f"{param}.tools", "an array")
    for index, tool in enumerate(backend["tools"]):
        where = f"{param}.tools[{index}]"
        expect(tool, dict, where, "an object")
        if not isinstance(tool.get("type"), str):
            raise missing(f"{where}.type")
        if tool["type"] != "function":
            continue  # hosted tools run server-side; the emulator does not model them
        check_keys(tool, FUNCTION_TOOL_KEYS, f"{where}.")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise missing(f"{where}.name")
        if tool.get("parameters") is not None:
            expect(tool["parameters"], dict, f"{where}.parameters", "an object")


def _check_audio(audio: Any, param: str) -> None:
    expect(audio, dict, param, "an object")
    # SIP negotiates the media format: `audio.format` is only for primary WebSockets.
    check_keys(audio, frozenset({"output"}), f"{param}.")
    if "output" in audio:
        output = audio["output"]
        expect(output, dict, f"{param}.output", "an object")
        check_keys(output, frozenset({"voice"}), f"{param}.output.")
        voice = output.get("voice")
        if "voice" in output and not isinstance(voice, str):
            expect(voice, dict, f"{param}.output.voice", "a string or an object with an id")
            if not isinstance(voice.get("id"), str):
                raise invalid(
                    f"{param}.output.voice.id",
                    f"Missing required parameter: '{param}.output.voice.id'.",
                    "missing_required_parameter",
                )


def _check_input(items: Any, param: str) -> None:
    expect(items, list, param, "an array")
    for index, item in enumerate(items):
        where = f"{param}[{index}]"
        expect(item, dict, where, "an object")
        if item.get("role") not in _INPUT_ROLES:
            raise invalid(
                f"{where}.role",
                f"Invalid value: '{item.get('role')}'. Supported values are: 'developer', 'user' and 'assistant'.",
                "invalid_value",
            )
        if not isinstance(item.get("content"), list):
            raise missing(f"{where}.content")


def _check_triggers(triggers: Any, param: str) -> None:
    expect(triggers, list, param, "an array")
    for index, trigger in enumerate(triggers):
        expect(trigger, dict, f"{param}[{index}]", "an object")


def validate_accept(body: Any) -> None:
    """Refuse, with the `ApiError` OpenAI would answer, a Live accept body ``{"session": {…}}``."""
    if body is None:
        raise missing("session")
    if not isinstance(body, dict):
        raise invalid("body", "Invalid body: expected a JSON object.")
    check_keys(body, ACCEPT_KEYS, "")
    if "session" not in body:
        raise missing("session")
    session = body["session"]
    expect(session, dict, "session", "an object")
    check_keys(session, SESSION_KEYS, "session.")
    for key in ("type", "model"):
        if key not in session:
            raise missing(f"session.{key}")
    if session["type"] != "live":
        raise invalid(
            "session.type", f"Invalid value: '{session['type']}'. Supported values are: 'live'.", "invalid_value"
        )
    expect(session["model"], str, "session.model", "a string")
    for key in ("instructions", "safety_identifier"):
        if session.get(key) is not None:
            expect(session[key], str, f"session.{key}", "a string")
    if "store" in session:
        expect(session["store"], bool, "session.store", "a boolean")
    if "audio" in session:
        _check_audio(session["audio"], "session.audio")
    if session.get("delegation") is not None:
        _check_delegation(session["delegation"], "session.delegation")
    if "input" in session:
        _check_input(session["input"], "session.input")
    if "triggers" in session:
        _check_triggers(session["triggers"], "session.triggers")


def validate_update(update: Any, current: Mapping[str, Any]) -> None:
    """Refuse a ``session.update`` event's ``session`` the way the API would (delegation type is fixed)."""
    expect(update, dict, "session", "an object")
    check_keys(update, UPDATE_KEYS, "session.")
    if update.get("delegation") is not None:
        delegation = update["delegation"]
        expect(delegation, dict, "session.delegation", "an object")
        if delegation.get("type") != delegation_type(current):
            raise invalid(
                "session.delegation.type",
                f"The delegation type cannot change after startup (it is '{delegation_type(current)}').",
                "invalid_value",
            )
        check_keys(delegation, DELEGATION_KEYS[delegation_type(current)], "session.delegation.")
    if "triggers" in update and update["triggers"] is not None:
        _check_triggers(update["triggers"], "session.triggers")


def session_resource(session_id: str, accepted: Mapping[str, Any]) -> dict[str, Any]:
    """The `SessionResource` a session accepted with ``{"session": accepted}`` starts with (defaults resolved)."""
    voice = ((accepted.get("audio") or {}).get("output") or {}).get("voice", DEFAULT_VOICE)
    resource: dict[str, Any] = {
        "id": session_id,
        "expires_at": int(time.time()) + _SESSION_TTL_S,
        "model": accepted.get("model", DEFAULT_LIVE_MODEL),
        "status": "active",
        "audio": {"output": {"voice": copy.deepcopy(voice)}},
        "delegation": copy.deepcopy(accepted.get("delegation")) or {"type": "client"},
        "instructions": accepted.get("instructions"),
        "input": copy.deepcopy(accepted.get("input", [])),
        "triggers": copy.deepcopy(accepted.get("triggers", [])),
        "store": bool(accepted.get("store", False)),
        "safety_identifier": accepted.get("safety_identifier"),
    }
    return resource


def apply_update(resource: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new resource: a validated ``session.update`` applied (delegation merged key by key, triggers replaced)."""
    merged = copy.deepcopy(dict(resource))
    if isinstance(update.get("delegation"), dict):
        for key, value in update["delegation"].items():
            if isinstance(value, dict) and isinstance(merged["delegation"].get(key), dict):
                merged["delegation"][key].update(copy.deepcopy(value))
            else:
                merged["delegation"][key] = copy.deepcopy(value)
    if "triggers" in update:
        merged["triggers"] = copy.deepcopy(update["triggers"] or [])
    return merged


def delegation_type(resource: Mapping[str, Any]) -> str:
    """``client``, ``responses`` or ``decisions``."""
    return str((resource.get("delegation") or {}).get("type", "client"))


def function_tool_names(resource: Mapping[str, Any]) -> set[str]:
    """Names of the function tools a ``responses`` delegation may call (none for other delegations)."""
    delegation = resource.get("delegation") or {}
    if delegation.get("type") != "responses":
        return set()
    backend = delegation.get("responses") or {}
    if backend.get("tool_choice") == "none":
        return set()
    tools = backend.get("tools") or []
    return {t["name"] for t in tools if isinstance(t, dict) and t.get("type") == "function" and "name" in t}


def check_status_code(body: Any) -> int:
    """A Live reject body's ``status_code``: required, an integer SIP status between 300 and 699."""
    if not isinstance(body, dict) or "status_code" not in body:
        raise ApiError(
            400, "Missing required parameter: 'status_code'.", code="missing_required_parameter", param="status_code"
        )
    check_keys(body, frozenset({"status_code"}), "")
    status_code = body["status_code"]
    if isinstance(status_code, bool) or not isinstance(status_code, int) or not 300 <= status_code <= 699:
        raise ApiError(
            400,
            f"Invalid 'status_code': expected a SIP status code between 300 and 699, got {status_code!r}.",
            code="invalid_value",
            param="status_code",
        )
    return status_code
