"""The console's read model, pure (no I/O): what the pages show, folded from the log.

`Board` holds every call's `CallState` and `CallRecord` (the shared projections' own evolve functions,
so the console shows what `switchboard calls` shows) and each decision's reason; `apply(event)` folds one
event and says whether the call's row changed. `entry` turns an event into a line of a call's timeline,
`turn` into a transcript turn; `recent` filters and pages the call records; `charts` computes calls per
minute and answer latency p50/p95 over the last hour. Audio and transcript deltas are not among
`KINDS`: the console never reads them, a transcript turn appears once it is complete.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from switchboard.shared.projections import call_record, call_state, transcript
from switchboard.shared.projections._facts import field
from switchboard.shared.projections.call_record import CallRecord
from switchboard.shared.projections.call_state import CallState
from switchboard.shared.projections.transcript import AGENT_KINDS, CALLER_KINDS, LIVE_KINDS, Transcript
from switchboard.shared.schema import LogEvent

KINDS = (
    "incoming", "decided", "accepted", "rejected", "referred", "hungup", "failed", "ended",
    "session.*", "command.*", "tool.*", "refer.*", "rt.error", *sorted(CALLER_KINDS), *sorted(AGENT_KINDS),
    *sorted(LIVE_KINDS),
)  # fmt: skip
"""The kinds the console reads (server-side subject filters): no `rt.*` but the finished turns, Live's
transcript fragments (which a call's page folds into turns) and errors."""

OUTCOMES = ("answered", "transferred", "referred", "rejected", "failed", "missed")


def stamp(at: datetime) -> str:
    """`at` written as the log writes times (``2026-11-24T10:00:00.123Z``), so the two compare as text."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


class Board:
    """Every call's state and record, and the reasons of their decisions: live calls always, ended calls up
    to `keep_ended` (the ones that ended first are forgotten first)."""

    def __init__(self, *, keep_ended: int = 100_000) -> None:
        self.states: dict[str, CallState] = {}
        self.records: dict[str, CallRecord] = {}
        self.reasons: dict[str, str] = {}
        self.live_transcripts: dict[str, Transcript] = {}  # Live calls' fragments so far, until the call ends
        self.last_seq = 0
        self._keep_ended = keep_ended
        self._ended: deque[str] = deque()

    def load(self, states: Mapping[str, CallState], records: Mapping[str, CallRecord]) -> None:
        """Start from stored projections (events at or below each state's `last_seq` then change nothing)."""
        self.states.update(states)
        self.records.update(records)
        ended = sorted((s for s in states.values() if s.phase == "ended"), key=lambda s: s.ended_at or "")
        self._ended.extend(s.call_id for s in ended)
        self._forget()

    def completed_turn(self, event: LogEvent) -> Turn | None:
        """The Live turn `event` completes: the one before a fragment of the other speaker, or the last one
        when the call ends (Live sends fragments only, never a finished turn). None for anything else."""
        call_id = event.call_id
        if event.kind in LIVE_KINDS:
            before = self.live_transcripts.get(call_id)
            after = transcript.evolve(before, event)
            if after is None:
                return None
            self.live_transcripts[call_id] = after
            if before is not None and before.turns and len(after.turns) > len(before.turns):
                return _turn_of(before.turns[-1], event.seq)
            return None
        if event.kind == "ended" and call_id in self.live_transcripts:
            turns = self.live_transcripts.pop(call_id).turns
            return _turn_of(turns[-1], event.seq) if turns else None
        return None

    def apply(self, event: LogEvent) -> CallState | None:
        """Fold `event` in; the call's new state when its row in the live table changes, else None."""
        self.last_seq = max(self.last_seq, event.seq)
        if not event.call_id or event.call_id.startswith("_"):
            return None
        if event.kind == "decided":
            reason = field(event.data, "reason")
            if isinstance(reason, str):
                self.reasons[event.call_id] = reason
        old_record = self.records.get(event.call_id)
        record = call_record.evolve(old_record, event)
        if record is not None and record is not old_record:
            self.records[event.call_id] = record
        old = self.states.get(event.call_id)
        new = call_state.evolve(old, event)
        if new is None or new is old:
            return None
        self.states[event.call_id] = new
        if new.phase == "ended" and (old is None or old.phase != "ended"):
            self._ended.append(event.call_id)
            self._forget()
        return new

    def _forget(self) -> None:
        while len(self._ended) > self._keep_ended:
            call_id = self._ended.popleft()
            self.states.pop(call_id, None)
            self.records.pop(call_id, None)
            self.reasons.pop(call_id, None)
            self.live_transcripts.pop(call_id, None)

    def live(self, *, now: datetime, keep_ended_s: float = 30.0) -> list[CallState]:
        """Calls not ended, and those that ended in the last `keep_ended_s`, newest first."""
        cutoff = stamp(now - timedelta(seconds=keep_ended_s))
        rows = [s for s in self.states.values() if s.phase != "ended" or (s.ended_at or "") >= cutoff]
        return sorted(rows, key=lambda s: s.ringing_at or s.updated_at or "", reverse=True)


# --- a call's timeline and transcript -----------------------------------------------------------------


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a call's timeline."""

    seq: int
    at: str
    kind: str
    title: str
    detail: str = ""
    tone: str = "info"
    """``info``, ``good``, ``warn`` or ``bad``: how the line is coloured."""


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: str
    speaker: str
    text: str


def _turn_of(turn: transcript.Turn, seq: int) -> Turn:
    """A folded turn as the page shows it, sent under the stream sequence of the event that completed it."""
    return Turn(seq=seq, at=turn.at, speaker=turn.speaker, text=turn.text)


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def entry(event: LogEvent) -> Entry | None:
    """The timeline line for `event`, or None for events the timeline leaves out (transcript turns)."""
    kind, d = event.kind, event.data
    if kind in CALLER_KINDS or kind in AGENT_KINDS or kind in LIVE_KINDS:
        return None
    title, detail, tone = kind, "", "info"
    if kind == "incoming":
        state = call_state.evolve(None, event)
        title = "incoming"
        detail = f"from {_s(state.caller if state else None) or '?'} to {_s(state.dialled if state else None) or '?'}"
    elif kind == "decided":
        action = _s(field(event.data, "action"))
        target = {"accept": f"agent {_s(field(d, 'agent'))}", "reject": f"status {_s(field(d, 'status_code'))}",
                  "refer": f"to {_s(field(d, 'target_uri'))}"}.get(action, "")  # fmt: skip
        title = f"decided: {action}"
        detail = f"rule {_s(field(d, 'rule'))} ({target}) — {_s(field(d, 'reason'))}"
        if field(d, "capacity_full"):
            detail += " [capacity full]"
    elif kind in ("accepted", "rejected", "referred", "hungup"):
        detail = f"OpenAI answered {_s(field(d, 'http_status'))} in {_s(field(d, 'latency_ms'))} ms"
        if kind == "referred":
            detail += f" (to {_s(field(d, 'target_uri'))})"
        tone = "good" if kind == "accepted" else "warn"
    elif kind == "failed":
        detail, tone = f"{_s(field(d, 'stage'))}: {_s(field(d, 'code') or field(d, 'message'))}", "bad"
    elif kind.startswith("session."):
        what = kind.split(".", 1)[1]
        title = {"claimed": "claimed", "lost": "failover: lease lost", "released": "released"}.get(what, kind)
        detail = f"{_s(field(d, 'worker'))} (attempt {_s(field(d, 'attempt'))})"
        if field(d, "reason"):
            detail += f": {_s(field(d, 'reason'))}"
        tone = "warn" if what in ("lost", "released") else "info"
    elif kind.startswith("command."):
        verb = _s(field(d, "verb")) or kind.split(".", 1)[1]
        title = f"command: {verb}"
        body = field(d, "command")
        shown = ", ".join(f"{k}={v}" for k, v in body.items()) if isinstance(body, dict) else ""
        who = _s(field(d, "operator")) or "unknown"
        outcome = "ok" if field(d, "ok") else f"refused: {_s(field(d, 'error'))}"
        detail = f"by {who}{f' ({shown})' if shown else ''}: {outcome}"
        tone = "warn" if field(d, "ok") else "bad"
    elif kind == "tool.requested":
        title = f"tool: {_s(field(d, 'name'))}"
        detail = f"arguments {_s(field(d, 'arguments'))}"
    elif kind == "tool.completed":
        title = f"tool done: {_s(field(d, 'name'))}"
        error = field(d, "error")
        detail = f"output {_s(field(d, 'output'))} in {_s(field(d, 'latency_ms'))} ms"
        if error:
            detail, tone = f"error {error} in {_s(field(d, 'latency_ms'))} ms", "bad"
        else:
            tone = "good"
    elif kind == "refer.suspected_failed":
        detail, tone = f"still up {_s(field(d, 'waited_s'))} s after the refer to {_s(field(d, 'target_uri'))}", "bad"
    elif kind == "rt.error":
        error = field(d, "error")
        detail, tone = _s(error.get("message") if isinstance(error, dict) else error), "bad"
    elif kind == "ended":
        title, detail, tone = "ended", f"{_s(field(d, 'reason'))} after {_s(field(d, 'duration_s'))} s", "bad"
    return Entry(seq=event.seq, at=event.time, kind=kind, title=title, detail=detail, tone=tone)


def turn(event: LogEvent) -> Turn | None:
    """The transcript turn `event` completes (caller or agent), or None."""
    if event.kind not in CALLER_KINDS and event.kind not in AGENT_KINDS:
        return None
    text = field(event.data, "transcript")
    if text is None:
        text = field(event.data, "text")
    if not isinstance(text, str) or not text:
        return None
    speaker = "caller" if event.kind in CALLER_KINDS else "agent"
    return Turn(seq=event.seq, at=event.time, speaker=speaker, text=text)


# --- recent calls ---------------------------------------------------------------------------------------


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    since: str | None = None
    """An RFC 3339 time: calls that started at or after it."""
    until: str | None = None
    number: str = ""
    """A part of the caller's or dialled number."""
    rule: str = ""
    outcome: str = ""


class Page(msgspec.Struct, frozen=True, kw_only=True):
    rows: tuple[CallRecord, ...]
    total: int
    page: int
    pages: int


def recent(records: Iterable[CallRecord], filters: Filters, *, page: int = 1, per_page: int = 50) -> Page:
    """The records matching `filters`, newest first, cut into pages of `per_page` (page 1 is the newest)."""

    def keep(r: CallRecord) -> bool:
        started = r.started_at or ""
        if filters.since and started < filters.since:
            return False
        if filters.until and started >= filters.until:
            return False
        if filters.number and filters.number not in f"{r.caller or ''} {r.dialled or ''}":
            return False
        if filters.rule and r.rule != filters.rule:
            return False
        return not filters.outcome or (r.outcome or "") == filters.outcome

    rows = sorted((r for r in records if keep(r)), key=lambda r: r.started_at or "", reverse=True)
    pages = max(1, math.ceil(len(rows) / per_page))
    page = min(max(page, 1), pages)
    return Page(rows=tuple(rows[(page - 1) * per_page : page * per_page]), total=len(rows), page=page, pages=pages)


# --- charts ----------------------------------------------------------------------------------------------


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def charts(records: Iterable[CallRecord], *, now: datetime, minutes: int = 60) -> dict[str, list[Any]]:
    """Per minute of the last hour (oldest first): its start (Unix seconds), the calls that came in, and the
    p50 and p95 answer latency (ms) of the calls answered in it (None when none was)."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes)
    counts = [0] * minutes
    latencies: list[list[float]] = [[] for _ in range(minutes)]
    for r in records:
        if not r.started_at:
            continue
        try:
            at = datetime.fromisoformat(r.started_at)
        except ValueError:
            continue
        if at.tzinfo is None or not start <= at < end:
            continue
        i = int((at - start).total_seconds() // 60)
        counts[i] += 1
        if r.answer_latency_ms is not None:
            latencies[i].append(r.answer_latency_ms)
    p50: list[float | None] = []
    p95: list[float | None] = []
    for values in latencies:
        values.sort()
        p50.append(_percentile(values, 0.5) if values else None)
        p95.append(_percentile(values, 0.95) if values else None)
    times = [int((start + timedelta(minutes=i)).timestamp()) for i in range(minutes)]
    return {"t": times, "calls": list(counts), "p50": p50, "p95": p95}
