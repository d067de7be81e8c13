"""The log's command line: `tail`, `replay`, `calls`, `transcript` and the `projector` service.

`tail` and `replay` read through one path, `shared.subscribe` (live follow / bounded replay); `calls` and
`transcript` read the projections in NATS KV that the projector keeps (`transcript` folds the call's
events itself when the projector has not stored that call).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from switchboard.cli.args import parse_kind, parse_when
from switchboard.cli.live import resolve_call
from switchboard.cli.render import LiveTurns, clock, render, shown
from switchboard.shared import events
from switchboard.shared.bus import ONE_SHOT_CONNECT_S, Bus
from switchboard.shared.config import Settings
from switchboard.shared.errors import ConfigError
from switchboard.shared.projections import CALL_RECORDS, CALL_STATE, TRANSCRIPTS, fold
from switchboard.shared.projections.call_record import CallRecord
from switchboard.shared.projections.call_state import CallState
from switchboard.shared.projections.transcript import Transcript
from switchboard.shared.schema import LogEvent, from_stored
from switchboard.shared.subscribe import Selection, follow, replay, replay_stored

COMMANDS = ("replay", "calls", "transcript")

_PROGRESS_MIN_EVENTS = 20_000


def add_parsers(sub: Any) -> None:
    """Add `replay`, `calls`, `transcript` and `projector` to the `switchboard` command."""
    rp = sub.add_parser("replay", help="print or export stored call events; rebuild the projections")
    rp.add_argument("--call", help="only this call id (reads only its events)")
    rp.add_argument(
        "--kind", action="append", default=[], type=parse_kind, help="only these kinds (globs: rt.*, ended)"
    )
    rp.add_argument("--since", type=parse_when, help="from this time, or this long ago (15m, 2h)")
    rp.add_argument("--until", type=parse_when, help="up to this time, or this long ago")
    add_view_flags(rp, json_help="JSONL: every selected event's envelope exactly as stored")
    rp.add_argument("--rebuild", action="store_true", help="recompute call_state, call_records, transcripts")
    rp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar on stderr (default: on a terminal, for long replays)")  # fmt: skip

    calls = sub.add_parser("calls", help="live and recent calls: state, rule, outcome, duration")
    calls.add_argument("--limit", type=int, default=20, help="how many calls, newest first (20)")
    calls.add_argument("--live", action="store_true", help="only calls not ended yet")
    calls.add_argument("--json", action="store_true", help="one JSON object per call: state and record")

    tr = sub.add_parser("transcript", help="a call's caller and agent turns, in order")
    tr.add_argument("call_id", metavar="CALL_ID")
    tr.add_argument("--json", action="store_true", help="the transcript as JSON")

    sub.add_parser("projector", help="keep the projections in NATS KV up to date (also `switchboard-projector`)")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    bus = await Bus.connect(settings.require_nats_url(), name=args.command, give_up_after_s=ONE_SHOT_CONNECT_S)
    try:
        if args.command == "replay":
            return await _replay(bus, settings, args)
        # Reading may create the buckets (no projector ran yet): with the projector's retention.
        ttl_s = settings.stream_max_age_s
        if args.command == "calls":
            return await _calls(bus, args, ttl_s)
        return await _transcript(bus, args, ttl_s)
    finally:
        await bus.close()


# --- tail ---------------------------------------------------------------------------------------------


def add_view_flags(parser: argparse.ArgumentParser, *, json_help: str) -> None:
    """`--all`, `--deltas` and `--json`: how much of the selected events `tail` and `replay` print."""
    parser.add_argument("--all", action="store_true",
                        help="every event, not just the readable view (the demo's: Switchboard's own events, "
                             "speech, transcripts, errors); an explicit --kind shows every match too")  # fmt: skip
    parser.add_argument("--deltas", action="store_true", help="also the streaming .delta events (implies --all)")
    parser.add_argument("--json", action="store_true", help=json_help)


def _every(args: argparse.Namespace) -> bool:
    """Whether the timeline shows every selected event rather than the readable view."""
    return bool(args.all or args.kind or args.deltas)


def _line(event: LogEvent, *, as_json: bool, colour: bool) -> str:
    if event.envelope is None:
        if as_json:
            return msgspec.json.encode({"seq": event.seq, "subject": event.subject, "data": event.data}).decode()
        return f"{'?':<12}  {event.call_id[:16]:<16}  {event.kind:<44}  unreadable event #{event.seq}: {event.problem}"
    if as_json:
        return events.encode(event.envelope).decode()
    return render(event.envelope, colour=colour)


def _timeline(event: LogEvent, turns: LiveTurns | None, *, every: bool, deltas: bool, colour: bool) -> list[str]:
    """The readable lines an event makes: none (filtered out, or a Live fragment held for its turn), the
    event's, and before it the Live turn it completes."""
    envelope = event.envelope
    if envelope is None:
        return [_line(event, as_json=False, colour=colour)]
    candidates = turns.feed(envelope) if turns is not None else [envelope]
    return [render(e, colour=colour) for e in candidates if shown(e, every=every, deltas=deltas)]


async def tail(settings: Settings, args: argparse.Namespace) -> None:
    """`switchboard tail`: follow events live (after `--since` or the whole log first)."""
    bus = await Bus.connect(settings.require_nats_url(), name="tail", give_up_after_s=ONE_SHOT_CONNECT_S)
    colour, every = sys.stdout.isatty(), _every(args)
    if args.call is not None:
        args.call = await resolve_call(bus, args.call, must_exist=False)
    try:
        selection = Selection(call=args.call, kinds=tuple(args.kind))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        turns = None if args.deltas else LiveTurns()
        async for event in follow(bus, selection, since=args.since, from_start=args.from_start):
            if args.json:
                print(_line(event, as_json=True, colour=colour), flush=True)
                continue
            for line in _timeline(event, turns, every=every, deltas=args.deltas, colour=colour):
                print(line, flush=True)
    finally:
        await bus.close()


# --- replay -------------------------------------------------------------------------------------------


class ProgressBar:
    """A one-line progress bar on a terminal: done/total, percent, rate."""

    def __init__(self, out: TextIO, label: str) -> None:
        self._out = out
        self._label = label
        self._started = time.monotonic()
        self._shown = 0.0

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._shown < 0.1 and done < total:
            return
        self._shown = now
        share = min(done / total, 1.0) if total else 1.0
        bar = "#" * int(share * 30)
        rate = done / max(now - self._started, 1e-6)
        self._out.write(f"\r{self._label} [{bar:<30}] {share:4.0%} {done:,}/{total:,} events {rate:,.0f}/s ")
        self._out.flush()

    def close(self) -> None:
        self._out.write("\n")
        self._out.flush()


def _progress(args: argparse.Namespace, total: int, label: str) -> ProgressBar | None:
    show = args.progress if args.progress is not None else (sys.stderr.isatty() and total >= _PROGRESS_MIN_EVENTS)
    return ProgressBar(sys.stderr, label) if show else None


async def _stream_span(bus: Bus) -> tuple[int, int, int]:
    """(first seq, last seq, messages) of the CALLS stream now."""
    info = await bus.js.stream_info(events.STREAM)
    return int(info.state.first_seq), int(info.state.last_seq), int(info.state.messages)


async def _replay(bus: Bus, settings: Settings, args: argparse.Namespace) -> int:
    if args.rebuild:
        return await _rebuild(bus, settings, args)
    if args.call is not None:
        args.call = await resolve_call(bus, args.call, must_exist=False)
    try:
        selection = Selection(call=args.call, kinds=tuple(args.kind))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.since and args.until and args.since > args.until:
        raise ConfigError("--since is after --until")
    first_seq, last_seq, stored = await _stream_span(bus)
    span = last_seq - first_seq + 1
    bar = _progress(args, stored if args.call is None else 0, "replay")
    colour, every = sys.stdout.isatty(), _every(args)
    out = sys.stdout.buffer if args.json else None
    turns = None if args.deltas else LiveTurns()
    try:
        async for batch in replay_stored(bus, selection, since=args.since, until=args.until, stop_seq=last_seq):
            if out is not None:
                out.write(b"".join(m.data + b"\n" for m in batch))
            else:
                lines = []
                for message in batch:
                    event = from_stored(message.seq, message.subject, message.data)
                    lines += _timeline(event, turns, every=every, deltas=args.deltas, colour=colour)
                if lines:
                    sys.stdout.write("\n".join(lines) + "\n")
            if bar is not None:  # how far through the stream, whatever the filters skip
                bar.update(batch[-1].seq - first_seq + 1, span)
    finally:
        if bar is not None:
            bar.close()
        if out is None and turns is not None:  # Live turns still open when the replay stopped
            held = [render(e, colour=colour) for e in turns.flush()]
            sys.stdout.write("".join(line + "\n" for line in held))
        sys.stdout.flush()
    return 0


async def _rebuild(bus: Bus, settings: Settings, args: argparse.Namespace) -> int:
    from switchboard.shared.projections.rebuild import rebuild

    if args.call or args.kind or args.since or args.until or args.json:
        raise ConfigError("--rebuild recomputes the projections from the whole log: it takes no filters")
    _, _, total = await _stream_span(bus)
    bar = _progress(args, total, "rebuild")
    started = time.monotonic()
    try:
        read = await rebuild(bus, ttl_s=settings.stream_max_age_s, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    print(f"rebuilt call_state, call_records and transcripts from {read:,} events "
          f"in {time.monotonic() - started:.1f} s")  # fmt: skip
    return 0


# --- calls and transcript ----------------------------------------------------------------------------


def _duration(state: CallState, record: CallRecord | None, now: datetime) -> str:
    if record is not None and record.duration_s is not None and state.phase == "ended":
        return f"{record.duration_s:.1f}"
    if state.phase == "ended" or state.live_at is None:
        return "-"
    try:
        return f"{(now - datetime.fromisoformat(state.live_at)).total_seconds():.1f}"
    except ValueError:
        return "-"


def calls_table(states: dict[str, CallState], records: dict[str, CallRecord], *, limit: int, live: bool) -> str:
    """The `calls` table: newest first."""
    now = datetime.now(UTC)
    rows = sorted(states.values(), key=lambda s: (s.ringing_at or s.updated_at or "", s.call_id), reverse=True)
    if live:
        rows = [s for s in rows if s.phase != "ended"]
    headers = ("call", "started", "from", "to", "state", "rule", "outcome", "secs", "ended")
    cells = []
    for s in rows[:limit]:
        r = records.get(s.call_id)
        started = f"{s.ringing_at[:19]}Z" if s.ringing_at else "-"
        outcome = (r.outcome if r else None) or s.action or "-"
        if r is not None and r.transfer_target and outcome in ("referred", "transferred"):
            outcome = f"{outcome} {r.transfer_target}"
        cells.append((s.call_id, started, s.caller or "?", s.dialled or "?", s.phase, s.rule or "-", outcome,
                      _duration(s, r, now), s.end_reason or "-"))  # fmt: skip
    if not cells:
        return ""
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


async def _calls(bus: Bus, args: argparse.Namespace, ttl_s: float) -> int:
    from switchboard.shared.projections.store import ProjectionStore

    store = await ProjectionStore(bus, (CALL_STATE, CALL_RECORDS), ttl_s=ttl_s).open()
    states = await store.all(CALL_STATE)
    records = await store.all(CALL_RECORDS)
    if args.json:
        rows = sorted(states.values(), key=lambda s: (s.ringing_at or s.updated_at or "", s.call_id), reverse=True)
        rows = [s for s in rows if not args.live or s.phase != "ended"][: args.limit]
        for s in rows:
            print(msgspec.json.encode({"state": s, "record": records.get(s.call_id)}).decode())
        return 0
    table = calls_table(states, records, limit=args.limit, live=args.live)
    if not table:
        print("no calls yet" if states or await _log_is_empty(bus) else
              "no projections yet: run the projector (`switchboard projector`, part of `switchboard up`) "
              "or `switchboard replay --rebuild`")  # fmt: skip
        return 0
    print(table)
    return 0


async def _log_is_empty(bus: Bus) -> bool:
    _, _, total = await _stream_span(bus)
    return total == 0


def transcript_text(transcript: Transcript) -> str:
    return "\n".join(f"{clock(turn.at)}  {turn.speaker:<6}  {turn.text}" for turn in transcript.turns)


async def _transcript(bus: Bus, args: argparse.Namespace, ttl_s: float) -> int:
    from switchboard.shared.projections.store import ProjectionStore

    args.call_id = await resolve_call(bus, args.call_id, must_exist=False)
    store = await ProjectionStore(bus, (TRANSCRIPTS,), ttl_s=ttl_s).open()
    found, _ = await store.get(TRANSCRIPTS, args.call_id)
    if found is None:  # not projected (yet): fold the call's own events, a subject-filtered read
        log = [e async for e in replay(bus, Selection(call=args.call_id))]
        if not log:
            print(f"switchboard: no events for call {args.call_id}", file=sys.stderr)
            return 1
        found = fold(TRANSCRIPTS, log).get(args.call_id) or Transcript(call_id=args.call_id)
    if args.json:
        print(msgspec.json.encode(found).decode())
    elif found.turns:
        print(transcript_text(found))
    else:
        print(f"call {args.call_id} has no transcribed turns")
    return 0
