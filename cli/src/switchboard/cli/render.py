"""Readable, optionally coloured, one-line renderings of call events (for `tail` and `demo`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

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
    "policy": "\033[35m",
}

# Streaming fragments: shown by `--deltas`, hidden otherwise (the `.done` events carry the text).
NOISY_SUFFIXES = (".delta",)

# The realtime events worth a line in the readable view (`demo`, and `tail`/`replay` without `--all`);
# every Switchboard event is shown too. A function call is shown as its `tool.requested`.
HIGHLIGHTS = frozenset(
    {
        "rt.session.created",
        "rt.input_audio_buffer.speech_started",
        "rt.conversation.item.input_audio_transcription.completed",
        "rt.response.output_audio_transcript.done",
        "rt.input_audio_buffer.dtmf_event_received",
        "rt.error",
        # Live (whose transcripts come only as .delta fragments: `transcript` folds them into turns)
        "rt.session.started",
        "rt.session.closed",
        "rt.transport.dtmf.received",
        "rt.session.delegation.created",
        *("rt.session.input_transcript", "rt.session.output_transcript"),  # Live's turns, folded by `LiveTurns`
    }
)


def _sip_user(headers: Any, name: str) -> str:
    """The number in the first SIP header called `name`, or ``?`` when it is missing or holds none."""
    for h in headers if isinstance(headers, list) else []:
        if isinstance(h, dict) and str(h.get("name", "")).lower() == name:
            return user_part(str(h.get("value", ""))) or "?"
    return "?"


def _clip(text: str, limit: int = 120) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _command(verb: str, d: dict[str, Any]) -> tuple[str, str]:
    """A served command: what was asked, then ``ok`` or ``failed: <error>``, and who served it."""
    command = d.get("command")
    asked: dict[str, Any] = command if isinstance(command, dict) else {}
    detail = {
        "say": f' "{_clip(str(asked.get("instructions", "")), 80)}"',
        "send": f" {asked.get('type', '?')}",
        "refer": f" to {asked.get('target_uri', '?')}",
    }.get(verb, "")
    by = f" (by {d['served_by']})" if d.get("served_by") else ""
    if d.get("ok"):
        return "accepted", f"{verb}{detail} ok{by}"
    return "failed", f"{verb}{detail} failed: {d.get('error') or 'no reason given'}{by}"


def _policy(kind: str, d: dict[str, Any]) -> tuple[str, str]:
    replica = f" on {d.get('replica')}" if d.get("replica") else ""
    if kind == "_policy.reloaded":
        return "policy", (f"policy {d.get('version')} in force{replica}: {d.get('rules')} rules, "
                          f"{d.get('agents')} agents, from {d.get('origin')}")  # fmt: skip
    listed = d.get("problems")
    problems: list[Any] = listed if isinstance(listed, list) else []
    return "failed", (f"policy {d.get('version') or '?'} from {d.get('origin')} refused{replica}, "
                      f"{d.get('kept')} kept: {'; '.join(map(str, problems)) or 'no reason given'}")  # fmt: skip


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
    if kind.startswith("command."):
        return _command(kind.split(".", 1)[1], d)
    if kind == "tool.requested":
        return "agent", f"agent calls {d.get('name')}({_clip(str(d.get('arguments', '')))})"
    if kind == "tool.completed":
        took = f"{d.get('name')} {{}} in {d.get('latency_ms')} ms"
        if d.get("error"):
            return "failed", f"{took.format('failed')}: {d.get('error')}"
        return "agent", f"{took.format('answered')}: {_clip(str(d.get('output', '')))}"
    if event.call_id == "_policy":
        return _policy(f"_policy.{kind}", d)
    if kind.startswith("session."):
        extra = f" ({d['reason']})" if d.get("reason") else ""
        return "session", f"{kind.split('.', 1)[1]} by {d.get('worker')} attempt {d.get('attempt')}{extra}"
    if kind == "rt.conversation.item.input_audio_transcription.completed":
        return "caller", f'caller: "{d.get("transcript", "")}"'
    if kind == "rt.response.output_audio_transcript.done":
        return "agent", f'agent: "{d.get("transcript", "")}"'
    if kind == "rt.input_audio_buffer.speech_started":
        return "caller", "caller starts speaking"
    if kind == "rt.session.closed":
        return "session", f"Live session closed ({d.get('reason')})"
    if kind in _LIVE_FRAGMENTS:
        speaker = _LIVE_FRAGMENTS[kind]
        return speaker, f'{speaker}: "…{d.get("delta", "")}"'
    if kind in _LIVE_TURNS:
        speaker = _LIVE_TURNS[kind]
        return speaker, f'{speaker}: "{d.get("transcript", "")}"'
    if kind in ("rt.input_audio_buffer.dtmf_event_received", "rt.transport.dtmf.received"):
        return "caller", f"caller pressed {d.get('event')}"
    if kind == "rt.error":
        return "failed", f"OpenAI error: {(d.get('error') or {}).get('message')}"
    if kind == "rt.response.function_call_arguments.done":
        return "agent", f"agent calls {d.get('name')}({d.get('arguments')})"
    if kind.startswith("rt."):
        return "rt", kind[3:]
    return "rt", kind


def clock(timestamp: str) -> str:
    """The time of day of an RFC 3339 timestamp in UTC, with its zone: ``09:00:31.000Z``."""
    if len(timestamp) == 24 and timestamp.endswith("Z"):  # what Switchboard writes: the fast path
        return timestamp[11:]
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    if moment.tzinfo is None:
        return timestamp
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:12] + "Z"


def render(event: CloudEvent, *, colour: bool) -> str:
    key, text = summary(event)
    line = f"{clock(event.time)}  {event.call_id[:16]:<16}  {event.kind:<44}  {text}"
    if colour:
        return f"{_COLOURS.get(key, '')}{line}{_RESET}"
    return line


def highlight(event: CloudEvent) -> bool:
    """Whether the readable view (the demo's live view, `tail` and `replay` by default) shows this event."""
    return not event.kind.startswith("rt.") or event.kind in HIGHLIGHTS


def shown(event: CloudEvent, *, every: bool, deltas: bool) -> bool:
    """Whether a timeline shows this event: the readable view, or with `every` every event; streaming
    ``.delta`` fragments only with `deltas`."""
    if event.kind.endswith(NOISY_SUFFIXES):
        return deltas
    return every or highlight(event)


_LIVE_FRAGMENTS = {"rt.session.input_transcript.delta": "caller", "rt.session.output_transcript.delta": "agent"}
_LIVE_TURNS = {kind.removesuffix(".delta"): speaker for kind, speaker in _LIVE_FRAGMENTS.items()}


class LiveTurns:
    """Live's transcript comes only as fragments: for the readable view, each run of one speaker's fragments
    becomes one line (``rt.session.output_transcript``, at the first fragment's time), written out when the
    other speaker or any other event of the call comes, or at `flush`. Pure."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[CloudEvent, list[str]]] = {}

    def feed(self, event: CloudEvent) -> list[CloudEvent]:
        """The events to show for `event`, in order: the turn it completes (if any), then the event itself
        unless it is a fragment (which is held)."""
        call_id, kind = event.call_id, event.kind
        held = self._open.get(call_id)
        if kind in _LIVE_FRAGMENTS:
            delta = event.data.get("delta") if isinstance(event.data, dict) else None
            if held is not None and held[0].kind == kind:
                held[1].append(delta if isinstance(delta, str) else "")
                return []
            done = self._close(call_id)
            self._open[call_id] = (event, [delta if isinstance(delta, str) else ""])
            return done
        return [*self._close(call_id), event]

    def flush(self) -> list[CloudEvent]:
        """Every turn still held (at the end of a replay)."""
        return [turn for call_id in list(self._open) for turn in self._close(call_id)]

    def _close(self, call_id: str) -> list[CloudEvent]:
        held = self._open.pop(call_id, None)
        if held is None:
            return []
        first, parts = held
        kind = first.kind.removesuffix(".delta")
        return [msgspec.structs.replace(first, type="realtime." + kind[3:], data={"transcript": "".join(parts)})]
