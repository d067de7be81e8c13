"""Call state: where each call is now — ringing → decided → live → ended — with its rule, worker and times.

Pure: `evolve(state, event)` folds one event into a call's state. Phases only move forward (a late
``session.released`` after ``ended`` leaves the call ended), and an event at or below the state's
`last_seq` is ignored, so applying the log twice, or resuming after a crash, gives the same state.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from switchboard.shared.projections._facts import caller_and_dialled, field
from switchboard.shared.schema import LogEvent

Phase = Literal["ringing", "decided", "live", "ended"]
_RANK: dict[str, int] = {"ringing": 0, "decided": 1, "live": 2, "ended": 3}


class CallState(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    phase: Phase = "ringing"
    caller: str | None = None
    dialled: str | None = None
    rule: str | None = None
    action: str | None = None
    agent: str | None = None
    worker: str | None = None
    attempt: int = 0
    ringing_at: str | None = None
    decided_at: str | None = None
    live_at: str | None = None
    ended_at: str | None = None
    end_reason: str | None = None
    last_seq: int = 0
    updated_at: str | None = None


def relevant(kind: str) -> bool:
    """Realtime events never change a call's state."""
    return not kind.startswith("rt.")


def _advance(current: Phase, to: Phase) -> Phase:
    return to if _RANK[to] > _RANK[current] else current


def evolve(state: CallState | None, event: LogEvent) -> CallState | None:
    """The call's state after `event` (the same object when the event changes nothing)."""
    if not relevant(event.kind) or not event.call_id:
        return state
    if state is not None and event.seq and event.seq <= state.last_seq:
        return state
    current = state or CallState(call_id=event.call_id)
    kind, data, at = event.kind, event.data, event.time
    if kind == "incoming":
        caller, dialled = caller_and_dialled(event)
        new = msgspec.structs.replace(
            current, caller=caller or current.caller, dialled=dialled or current.dialled,
            ringing_at=current.ringing_at or at,
        )  # fmt: skip
    elif kind == "decided":
        new = msgspec.structs.replace(
            current, phase=_advance(current.phase, "decided"), rule=field(data, "rule"),
            action=field(data, "action"), agent=field(data, "agent"), decided_at=current.decided_at or at,
        )  # fmt: skip
    elif kind == "accepted":
        new = msgspec.structs.replace(
            current, phase=_advance(current.phase, "live"), agent=field(data, "agent") or current.agent,
            live_at=current.live_at or at,
        )  # fmt: skip
    elif kind == "session.claimed":
        attempt = field(data, "attempt")
        new = msgspec.structs.replace(
            current, phase=_advance(current.phase, "live"), worker=field(data, "worker"),
            attempt=attempt if isinstance(attempt, int) else current.attempt, live_at=current.live_at or at,
        )  # fmt: skip
    elif kind == "ended":
        new = msgspec.structs.replace(
            current, phase="ended", ended_at=current.ended_at or at,
            end_reason=field(data, "reason") if current.end_reason is None else current.end_reason,
        )  # fmt: skip
    else:
        return state
    if new == current and state is not None:
        return state
    return msgspec.structs.replace(new, last_seq=max(event.seq, current.last_seq), updated_at=at)
