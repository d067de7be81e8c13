"""The Realtime session an accepted call runs with: validating accept bodies and session updates the way
the API does, and building the session object `session.created` / `session.updated` report.

Pure functions over JSON-like dicts. The key sets mirror the openai SDK's `CallAcceptParams`,
`RealtimeSessionCreateRequest` and `RealtimeResponseCreateParams` (a unit test keeps them in step, since
the SDK is only a test dependency). Validation is deliberately shallow: the top-level and audio keys,
the types of common fields, and function tools, enough to refuse what OpenAI would refuse with 400.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from switchboard.emulator.errors import ApiError
from switchboard.emulator.ids import new_id

SESSION_KEYS: frozenset[str] = frozenset(
    {
        "type",
        "audio",
        "include",
        "instructions",
        "max_output_tokens",
        "model",
        "output_modalities",
        "parallel_tool_calls",
        "prompt",
        "reasoning",
        "tool_choice",
        "tools",
        "tracing",
        "truncation",
    }
)
"""Accept body / `session.update` session keys (SDK `CallAcceptParams`, `RealtimeSessionCreateRequest`)."""

RESPONSE_KEYS: frozenset[str] = frozenset(
    {
        "audio",
        "conversation",
        "input",
        "instructions",
        "max_output_tokens",
        "metadata",
        "output_modalities",
        "parallel_tool_calls",
        "prompt",
        "reasoning",
        "tool_choice",
        "tools",
    }
)
"""`response.create` response keys (SDK `RealtimeResponseCreateParams`)."""

AUDIO_INPUT_KEYS = frozenset({"format", "noise_reduction", "transcription", "turn_detection"})
AUDIO_OUTPUT_KEYS = frozenset({"format", "speed", "voice"})
FUNCTION_TOOL_KEYS = frozenset({"type", "name", "description", "parameters"})
_AUDIO_FORMATS = frozenset({"audio/pcm", "audio/pcmu", "audio/pcma"})
_TURN_DETECTION_TYPES = frozenset({"server_vad", "semantic_vad"})
_TOOL_CHOICE_MODES = frozenset({"auto", "none", "required"})

DEFAULT_MODEL = "gpt-realtime-2"
DEFAULT_INSTRUCTIONS = (
    "Your knowledge cutoff is 2023-10. You are a helpful, witty, and friendly AI. Act like a human, but "
    "remember that you aren't a human and that you can't do human things in the real world."
)
_SESSION_TTL_S = 3600


def invalid(param: str, message: str, code: str = "invalid_type") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def check_keys(value: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
    for key in value:
        if key not in allowed:
            raise invalid(f"{prefix}{key}", f"Unknown parameter: '{prefix}{key}'.", "unknown_parameter")


def expect(value: Any, kind: type | tuple[type, ...], param: str, what: str) -> None:
    # bool is an int in Python but not in JSON schema.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise invalid(param, f"Invalid type for '{param}': expected {what}, but got a boolean instead.")
    if not isinstance(value, kind):
        raise invalid(param, f"Invalid type for '{param}': expected {what}, but got {_json_type(value)} instead.")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_format(value: Any, param: str) -> None:
    expect(value, dict, param, "an object")
    kind = value.get("type")
    if kind is not None and kind not in _AUDIO_FORMATS:
        raise invalid(
            f"{param}.type",
            f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(_AUDIO_FORMATS))}.",
            "invalid_value",
        )


def _check_audio(audio: Any, prefix: str) -> None:
    expect(audio, dict, f"{prefix}audio", "an object")
    check_keys(audio, frozenset({"input", "output"}), f"{prefix}audio.")
    if (audio_in := audio.get("input")) is not None:
        param = f"{prefix}audio.input"
        expect(audio_in, dict, param, "an object")
        check_keys(audio_in, AUDIO_INPUT_KEYS, f"{param}.")
        if audio_in.get("format") is not None:
            _check_format(audio_in["format"], f"{param}.format")
        turn = audio_in.get("turn_detection")
        if turn is not None:
            expect(turn, dict, f"{param}.turn_detection", "an object")
            if turn.get("type") not in _TURN_DETECTION_TYPES:
                raise invalid(
                    f"{param}.turn_detection.type",
                    f"Invalid value: '{turn.get('type')}'. Supported values are: 'server_vad' and 'semantic_vad'.",
                    "invalid_value",
                )
        for key in ("transcription", "noise_reduction"):
            if audio_in.get(key) is not None:
                expect(audio_in[key], dict, f"{param}.{key}", "an object")
    if (audio_out := audio.get("output")) is not None:
        param = f"{prefix}audio.output"
        expect(audio_out, dict, param, "an object")
        check_keys(audio_out, AUDIO_OUTPUT_KEYS, f"{param}.")
        if audio_out.get("format") is not None:
            _check_format(audio_out["format"], f"{param}.format")
        if (voice := audio_out.get("voice")) is not None and not isinstance(voice, str | dict):
            raise invalid(f"{param}.voice", f"Invalid type for '{param}.voice': expected a string.")
        if (speed := audio_out.get("speed")) is not None:
            expect(speed, (int, float), f"{param}.speed", "a number")


def _check_tools(tools: Any, prefix: str) -> None:
    expect(tools, list, f"{prefix}tools", "an array")
    for index, tool in enumerate(tools):
        param = f"{prefix}tools[{index}]"
        expect(tool, dict, param, "an object")
        kind = tool.get("type")
        if kind == "function":
            check_keys(tool, FUNCTION_TOOL_KEYS, f"{param}.")
            if not isinstance(tool.get("name"), str) or not tool["name"]:
                raise invalid(
                    f"{param}.name", f"Missing required parameter: '{param}.name'.", "missing_required_parameter"
                )
            if tool.get("parameters") is not None:
                expect(tool["parameters"], dict, f"{param}.parameters", "an object")
        elif kind == "mcp":
            if not isinstance(tool.get("server_label"), str):
                raise invalid(
                    f"{param}.server_label",
                    f"Missing required parameter: '{param}.server_label'.",
                    "missing_required_parameter",
                )
        else:
            raise invalid(
                f"{param}.type",
                f"Invalid value: '{kind}'. Supported values are: 'function' and 'mcp'.",
                "invalid_value",
            )


def _check_common(body: Mapping[str, Any], prefix: str) -> None:
    """Checks shared by session configs and response configs."""
    if "instructions" in body:
        expect(body["instructions"], str, f"{prefix}instructions", "a string")
    if (modalities := body.get("output_modalities")) is not None:
        expect(modalities, list, f"{prefix}output_modalities", "an array")
        if len(modalities) != 1 or modalities[0] not in ("audio", "text"):
            raise invalid(
                f"{prefix}output_modalities",
                "Invalid 'output_modalities': expected exactly one of 'audio' or 'text'.",
                "invalid_value",
            )
    if "max_output_tokens" in body:
        limit = body["max_output_tokens"]
        if limit != "inf" and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 4096):
            raise invalid(
                f"{prefix}max_output_tokens",
                f"Invalid '{prefix}max_output_tokens': expected an integer between 1 and 4096 or 'inf'.",
                "invalid_value",
            )
    if "tools" in body:
        _check_tools(body["tools"], prefix)
    if (choice := body.get("tool_choice")) is not None:
        if isinstance(choice, str):
            if choice not in _TOOL_CHOICE_MODES:
                raise invalid(
                    f"{prefix}tool_choice",
                    f"Invalid value: '{choice}'. Supported values are: 'auto', 'none' and 'required'.",
                    "invalid_value",
                )
        else:
            expect(choice, dict, f"{prefix}tool_choice", "a string or an object")
    if "parallel_tool_calls" in body:
        expect(body["parallel_tool_calls"], bool, f"{prefix}parallel_tool_calls", "a boolean")


def validate_session(body: Any, *, prefix: str = "", require_type: bool = True) -> None:
    """Refuse, with the `ApiError` OpenAI would answer, an accept body or a `session.update` session."""
    if not isinstance(body, dict):
        raise invalid(prefix.rstrip(".") or "body", "Invalid body: expected a JSON object.")
    check_keys(body, SESSION_KEYS, prefix)
    if "type" not in body:
        if require_type:
            raise invalid(f"{prefix}type", f"Missing required parameter: '{prefix}type'.", "missing_required_parameter")
    elif body["type"] != "realtime":
        raise invalid(
            f"{prefix}type",
            f"Invalid value: '{body['type']}'. Supported values are: 'realtime'.",
            "invalid_value",
        )
    if "model" in body:
        expect(body["model"], str, f"{prefix}model", "a string")
    if "audio" in body:
        _check_audio(body["audio"], prefix)
    _check_common(body, prefix)


def validate_response_params(body: Any, prefix: str = "response.") -> None:
    """Refuse a `response.create` event's ``response`` object the way the API would."""
    if not isinstance(body, dict):
        raise invalid(prefix.rstrip("."), f"Invalid type for '{prefix.rstrip('.')}': expected an object.")
    check_keys(body, RESPONSE_KEYS, prefix)
    _check_common(body, prefix)


def _default_session(model: str) -> dict[str, Any]:
    """What the API reports for a fresh session before any configuration (GA shape, SIP defaults)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + _SESSION_TTL_S,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 200,
                    "idle_timeout_ms": None,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0},
        },
        "include": None,
    }


def apply_session(session: dict[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """A new session: `session` with a validated config (accept body or session update) applied.

    Top-level keys replace; ``audio.input.*`` and ``audio.output.*`` replace key by key, as the API merges.
    """
    merged = copy.deepcopy(session)
    for key, value in config.items():
        if key == "audio" and isinstance(value, dict):
            for side in ("input", "output"):
                if isinstance(value.get(side), dict):
                    merged["audio"][side].update(copy.deepcopy(value[side]))
        elif key != "type":
            merged[key] = copy.deepcopy(value)
    return merged


def session_from_accept(body: Mapping[str, Any]) -> dict[str, Any]:
    """The session a call accepted with `body` starts with."""
    model = body.get("model") if isinstance(body.get("model"), str) else DEFAULT_MODEL
    return apply_session(_default_session(str(model)), body)


def function_tool_names(session: Mapping[str, Any]) -> set[str]:
    """Names of the function tools the model may call in this session (none if tool_choice is 'none')."""
    if session.get("tool_choice") == "none":
        return set()
    tools = session.get("tools") or []
    return {t["name"] for t in tools if isinstance(t, dict) and t.get("type") == "function" and "name" in t}


def auto_response_enabled(session: Mapping[str, Any]) -> bool:
    """Whether the model answers by itself at the end of the caller's turn (VAD with create_response)."""
    turn = (session.get("audio") or {}).get("input", {}).get("turn_detection")
    return isinstance(turn, dict) and turn.get("create_response", True) is not False


def transcription_enabled(session: Mapping[str, Any]) -> bool:
    """Whether input audio transcription is configured for this session."""
    return bool((session.get("audio") or {}).get("input", {}).get("transcription"))
