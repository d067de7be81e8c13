"""Readable, optionally coloured, one-line renderings of call events (for `tail` and `demo`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from switchboard.shared.events import CloudEvent
from switchboard.shared.sip import user_part

_RESET = "\033[0m"
_COLOURS = {
    "incoming": "\033[36m",  # cyan
    "decided": "\033[35m",  # magenta
    "accepted": "\033[32m",  # green
    "rejected": "\033[33m",  # yellow
    "referred": "\033[33m",
    "failed": "\033[31m",  # red
    "ended": "\033[1m",  # bold
    "session": "\033[34m",  # blue
    "caller": "\033[96m",
    "agent": "\033[92m",
    "rt": "\033[2m",  # dim
}

# Streaming fragments: shown by `tail --deltas`, hidden otherwise (the `.done` events carry the text).
NOISY_SUFFIXES = (".delta",)

# The realtime events worth a line in the demo's live view; every Switchboard event is shown too.
HIGHLIGHTS = frozenset(
    {
        "rt.session.created",
        "rt.input_audio_buffer.speech_started",
        "rt.conversation.item.input_audio_transcription.completed",
        "rt.response.output_audio_transcript.done",
        "rt.response.function_call_arguments.done",
        "rt.input_audio_buffer.dtmf_event_received",
        "rt.error",
    }
)


def _sip_user(headers: Any, name: str) -> str:
    """The number in the first SIP header called `name`, or ``?`` when it is missing or holds none."""
    for h in headers if isinstance(headers, list) else []:
        if isinstance(h, dict) and str(h.get("name", "")).lower() == name:
            return user_part(str(h.get("value", ""))) or "?"
    return "?"


def summary(event: CloudEvent) -> tuple[str, str]:
    """(colour key, text) describing what the event says, for people."""
    kind, d = event.kind, event.data if isinstance(event.data, dict) else {}
    if kind == "incoming":
        inner = d.get("data", {})
        headers = inner.get("sip_headers", []) if isinstance(inner, dict) else []
        return "incoming", f"call from {_sip_user(headers, 'from')} to {_sip_user(headers, 'to')}"
    if kind == "decided":
        detail = {
            "accept": f"agent {d.get('agent')}",
            "reject": f"status {d.get('status_code')}",
            "refer": f"to {d.get('target_uri')}",
        }.get(str(d.get("action")), "")
        return "decided", f"{d.get('action')} by rule {d.get('rule')} ({detail}) — {d.get('reason', '')}"
    if kind in ("accepted", "rejected", "referred", "hungup"):
        return kind, f"OpenAI answered {d.get('http_status')} in {d.get('latency_ms')} ms"
    if kind == "failed":
        return "failed", f"{d.get('stage')} failed: {d.get('code') or d.get('message')}"
    if kind == "ended":
        return "ended", f"call ended ({d.get('reason')}) after {d.get('duration_s')} s"
    if kind.startswith("session."):
        extra = f" ({d['reason']})" if d.get("reason") else ""
        return "session", f"{kind.split('.', 1)[1]} by {d.get('worker')} attempt {d.get('attempt')}{extra}"
    if kind == "rt.conversation.item.input_audio_transcription.completed":
        return "caller", f'caller: "{d.get("transcript", "")}"'
    if kind == "rt.response.output_audio_transcript.done":
        return "agent", f'agent: "{d.get("transcript", "")}"'
    if kind == "rt.input_audio_buffer.speech_started":
        return "caller", "caller starts speaking"
    if kind == "rt.input_audio_buffer.dtmf_event_received":
        return "caller", f"caller pressed {d.get('event')}"
    if kind == "rt.error":
        return "failed", f"OpenAI error: {(d.get('error') or {}).get('message')}"
    if kind == "rt.response.function_call_arguments.done":
        return "agent", f"agent calls {d.get('name')}({d.get('arguments')})"
    if kind.startswith("rt."):
        return "rt", kind[3:]
    return "rt", kind


def render(event: CloudEvent, *, colour: bool) -> str:
    key, text = summary(event)
    clock = event.time[11:23] if len(event.time) >= 23 else event.time
    line = f"{clock}  {event.call_id[:16]:<16}  {event.kind:<44}  {text}"
    if colour:
        return f"{_COLOURS.get(key, '')}{line}{_RESET}"
    return line


def wanted(event: CloudEvent, *, call: str | None, kinds: Sequence[str], deltas: bool) -> bool:
    """Whether `tail` shows this event: call id filter, kind globs (``rt.*``, ``ended``), noise."""
    if call is not None and event.call_id != call:
        return False
    if kinds and not any(fnmatch.fnmatchcase(event.kind, k) for k in kinds):
        return False
    return deltas or not event.kind.endswith(NOISY_SUFFIXES)


def highlight(event: CloudEvent) -> bool:
    """Whether the demo's live view shows this event."""
    return not event.kind.startswith("rt.") or event.kind in HIGHLIGHTS
