"""The model side of one accepted Live call: its session resource, the agent's turns and the sidebands.

A `LiveSession` is what a Live sideband (``/v1/live/sessions/{id}/attach``) talks to; the sidebands,
recording and dispatch are `sidebands.SidebandHub`'s. Each attaching sideband first gets
``session.started``. Unlike Realtime, the sideband carries the call's audio: the caller's speech is
reflected as ``session.input_audio.append`` frames and the agent's as ``session.output_audio.delta``,
beside the transcripts (``session.{input,output}_transcript.delta``, no done events).

The model takes its own turns, one at a time: after the caller speaks (`respond`), when the client
appends commentary (or instructions it can derive speech from: the greeting), and after a
``responses`` delegation's tool output and ``response.create``. Function calls go through a
``responses`` delegation (`function_call`). When the call ends, every sideband gets ``session.closed``
with a reason, then a normal close (`finish`); a dropped sideband (a fault) gets neither.

Emulator choices where the SDK is silent: commentary is spoken as `realtime.text_from_instructions`
derives it, else word for word; ``session.instructions.append`` makes the agent speak only when speech
can be derived from it, or to greet if it has not spoken yet; a refer ends with ``remote_hangup``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from switchboard.emulator import live_events as lev
from switchboard.emulator.calls import CallRecord, EndReason
from switchboard.emulator.errors import ApiError
from switchboard.emulator.ids import new_id
from switchboard.emulator.live_config import apply_update, delegation_type, function_tool_names, validate_update
from switchboard.emulator.realtime import (
    AGENT_WORD_S,
    ARGUMENT_CHUNK_S,
    CALLER_WORD_S,
    CANNED_REPLY,
    GREETING,
    RESPONSE_LATENCY_S,
    text_about_output,
    text_from_instructions,
)
from switchboard.emulator.responses import chunks
from switchboard.emulator.sidebands import Sideband, SidebandHub, Spawn

log = structlog.get_logger(__name__)

MS_PER_WORD = 350
"""Audio time a spoken word takes on the session's timeline (independent of pace)."""
WORDS_PER_DELTA = 2
USAGE_EVERY_TURNS = 2
"""A ``session.usage.updated`` after every this many agent turns."""
_DTMF_DIGITS = frozenset("0123456789ABCD*#")
CLOSE_REASONS: dict[EndReason, lev.CloseReason] = {
    "hangup": "close_requested",
    "caller_hangup": "remote_hangup",
    "referred": "remote_hangup",
    "caller_abandoned": "remote_hangup",
    "rejected": "remote_hangup",
    "answered_elsewhere": "remote_hangup",
}
"""The ``session.closed`` reason for each way a call ends (REST hangup and ``session.close`` are ``hangup``)."""


def _missing(param: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param)


@dataclass
class _Turn:
    """The agent speaking (or calling a tool): one at a time."""

    kind: str


class LiveSession(SidebandHub):
    """The Live session of one accepted call (see the module docstring)."""

    def __init__(
        self,
        *,
        record: CallRecord,
        resource: dict[str, Any],
        pace: float,
        spawn: Spawn,
        close_requested: Callable[[], None],
    ) -> None:
        super().__init__(record=record, pace=pace, spawn=spawn)
        self.resource = resource
        self._close_requested = close_requested
        """Ends the call as a hangup: ``session.close`` does what a REST hangup does."""
        self._log = log.bind(call_id=record.call_id)
        self._started = time.monotonic()
        self._timeline_ms = 0
        self._turn: _Turn | None = None
        self._turns_done = 0
        self._spoke = False
        self.delegations: dict[str, str] = {}
        """Delegation ids the session created, and their target."""
        self._pending_calls: list[str] = []
        """Function ``call_id``s of the ``responses`` delegation still waiting for their output."""
        self._handlers = {
            "session.update": self._on_session_update,
            "session.close": self._on_session_close,
            "session.instructions.append": self._on_append,
            "session.commentary.append": self._on_append,
            "session.thinking.append": self._on_append,
            "session.input_audio.mute": self._on_mute,
            "session.input_audio.unmute": self._on_mute,
            "session.output_audio.fixture.play": self._on_fixture,
            "transport.dtmf.send": self._on_dtmf_send,
            "response.create": self._on_response_create,
            "response.item.create": self._on_response_item_create,
        }

    # What this surface says.

    def hello(self) -> dict[str, Any]:
        return lev.session_started(self.resource)

    def error_event(self, exc: ApiError, client_event_id: str | None) -> dict[str, Any]:
        return lev.error(exc.message, code=exc.code, param=exc.param, client_event_id=client_event_id, type_=exc.type)

    @property
    def busy(self) -> bool:
        return self._turn is not None

    @property
    def seconds(self) -> float:
        """Billable session duration so far."""
        return time.monotonic() - self._started

    async def finish(self, reason: EndReason, delay_s: float) -> None:
        """``session.closed`` with the reason `reason` maps to, then close every sideband with 1000."""
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await self.emit(lev.session_closed(CLOSE_REASONS[reason], self.resource, self.seconds))
        await self.close(1000)

    # The timeline.

    def _span(self, words: int) -> tuple[int, int]:
        """Claim `words` of speech on the timeline: (start_ms, end_ms), never overlapping earlier ones."""
        start_ms = max(self._timeline_ms, int(self.seconds * 1000))
        end_ms = start_ms + max(1, words) * MS_PER_WORD
        self._timeline_ms = end_ms + 1
        return start_ms, end_ms

    def _now_ms(self) -> int:
        return max(self._timeline_ms, int(self.seconds * 1000))

    # The agent's turns.

    async def _claim(self, kind: str) -> _Turn:
        async with self._changed:
            await self._changed.wait_for(lambda: self._turn is None)
            self._turn = _Turn(kind)
            self.responses_started += 1
            self._changed.notify_all()
        return self._turn

    async def _release(self, turn: _Turn) -> None:
        if self._turn is turn:
            self._turn = None
        self._turns_done += 1
        if self._turns_done % USAGE_EVERY_TURNS == 0:
            await self.emit(lev.usage_updated(self.seconds, min(1.0, 0.01 * len(self.record.server_events) / 10)))
        await self.notify()

    async def _speak(self, text: str) -> None:
        """Stream the agent saying `text`: transcript deltas, each with its reflected audio."""
        await self.sleep(RESPONSE_LATENCY_S)
        for delta in chunks(text, WORDS_PER_DELTA):
            words = max(1, len(delta.split()))
            start_ms, end_ms = self._span(words)
            await self.emit(lev.output_transcript(delta, start_ms, end_ms))
            await self.emit(lev.output_audio(start_ms, end_ms))
            await self.sleep(AGENT_WORD_S * words)
        self._spoke = True

    async def respond(self, text: str) -> None:
        """The agent takes a turn and says `text` (after any turn in progress)."""
        turn = await self._claim("speech")
        try:
            await self._speak(text)
        finally:
            await self._release(turn)

    def _respond_soon(self, text: str) -> None:
        self._spawn(self.respond(text), "agent_turn")

    def offers_function(self, name: str) -> bool:
        return name in function_tool_names(self.resource)

    @property
    def auto_response(self) -> bool:
        """The Live model always takes its own turns (there is no turn-detection setting)."""
        return True

    async def function_call(self, name: str, arguments: dict[str, Any]) -> str:
        """The agent delegates a call of function `name` to the Responses backend; returns its ``call_id``."""
        turn = await self._claim("delegation")
        call_id = new_id("call", 8)
        try:
            await self.sleep(RESPONSE_LATENCY_S)
            delegation_id, response_id = new_id("del"), new_id("resp")
            self.delegations[delegation_id] = "responses"
            await self.emit(lev.delegation_created(delegation_id, "responses", response_id, self._now_ms()))
            for event in lev.responses_function_call(name, json.dumps(arguments), call_id):
                await self.sleep(ARGUMENT_CHUNK_S)
                await self.emit(lev.response_event(event, delegation_id))
            self._pending_calls.append(call_id)
        finally:
            await self._release(turn)
        return call_id

    # The caller's side of the line.

    async def caller_speaks(self, text: str) -> str:
        """The caller says `text`: reflected audio frames and input transcript deltas. Returns ``""``."""
        for delta in chunks(text, words_per_chunk=3):
            words = max(1, len(delta.split()))
            start_ms, end_ms = self._span(words)
            await self.emit(lev.input_audio())
            await self.sleep(CALLER_WORD_S * words)
            await self.emit(lev.input_audio())
            await self.emit(lev.input_transcript(delta, start_ms, end_ms))
        await self.notify()
        return ""

    async def dtmf(self, digit: str) -> None:
        await self.emit(lev.dtmf_received(digit))

    # Client events.

    @staticmethod
    def _client_event_id(event: dict[str, Any]) -> str | None:
        value = event.get("event_id")
        return value if isinstance(value, str) else None

    async def _on_session_update(self, event: dict[str, Any], sideband: Sideband) -> None:
        if "session" not in event:
            raise _missing("session")
        validate_update(event["session"], self.resource)
        self.resource = apply_update(self.resource, event["session"])
        await self.emit(lev.session_updated(self.resource, self._client_event_id(event)))

    async def _on_session_close(self, event: dict[str, Any], sideband: Sideband) -> None:
        self._close_requested()

    async def _on_append(self, event: dict[str, Any], sideband: Sideband) -> None:
        kind = str(event["type"]).split(".")[1]  # instructions, commentary or thinking
        content = event.get("content")
        if not isinstance(content, str) or not content.strip():
            raise _missing("content")
        if "delegation_id" not in event:
            raise _missing("delegation_id")
        delegation_id = event["delegation_id"]
        if delegation_id is not None:
            if delegation_type(self.resource) == "responses":
                raise ApiError(
                    400,
                    "delegation_id must be null when the session uses Responses delegation.",
                    code="invalid_value",
                    param="delegation_id",
                )
            if delegation_id not in self.delegations:
                raise ApiError(
                    400, f"Unknown delegation_id '{delegation_id}'.", code="invalid_value", param="delegation_id"
                )
        at_ms = self._now_ms()
        await self.emit(lev.appended(kind, at_ms, at_ms, self._client_event_id(event)))
        if kind == "commentary":
            self._respond_soon(text_from_instructions(content) or content)
        elif kind == "instructions":
            derived = text_from_instructions(content)
            if derived is not None:
                self._respond_soon(derived)
            elif not self._spoke and self._turn is None and self.responses_started == 0:
                self._respond_soon(GREETING)

    async def _on_mute(self, event: dict[str, Any], sideband: Sideband) -> None:
        acked = "session.input_audio.muted" if event["type"].endswith(".mute") else "session.input_audio.unmuted"
        await self.emit(lev.ack(acked, self._client_event_id(event)))

    async def _on_fixture(self, event: dict[str, Any], sideband: Sideband) -> None:
        if not isinstance(event.get("audio"), str):
            raise _missing("audio")
        client_event_id = self._client_event_id(event)
        await self.emit(lev.ack("session.output_audio.fixture.playing", client_event_id))
        await self.emit(lev.ack("session.output_audio.fixture.played", client_event_id))

    async def _on_dtmf_send(self, event: dict[str, Any], sideband: Sideband) -> None:
        digit = event.get("event")
        if not isinstance(digit, str) or digit not in _DTMF_DIGITS or len(digit) != 1:
            raise ApiError(
                400,
                f"Invalid value: {digit!r}. Supported values are one of 0-9, A-D, '*' and '#'.",
                code="invalid_value",
                param="event",
            )
        await self.emit(lev.dtmf_sent(digit, self._client_event_id(event)))

    def _require_responses(self) -> None:
        if delegation_type(self.resource) != "responses":
            raise ApiError(
                400,
                "This event is only supported when the session uses Responses delegation.",
                code="invalid_request",
                param="type",
            )

    async def _on_response_item_create(self, event: dict[str, Any], sideband: Sideband) -> None:
        self._require_responses()
        item = event.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise _missing("item")
        if item["type"] == "function_call_output":
            if not isinstance(item.get("call_id"), str):
                raise _missing("item.call_id")
            output = item.get("output")
            if not isinstance(output, str | list):
                raise _missing("item.output")
            self.function_outputs[item["call_id"]] = output if isinstance(output, str) else json.dumps(output)
            await self.notify()

    async def _on_response_create(self, event: dict[str, Any], sideband: Sideband) -> None:
        self._require_responses()
        answered = [call_id for call_id in self._pending_calls if call_id in self.function_outputs]
        for call_id in answered:
            self._pending_calls.remove(call_id)
        if answered:
            text = " ".join(text_about_output(self.function_outputs[call_id]) for call_id in answered)
        else:
            text = CANNED_REPLY
        self._respond_soon(text)
