"""Builders of Realtime server events, shaped like the GA API (checked against the openai SDK's types).

Pure: each function returns JSON-ready dicts with fresh ids (``event_…``, ``item_…``, ``resp_…``,
``call_…``); the sideband decides when to send them. `ResponseBuilder` keeps the state of one model
response (its items, the transcript so far) so a response can be finished or cancelled at any point.

Faithful to the SDK, not to intuition: ``input_audio_buffer.dtmf_event_received`` carries no
``event_id`` (the SDK's model has none), content parts are typed ``audio``/``text`` while item contents
are ``output_audio``/``output_text``.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Literal

from switchboard.emulator.ids import new_id

ResponseStatus = Literal["completed", "cancelled", "incomplete", "failed"]


def server_event(type_: str, **fields: Any) -> dict[str, Any]:
    """A server event with a fresh ``event_id``."""
    return {"type": type_, "event_id": new_id("event"), **fields}


def chunks(text: str, words_per_chunk: int = 2) -> list[str]:
    """Split `text` into streaming deltas (a few words each, whitespace kept, so they concatenate back)."""
    words = re.findall(r"\s*\S+", text)
    return ["".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)] or [""]


def tokens(text: str) -> int:
    """A rough token count (about four characters a token), for usage figures."""
    return max(1, math.ceil(len(text) / 4))


def session_created(session: dict[str, Any]) -> dict[str, Any]:
    return server_event("session.created", session=session)


def session_updated(session: dict[str, Any]) -> dict[str, Any]:
    return server_event("session.updated", session=session)


def error(
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
    type_: str = "invalid_request_error",
) -> dict[str, Any]:
    """An ``error`` server event; `client_event_id` names the client event that caused it."""
    return server_event(
        "error",
        error={"type": type_, "code": code, "message": message, "param": param, "event_id": client_event_id},
    )


def user_audio_item(item_id: str, status: str = "completed") -> dict[str, Any]:
    """The user message an input audio turn becomes (transcript filled later by transcription events)."""
    return {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": status,
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def speech_started(item_id: str, audio_start_ms: int) -> dict[str, Any]:
    return server_event("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id)


def speech_stopped(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return server_event("input_audio_buffer.speech_stopped", audio_end_ms=audio_end_ms, item_id=item_id)


def committed(item_id: str, previous_item_id: str | None) -> dict[str, Any]:
    return server_event("input_audio_buffer.committed", previous_item_id=previous_item_id, item_id=item_id)


def item_added(item: dict[str, Any], previous_item_id: str | None) -> dict[str, Any]:
    return server_event("conversation.item.added", previous_item_id=previous_item_id, item=item)


def item_done(item: dict[str, Any], previous_item_id: str | None) -> dict[str, Any]:
    return server_event("conversation.item.done", previous_item_id=previous_item_id, item=item)


def transcription_delta(item_id: str, delta: str) -> dict[str, Any]:
    return server_event(
        "conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=delta
    )


def transcription_completed(item_id: str, transcript: str) -> dict[str, Any]:
    audio_tokens = tokens(transcript) * 3
    text_tokens = tokens(transcript)
    return server_event(
        "conversation.item.input_audio_transcription.completed",
        item_id=item_id,
        content_index=0,
        transcript=transcript,
        usage={
            "type": "tokens",
            "total_tokens": audio_tokens + text_tokens,
            "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": text_tokens,
        },
    )


def dtmf_received(digit: str) -> dict[str, Any]:
    """A keypad press on the SIP leg. The SDK's model has no ``event_id`` for this event, so neither do we."""
    return {"type": "input_audio_buffer.dtmf_event_received", "event": digit, "received_at": int(time.time())}


def input_audio_buffer_cleared() -> dict[str, Any]:
    return server_event("input_audio_buffer.cleared")


def output_audio_buffer_cleared(response_id: str) -> dict[str, Any]:
    return server_event("output_audio_buffer.cleared", response_id=response_id)


def item_deleted(item_id: str) -> dict[str, Any]:
    return server_event("conversation.item.deleted", item_id=item_id)


def item_retrieved(item: dict[str, Any]) -> dict[str, Any]:
    return server_event("conversation.item.retrieved", item=item)


def item_truncated(item_id: str, content_index: int, audio_end_ms: int) -> dict[str, Any]:
    return server_event(
        "conversation.item.truncated", item_id=item_id, content_index=content_index, audio_end_ms=audio_end_ms
    )


class ResponseBuilder:
    """The events of one model response, built step by step; `output` holds its items so far."""

    def __init__(
        self,
        *,
        conversation_id: str,
        session: dict[str, Any],
        previous_item_id: str | None,
        output_modalities: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.response_id = new_id("resp")
        self.conversation_id = conversation_id
        self.previous_item_id = previous_item_id
        self.modalities = output_modalities or list(session.get("output_modalities") or ["audio"])
        audio_out = (session.get("audio") or {}).get("output") or {}
        self._audio = {"output": {"format": audio_out.get("format"), "voice": audio_out.get("voice")}}
        self._max_output_tokens = session.get("max_output_tokens", "inf")
        self._metadata = metadata
        self.output: list[dict[str, Any]] = []
        self._item: dict[str, Any] | None = None
        self._text = ""
        self._arguments = ""
        self._output_tokens = 0

    @property
    def audio(self) -> bool:
        """Spoken (audio + transcript) rather than text-only."""
        return "audio" in self.modalities

    @property
    def item_id(self) -> str:
        assert self._item is not None, "no item started"
        return str(self._item["id"])

    @property
    def call_id(self) -> str:
        assert self._item is not None and self._item["type"] == "function_call", "no function call started"
        return str(self._item["call_id"])

    def _response(self, status: str, status_details: dict[str, Any] | None, usage: Any) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.response_id,
            "status": status,
            "status_details": status_details,
            "output": [dict(item) for item in self.output],
            "conversation_id": self.conversation_id,
            "output_modalities": self.modalities,
            "max_output_tokens": self._max_output_tokens,
            "audio": self._audio,
            "usage": usage,
            "metadata": self._metadata,
        }

    def created(self) -> dict[str, Any]:
        return server_event("response.created", response=self._response("in_progress", None, None))

    def _where(self) -> dict[str, Any]:
        return {"response_id": self.response_id, "item_id": self.item_id, "output_index": len(self.output)}

    # A spoken (or text) message.

    def message_added(self) -> list[dict[str, Any]]:
        """conversation.item.added → response.output_item.added → response.content_part.added."""
        self._item = {
            "id": new_id("item"),
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self._text = ""
        part_type = "audio" if self.audio else "text"
        part: dict[str, Any] = {"type": part_type, "transcript": ""} if self.audio else {"type": "text", "text": ""}
        return [
            item_added(dict(self._item), self.previous_item_id),
            server_event(
                "response.output_item.added",
                response_id=self.response_id,
                output_index=len(self.output),
                item=dict(self._item),
            ),
            server_event("response.content_part.added", **self._where(), content_index=0, part=part),
        ]

    def text_delta(self, delta: str) -> dict[str, Any]:
        """One ``response.output_audio_transcript.delta`` (or ``output_text.delta`` for text responses)."""
        self._text += delta
        kind = "response.output_audio_transcript.delta" if self.audio else "response.output_text.delta"
        return server_event(kind, **self._where(), content_index=0, delta=delta)

    def _message_item(self, status: str) -> dict[str, Any]:
        assert self._item is not None
        content = (
            {"type": "output_audio", "transcript": self._text}
            if self.audio
            else {"type": "output_text", "text": self._text}
        )
        return {**self._item, "status": status, "content": [content]}

    def message_done(self, status: str = "completed") -> list[dict[str, Any]]:
        """transcript/text done → content_part.done → output_item.done → conversation.item.done."""
        where = self._where()
        item = self._message_item(status)
        if self.audio:
            text_done = server_event(
                "response.output_audio_transcript.done", **where, content_index=0, transcript=self._text
            )
            part = {"type": "audio", "transcript": self._text}
        else:
            text_done = server_event("response.output_text.done", **where, content_index=0, text=self._text)
            part = {"type": "text", "text": self._text}
        events = [
            text_done,
            server_event("response.content_part.done", **where, content_index=0, part=part),
            server_event(
                "response.output_item.done", response_id=self.response_id, output_index=where["output_index"], item=item
            ),
            item_done(item, self.previous_item_id),
        ]
        self._output_tokens += tokens(self._text)
        self._finish_item(item)
        return events

    # A function call.

    def function_call_added(self, name: str) -> list[dict[str, Any]]:
        """conversation.item.added → response.output_item.added, for a ``function_call`` item."""
        self._item = {
            "id": new_id("item"),
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": name,
            "call_id": new_id("call", 8),
            "arguments": "",
        }
        self._arguments = ""
        return [
            item_added(dict(self._item), self.previous_item_id),
            server_event(
                "response.output_item.added",
                response_id=self.response_id,
                output_index=len(self.output),
                item=dict(self._item),
            ),
        ]

    def arguments_delta(self, delta: str) -> dict[str, Any]:
        self._arguments += delta
        return server_event(
            "response.function_call_arguments.delta", **self._where(), call_id=self.call_id, delta=delta
        )

    def function_call_done(self, status: str = "completed") -> list[dict[str, Any]]:
        """arguments.done → output_item.done → conversation.item.done."""
        assert self._item is not None
        where = self._where()
        item = {**self._item, "status": status, "arguments": self._arguments}
        events = [
            server_event(
                "response.function_call_arguments.done",
                **where,
                call_id=self.call_id,
                name=item["name"],
                arguments=self._arguments,
            ),
            server_event(
                "response.output_item.done", response_id=self.response_id, output_index=where["output_index"], item=item
            ),
            item_done(item, self.previous_item_id),
        ]
        self._output_tokens += tokens(self._arguments)
        self._finish_item(item)
        return events

    def _finish_item(self, item: dict[str, Any]) -> None:
        self.output.append(item)
        self.previous_item_id = str(item["id"])
        self._item = None

    def partial_item(self) -> dict[str, Any] | None:
        """The item in progress, marked incomplete (what a cancelled response reports)."""
        if self._item is None:
            return None
        if self._item["type"] == "message":
            return self._message_item("incomplete")
        return {**self._item, "status": "incomplete", "arguments": self._arguments}

    def done(self, status: ResponseStatus = "completed", reason: str | None = None) -> dict[str, Any]:
        """``response.done`` with the output so far and usage; `reason` for cancelled/incomplete."""
        if (partial := self.partial_item()) is not None:
            self.output.append(partial)
            self._item = None
        input_tokens = 120 + 20 * len(self.output)
        audio_out = self._output_tokens * 4 if self.audio else 0
        usage = {
            "total_tokens": input_tokens + self._output_tokens + audio_out,
            "input_tokens": input_tokens,
            "output_tokens": self._output_tokens + audio_out,
            "input_token_details": {
                "text_tokens": input_tokens,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": 0,
                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": self._output_tokens, "audio_tokens": audio_out},
        }
        details = None if status == "completed" else {"type": status, "reason": reason}
        return server_event("response.done", response=self._response(status, details, usage))
