"""The model side of one accepted call: its Realtime session, conversation, responses and sidebands.

A `RealtimeSession` is what a sideband WebSocket talks to. Every attached sideband first gets its own
``session.created``; after that, server events go to all open sidebands of the call (so a worker that
re-attaches for failover sees what happens next, not what it missed). Client events from any sideband
are recorded and answered like the API does, errors as an ``error`` event to the sender only, never a
crash. Audio never flows here (it stays on the SIP leg): the caller's speech and the model's voice
appear only as events and transcripts.

Responses run one at a time, as in the API: a client ``response.create`` while one is active gets the
``conversation_already_has_active_response`` error; responses the model starts by itself (server VAD at
the end of the caller's turn) wait for the active one to finish.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from aiohttp import web

from switchboard.emulator import responses as ev
from switchboard.emulator.calls import CallRecord, SidebandConnection
from switchboard.emulator.errors import ApiError
from switchboard.emulator.ids import new_id
from switchboard.emulator.session_config import (
    apply_session,
    auto_response_enabled,
    function_tool_names,
    validate_response_params,
    validate_session,
)

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

SEND_TIMEOUT_S = 5.0
_SMALL_FRAME = 16 * 1024
CLOSE_TIMEOUT_S = 2.0

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
class Sideband:
    """One open sideband WebSocket of a call."""

    ws: web.WebSocketResponse
    transport: Any
    """The TCP transport, to abort the connection abnormally (no close frame: the client sees 1006)."""
    connection: SidebandConnection
    closing: bool = False


def _cannot_block(sideband: Sideband, text: str) -> bool:
    """True when sending `text` completes without waiting, so it needs no timeout.

    A send waits only while the transport is paused, i.e. holds more than its high-water mark (64 KiB)
    of unsent data. With nothing queued and a frame well under that mark it cannot pause, so the timer
    of a timeout (a sixth of the emulator's CPU with a thousand talking calls) is skipped.
    """
    transport = sideband.transport
    return transport is not None and transport.get_write_buffer_size() == 0 and len(text) < _SMALL_FRAME


@dataclass
class _Active:
    builder: ev.ResponseBuilder
    cancelled: bool = False


class RealtimeSession:
    """The Realtime session of one accepted call (see the module docstring)."""

    def __init__(
        self,
        *,
        record: CallRecord,
        session: dict[str, Any],
        pace: float,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    ) -> None:
        self.record = record
        self.session = session
        self.pace = pace
        self._spawn = spawn
        self._log = log.bind(call_id=record.call_id)
        self.conversation_id = new_id("conv")
        self.items: dict[str, dict[str, Any]] = {}
        self.sidebands: list[Sideband] = []
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._active: _Active | None = None
        self.responses_started = 0
        self.function_outputs: dict[str, str] = {}
        self._started = time.monotonic()
        self._audio_ms = 0
        self._handlers: dict[str, Callable[[dict[str, Any], Sideband], Awaitable[None]]] = {
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

    # Sidebands and sending.

    @property
    def last_item_id(self) -> str | None:
        return next(reversed(self.items), None)

    async def sleep(self, seconds_at_pace_1: float) -> None:
        """A scripted delay; at pace 0 it still yields so other tasks interleave."""
        await asyncio.sleep(seconds_at_pace_1 * self.pace)

    async def _send(self, sideband: Sideband, text: str) -> bool:
        if sideband.closing or sideband.ws.closed:
            return False
        try:
            if _cannot_block(sideband, text):
                await sideband.ws.send_str(text)
            else:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await sideband.ws.send_str(text)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            self._log.info("sideband_send_failed", error=repr(exc), index=sideband.connection.index)
            return False
        return True

    async def attach(self, ws: web.WebSocketResponse, transport: Any, connection: SidebandConnection) -> Sideband:
        """Add a sideband: it gets its own ``session.created``, then every later event of the call."""
        sideband = Sideband(ws, transport, connection)
        async with self._send_lock:
            text = json.dumps(ev.session_created(self.session))
            sent_at = time.time()
            if await self._send(sideband, text):
                self.record.server_events.append(json.loads(text))
                self.record.server_event_times.append(sent_at)
            self.sidebands.append(sideband)
        return sideband

    def detach(self, sideband: Sideband) -> None:
        """Forget a sideband whose connection ended, recording how it closed."""
        if sideband in self.sidebands:
            self.sidebands.remove(sideband)
        conn = sideband.connection
        if conn.closed_at is None:
            conn.closed_at = time.time()
            conn.close_code = sideband.ws.close_code if sideband.ws.close_code is not None else 1006

    async def emit(self, event: dict[str, Any], *, only: Sideband | None = None) -> None:
        """Send a server event to every open sideband (or just `only`); record it if anyone got it.

        The event is serialised once, here: what is recorded is exactly what was sent, whatever happens
        to the dicts it was built from afterwards.
        """
        encoded = msgspec.json.encode(event)
        text = encoded.decode()
        async with self._send_lock:
            targets = [only] if only is not None else list(self.sidebands)
            delivered = False
            sent_at = time.time()
            for sideband in targets:
                delivered = await self._send(sideband, text) or delivered
            if delivered:
                self.record.server_events.append(msgspec.json.decode(encoded))
                self.record.server_event_times.append(sent_at)
            else:
                self._log.debug("server_event_unheard", type=event["type"])

    async def emit_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self.emit(event)

    async def close(self, code: int = 1000) -> None:
        """Close every sideband with `code` (1000 when the call is over; others to simulate failures)."""
        closing = list(self.sidebands)
        for sideband in closing:
            sideband.closing = True
            sideband.connection.closed_at = time.time()
            sideband.connection.close_code = code
        results = await asyncio.gather(
            *(asyncio.wait_for(s.ws.close(code=code), CLOSE_TIMEOUT_S + 1) for s in closing), return_exceptions=True
        )
        for sideband, result in zip(closing, results, strict=True):
            if isinstance(result, BaseException):
                sideband.transport.abort()
        self.sidebands.clear()

    def abort(self) -> int:
        """Drop every sideband abnormally (no close frame: clients see 1006); the call itself goes on."""
        dropped = list(self.sidebands)
        for sideband in dropped:
            sideband.closing = True
            sideband.connection.closed_at = time.time()
            sideband.connection.close_code = 1006
            if sideband.transport is not None:
                sideband.transport.abort()
        self.sidebands.clear()
        return len(dropped)

    # Waiting (for the scripted caller).

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `predicate()` holds (re-checked on every state change); False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._changed:
                    await self._changed.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    async def wait_idle(self) -> None:
        """Wait until no response is in progress."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._active is None)

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
        await self._notify()

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
        await self._notify()
        return item_id

    async def dtmf(self, digit: str) -> None:
        await self.emit(ev.dtmf_received(digit))

    # Client events.

    async def on_client_text(self, text: str, sideband: Sideband) -> None:
        """Record and answer one client event; anything invalid becomes an ``error`` event."""
        self.record.client_event_times.append(time.time())
        try:
            event = json.loads(text)
        except ValueError:
            self.record.client_events.append(text)
            await self._error(sideband, ApiError(400, "The event is not valid JSON.", code="invalid_json"), None)
            return
        self.record.client_events.append(event)
        client_event_id = event.get("event_id") if isinstance(event, dict) else None
        try:
            if not isinstance(event, dict):
                raise ApiError(400, "Invalid event: expected a JSON object.", code="invalid_type")
            kind = event.get("type")
            if not isinstance(kind, str):
                raise ApiError(
                    400, "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
                )
            handler = self._handlers.get(kind)
            if handler is None:
                raise ApiError(
                    400,
                    f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(self._handlers))}.",
                    code="invalid_value",
                    param="type",
                )
            await handler(event, sideband)
        except ApiError as exc:
            await self._error(sideband, exc, client_event_id if isinstance(client_event_id, str) else None)

    async def _error(self, sideband: Sideband, exc: ApiError, client_event_id: str | None) -> None:
        self._log.info("client_event_refused", code=exc.code, param=exc.param)
        await self.emit(
            ev.error(exc.message, code=exc.code, param=exc.param, client_event_id=client_event_id, type_=exc.type),
            only=sideband,
        )

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
        await self._notify()
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
        await self._notify()

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
