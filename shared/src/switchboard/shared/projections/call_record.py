"""Call detail records: one row per call — who called whom, the rule and decision, answer latency,
duration, outcome and transfer target — as billing, reporting and dashboards want them.

Pure: `evolve(record, event)`. Outcomes: ``answered`` (accepted by OpenAI), ``transferred`` (referred
after being answered), ``referred`` (sent elsewhere instead of answering), ``rejected``, ``failed``
(OpenAI refused to carry out the decision), ``missed`` (ended with none of those). The answer latency is
from the ``incoming`` event to the ``accepted`` event (what the caller waits for); the OpenAI latency is
the accept request alone. Events at or below `last_seq` are ignored, so replays are idempotent.
"""

from __future__ import annotations

import msgspec

from switchboard.shared.projections._facts import caller_and_dialled, field, millis_between
from switchboard.shared.schema import LogEvent


class CallRecord(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    caller: str | None = None
    dialled: str | None = None
    rule: str | None = None
    decision: str | None = None
    agent: str | None = None
    started_at: str | None = None
    answered_at: str | None = None
    ended_at: str | None = None
    answer_latency_ms: float | None = None
    openai_latency_ms: float | None = None
    duration_s: float | None = None
    outcome: str | None = None
    end_reason: str | None = None
    status_code: int | None = None
    transfer_target: str | None = None
    failure: str | None = None
    workers: tuple[str, ...] = ()
    trace_id: str | None = None
    """The call's OpenTelemetry trace (from the ``traceparent`` its ``incoming`` event was stamped with)."""
    last_seq: int = 0


_KINDS = frozenset({"incoming", "decided", "accepted", "rejected", "referred", "failed", "session.claimed", "ended"})


def relevant(kind: str) -> bool:
    return kind in _KINDS


def evolve(record: CallRecord | None, event: LogEvent) -> CallRecord | None:
    """The call's record after `event` (the same object when the event changes nothing)."""
    if not relevant(event.kind) or not event.call_id:
        return record
    if record is not None and event.seq and event.seq <= record.last_seq:
        return record
    r = record or CallRecord(call_id=event.call_id)
    kind, data, at = event.kind, event.data, event.time
    new = r
    if kind == "incoming":
        caller, dialled = caller_and_dialled(event)
        started = r.started_at or at
        new = msgspec.structs.replace(
            r, caller=caller or r.caller, dialled=dialled or r.dialled, started_at=started,
            answer_latency_ms=millis_between(started, r.answered_at),
            trace_id=r.trace_id or _trace_id(event.envelope.traceparent if event.envelope else None),
        )  # fmt: skip
    elif kind == "decided":
        new = msgspec.structs.replace(
            r, rule=field(data, "rule"), decision=field(data, "action"), agent=field(data, "agent") or r.agent
        )
    elif kind == "accepted":
        answered = r.answered_at or at
        latency = field(data, "latency_ms")
        new = msgspec.structs.replace(
            r, answered_at=answered, answer_latency_ms=millis_between(r.started_at, answered),
            openai_latency_ms=float(latency) if isinstance(latency, int | float) else None,
            agent=field(data, "agent") or r.agent, outcome=r.outcome or "answered",
        )  # fmt: skip
    elif kind == "rejected":
        new = msgspec.structs.replace(r, outcome="rejected", status_code=field(data, "status_code"))
    elif kind == "referred":
        outcome = "transferred" if r.answered_at is not None else "referred"
        new = msgspec.structs.replace(r, outcome=outcome, transfer_target=field(data, "target_uri"))
    elif kind == "failed":
        failure = f"{field(data, 'stage')}: {field(data, 'code') or field(data, 'message')}"
        new = msgspec.structs.replace(r, failure=failure, outcome=r.outcome or "failed")
    elif kind == "session.claimed":
        worker = field(data, "worker")
        if isinstance(worker, str) and worker not in r.workers:
            new = msgspec.structs.replace(r, workers=(*r.workers, worker))
    elif kind == "ended":
        duration = field(data, "duration_s")
        new = msgspec.structs.replace(
            r, ended_at=r.ended_at or at, end_reason=field(data, "reason"), outcome=r.outcome or "missed",
            duration_s=float(duration) if isinstance(duration, int | float) else r.duration_s,
        )  # fmt: skip
    if new == r and record is not None:
        return record
    return msgspec.structs.replace(new, last_seq=max(event.seq, r.last_seq))


def _trace_id(traceparent: str | None) -> str | None:
    """The trace id in a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<flags>``), or None."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None
