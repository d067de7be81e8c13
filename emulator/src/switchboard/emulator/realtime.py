"""The model side of one accepted call: its Realtime session, conversation, responses and sidebands.

A `RealtimeSession` is what a Realtime sideband WebSocket talks to (the sidebands themselves, recording
and dispatch of client events are `sidebands.SidebandHub`'s). Every attached sideband first gets its
own ``session.created``; client events are answered like the API does. Audio never flows here (it
stays on the SIP leg): the caller's speech and the model's voice appear only as events and transcripts.

Responses run one at a time, as in the API: a client ``response.create`` while one is active gets the
``conversation_already_has_active_response`` error; responses the model starts by itself (server VAD at
the end of the caller's turn) wait for the active one to finish.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from switchboard.emulator import responses as ev
from switchboard.emulator.calls import CallRecord
from switchboard.emulator.errors import ApiError
from switchboard.emulator.ids import new_id
from switchboard.emulator.session_config import (
    apply_session,
    auto_response_enabled,
    function_tool_names,
    validate_response_params,
    validate_session,
)
from switchboard.emulator.sidebands import Sideband, SidebandHub

log = structlog.get_logger(__name__)

# Timing at pace 1 (all scaled by the configured pace): a default scripted call lasts about 5 s.
RESPONSE_LATENCY_S = 0.3
"""From the end of the caller's turn (or a response.create) to ``response.created``."""
AGENT_WORD_S = 0.06
"""Between transcript deltas, per word: how fast the model's speech is streamed."""
ARGUMENT_CHUNK_S = 0.02
CALLER_WORD_S = 0.09
"""How long the caller speaks, per word, between speech_started and speech_stopped."""
VAD_SILENCE_S = 0.2
TRANSCRIPTION_S = 0.1
_SYNTHETIC_MS_PER_WORD = 350
"""Audio time a spoken word takes, for ``audio_start_ms``/``audio_end_ms`` (independent of pace)."""

GREETING = "Hello! Thanks for calling. How can I help you today?"
CANNED_REPLY = "Certainly. Is there anything else I can help you with?"

_QUOTED = (
    re.compile(r"[\"“]([^\"“”]{2,})[\"”]"),
    # Single quotes only around whole phrases, so apostrophes ("we're … don't") are not taken for quotes.
    re.compile(r"(?:^|\s)'([^']{2,})'(?=$|[\s.,;:!?])"),
)
_SAY = re.compile(r"\bsay\s*:\s*(.+)$", re.IGNORECASE | re.DOTALL)


def text_from_instructions(instructions: str) -> str | None:
    """What the model would say for instructions like ``Say: Hello …`` or ``Greet them with "Hi …"``."""
    for quoted in _QUOTED:
        if match := quoted.search(instructions):
            return match.group(1).strip()
    if match := _SAY.search(instructions):
        return match.group(1).strip().strip("\"'“”").strip() or None
    return None


def text_about_output(output: str) -> str:
    """What the model says about a function call's output (a summary of its JSON)."""
    try:
        value = json.loads(output)
    except ValueError:
        value = output
    if isinstance(value, dict):
        if "error" in value:
            return f"I'm sorry, I couldn't complete that: {value['error']}."
        facts = [
            f"{key.replace('_', ' ')} is {val}" for key, val in value.items() if isinstance(val, str | int | float)
        ]
        summary = ", ".join(facts[:4]) if facts else "it's done"
    else:
        summary = str(value)
    return f"I checked that for you: {summary[:200]}."


@dataclass
class _Active:
    builder: ev.ResponseBuilder
    cancelled: bool = False


class RealtimeSession(SidebandHub):
    """The Realtime session of one accepted call (see the module docstring)."""

    def __init__(
        self,
        *,
        record: CallRecord,
        session: dict[str, Any],
        pace: float,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    ) -> None:
        super().__init__(record=record, pace=pace, spawn=spawn)
        self.session = session
        self.conversation_id = new_id("conv")
        self.items: dict[str, dict[str, Any]] = {}
        self._active: _Active | None = None
        self._started = time.monotonic()
        self._audio_ms = 0
        self._handlers = {
            "session.update": self._on_session_update,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
            "conversation.item.create": self._on_item_create,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "conversation.item.truncate": self._on_item_truncate,
            "input_audio_buffer.append": self._on_audio_append,
            "input_audio_buffer.commit": self._on_audio_commit,
            "input_audio_buffer.clear": self._on_audio_clear,
            "output_audio_buffer.clear": self._on_output_audio_clear,
        }

    # What this surface says.

    def hello(self) -> dict[str, Any]:
        return ev.session_created(self.session)

    def error_event(self, exc: ApiError, client_event_id: str | None) -> dict[str, Any]:
        return ev.error(exc.message, code=exc.code, param=exc.param, client_event_id=client_event_id, type_=exc.type)

    @property
    def busy(self) -> bool:
        return self._active is not None

    @property
    def last_item_id(self) -> str | None:
        return next(reversed(self.items), None)

    # Responses.

    async def _claim(self, builder: ev.ResponseBuilder) -> _Active:
        async with self._changed:
            await self._changed.wait_for(lambda: self._active is None)
            self._active = _Active(builder)
            self.responses_started += 1
            self._changed.notify_all()
        return self._active

    def _claim_nowait(self, builder: ev.ResponseBuilder) -> _Active | None:
        if self._active is not None:
            return None
        self._active = _Active(builder)
        self.responses_started += 1
        return self._active

    async def _release(self, active: _Active) -> None:
        for item in active.builder.output:
            self.items[str(item["id"])] = item
        if self._active is active:
            self._active = None
        await self.notify()

    def _builder(self, params: dict[str, Any] | None = None) -> ev.ResponseBuilder:
        params = params or {}
        return ev.ResponseBuilder(
            conversation_id=self.conversation_id,
            session=self.session,
            previous_item_id=self.last_item_id,
            output_modalities=params.get("output_modalities"),
            metadata=params.get("metadata"),
        )

    async def _finish(self, active: _Active, status: ev.ResponseStatus = "completed") -> None:
        reason = "client_cancelled" if status == "cancelled" else None
        await self.emit(active.builder.done(status, reason))
        self._log.debug("response_done", response_id=active.builder.response_id, status=status)

    async def _speak(self, active: _Active, text: str) -> None:
        """Stream one spoken message of a response, honouring a cancel between deltas."""
        builder = active.builder
        await self.emit_all(builder.message_added())
        for delta in ev.chunks(text):
            await self.sleep(AGENT_WORD_S * max(1, len(delta.split())))
            if active.cancelled:
                return
            await self.emit(builder.text_delta(delta))
        await self.emit_all(builder.message_done())

    async def _run_spoken(self, active: _Active, text: str) -> None:
        try:
            await self.sleep(RESPONSE_LATENCY_S)
            await self.emit(active.builder.created())
            await self._speak(active, text)
            await self._finish(active, "cancelled" if active.cancelled else "completed")
        finally:
            await self._release(active)

    async def respond(self, text: str) -> None:
        """The model speaks `text` as a full response (after any active response), e.g. after VAD."""
        active = await self._claim(self._builder())
        await self._run_spoken(active, text)

    async def function_call(self, name: str, arguments: dict[str, Any]) -> str:
        """The model answers with a call of function `name`; returns the function call's ``call_id``."""
        active = await self._claim(self._builder())
        builder = active.builder
        try:
            await self.sleep(RESPONSE_LATENCY_S)
            await self.emit(builder.created())
            await self.emit_all(builder.function_call_added(name))
            call_id = builder.call_id
            for delta in ev.chunks(json.dumps(arguments), words_per_chunk=1):
                await self.sleep(ARGUMENT_CHUNK_S)
                await self.emit(builder.arguments_delta(delta))
            await self.emit_all(builder.function_call_done())
            await self._finish(active)
        finally:
            await self._release(active)
        return call_id

    def offers_function(self, name: str) -> bool:
        return name in function_tool_names(self.session)

    @property
    def auto_response(self) -> bool:
        return auto_response_enabled(self.session)

    # The caller's side of the line.

    async def caller_speaks(self, text: str) -> str:
        """The caller says `text`: VAD, commit, the user item and its transcription. Returns the item id."""
        item_id = new_id("item")
        words = max(1, len(text.split()))
        start_ms = max(self._audio_ms, int((time.monotonic() - self._started) * 1000))
        end_ms = start_ms + words * _SYNTHETIC_MS_PER_WORD
        self._audio_ms = end_ms + 1
        await self.emit(ev.speech_started(item_id, start_ms))
        await self.sleep(CALLER_WORD_S * words)
        await self.emit(ev.speech_stopped(item_id, end_ms))
        await self.sleep(VAD_SILENCE_S)
        previous = self.last_item_id
        item = ev.user_audio_item(item_id)
        self.items[item_id] = item
        await self.emit(ev.committed(item_id, previous))
        await self.emit(ev.item_added(item, previous))
        await self.emit(ev.item_done(item, previous))
        await self.sleep(TRANSCRIPTION_S)
        for delta in ev.chunks(text, words_per_chunk=3):
            await self.emit(ev.transcription_delta(item_id, delta))
        await self.emit(ev.transcription_completed(item_id, text))
        item["content"][0]["transcript"] = text
        await self.notify()
        return item_id

    async def dtmf(self, digit: str) -> None:
        await self.emit(ev.dtmf_received(digit))

    # Client events.

    async def _on_session_update(self, event: dict[str, Any], sideband: Sideband) -> None:
        if "session" not in event:
            raise ApiError(
                400, "Missing required parameter: 'session'.", code="missing_required_parameter", param="session"
            )
        validate_session(event["session"], prefix="session.")
        self.session = apply_session(self.session, event["session"])
        await self.emit(ev.session_updated(self.session))

    def _spoken_text(self, params: dict[str, Any]) -> str:
        instructions = params.get("instructions")
        if isinstance(instructions, str) and (derived := text_from_instructions(instructions)):
            return derived
        last = self.items.get(self.last_item_id or "")
        if last is not None and last.get("type") == "function_call_output":
            return text_about_output(str(last.get("output", "")))
        spoke_before = any(item.get("role") == "assistant" for item in self.items.values())
        return CANNED_REPLY if spoke_before else GREETING

    async def _on_response_create(self, event: dict[str, Any], sideband: Sideband) -> None:
        params = event.get("response") or {}
        validate_response_params(params)
        active = self._claim_nowait(self._builder(params))
        if active is None:
            assert self._active is not None
            raise ApiError(
                400,
                f"Conversation already has an active response in progress: {self._active.builder.response_id}. "
                "Wait until the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        await self.notify()
        self._spawn(self._run_spoken(active, self._spoken_text(params)), "response")

    async def _on_response_cancel(self, event: dict[str, Any], sideband: Sideband) -> None:
        wanted = event.get("response_id")
        active = self._active
        if active is None or (wanted is not None and wanted != active.builder.response_id):
            raise ApiError(400, "Cancellation failed: no active response found.", code="response_cancel_not_active")
        active.cancelled = True

    async def _on_item_create(self, event: dict[str, Any], sideband: Sideband) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ApiError(400, "Missing required parameter: 'item'.", code="missing_required_parameter", param="item")
        kind = item.get("type")
        if kind == "function_call_output":
            for key in ("call_id", "output"):
                if not isinstance(item.get(key), str):
                    raise ApiError(
                        400,
                        f"Missing required parameter: 'item.{key}'.",
                        code="missing_required_parameter",
                        param=f"item.{key}",
                    )
        elif kind == "message":
            if item.get("role") not in ("user", "assistant", "system"):
                raise ApiError(
                    400,
                    f"Invalid value: '{item.get('role')}'. Supported values are: 'user', 'assistant' and 'system'.",
                    code="invalid_value",
                    param="item.role",
                )
            if not isinstance(item.get("content"), list):
                raise ApiError(
                    400,
                    "Missing required parameter: 'item.content'.",
                    code="missing_required_parameter",
                    param="item.content",
                )
        elif kind != "function_call":
            raise ApiError(
                400,
                f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call' and "
                "'function_call_output'.",
                code="invalid_value",
                param="item.type",
            )
        item_id = item.get("id") or new_id("item")
        if item_id in self.items:
            raise ApiError(
                400, f"Item with id '{item_id}' already exists.", code="item_already_exists", param="item.id"
            )
        stored = {"id": item_id, "object": "realtime.item", "status": "completed"}
        stored.update((key, value) for key, value in item.items() if key != "id")
        previous = self.last_item_id
        self.items[item_id] = stored
        if kind == "function_call_output":
            self.function_outputs[str(item["call_id"])] = str(item["output"])
        await self.emit(ev.item_added(stored, previous))
        await self.emit(ev.item_done(stored, previous))
        await self.notify()

    def _known_item(self, event: dict[str, Any]) -> dict[str, Any]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise ApiError(
                400, "Missing required parameter: 'item_id'.", code="missing_required_parameter", param="item_id"
            )
        if item_id not in self.items:
            raise ApiError(400, f"Item with item_id '{item_id}' not found.", code="item_not_found", param="item_id")
        return self.items[item_id]

    async def _on_item_delete(self, event: dict[str, Any], sideband: Sideband) -> None:
        item = self._known_item(event)
        del self.items[str(item["id"])]
        await self.emit(ev.item_deleted(str(item["id"])))

    async def _on_item_retrieve(self, event: dict[str, Any], sideband: Sideband) -> None:
        await self.emit(ev.item_retrieved(self._known_item(event)), only=sideband)

    async def _on_item_truncate(self, event: dict[str, Any], sideband: Sideband) -> None:
        item = self._known_item(event)
        content_index, audio_end_ms = event.get("content_index"), event.get("audio_end_ms")
        if not isinstance(content_index, int) or not isinstance(audio_end_ms, int):
            raise ApiError(
                400,
                "Missing required parameter: 'content_index' and 'audio_end_ms' must be integers.",
                code="missing_required_parameter",
                param="audio_end_ms" if isinstance(content_index, int) else "content_index",
            )
        await self.emit(ev.item_truncated(str(item["id"]), content_index, audio_end_ms))

    async def _on_audio_append(self, event: dict[str, Any], sideband: Sideband) -> None:
        # The caller's audio arrives over SIP; appended audio is accepted and has no further effect here.
        if not isinstance(event.get("audio"), str):
            raise ApiError(
                400, "Missing required parameter: 'audio'.", code="missing_required_parameter", param="audio"
            )

    async def _on_audio_commit(self, event: dict[str, Any], sideband: Sideband) -> None:
        raise ApiError(
            400,
            "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer "
            "only has 0.00ms of audio.",
            code="input_audio_buffer_commit_empty",
        )

    async def _on_audio_clear(self, event: dict[str, Any], sideband: Sideband) -> None:
        await self.emit(ev.input_audio_buffer_cleared())

    async def _on_output_audio_clear(self, event: dict[str, Any], sideband: Sideband) -> None:
        # Cutting the model off mid-sentence cancels the response whose audio was playing.
        if (active := self._active) is not None:
            active.cancelled = True
            await self.emit(ev.output_audio_buffer_cleared(active.builder.response_id))
