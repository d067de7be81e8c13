"""Claiming a call and fencing its holder: what a worker must do when a call's lease comes to it. Pure.

Two things make a lease:

- **Liveness** is the JetStream delivery of the call's ``accepted`` event, held with in-progress
  heartbeats: when the holder stops beating, the message is redelivered to another worker.
- **Fencing** is the call's record in the KV bucket ``switchboard_leases`` (replicated like the stream):
  every claim is a compare-and-set that raises the record's `token` by one, so the token only grows —
  across nats-server crashes and restarts and leader changes, where a delivery count starts again at 1.
  The token is the lease number in ``session.claimed`` and on every event the holder publishes. Every
  change the holder makes to the call's shared state (greeted, a tool in flight, ended, released) is a
  compare-and-set on the record's revision, so a worker that lost the call cannot make one.

Between those writes a holder knows the call is still its own without asking while its heartbeats land
(`still_fresh`); after a gap (paused, cut off, reconnected) it must read the record again before it sends
anything to OpenAI, runs a tool, serves a command or records an event — and when no heartbeat reached
the server for a whole lease (`lease_ran_out`), the server hands the call on, so the holder stops at
once instead: the next claim (perhaps its own) re-attaches.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from switchboard.shared.events import SessionLease

LeaseState = Literal["held", "released", "ended"]


class InFlightTool(msgspec.Struct, frozen=True):
    """A function call whose output has not gone back to the model yet."""

    name: str
    arguments: str


class LeaseRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The value of a call's key in the leases bucket."""

    worker: str
    token: int
    state: LeaseState = "held"
    greeted: bool = False
    """The greeting was sent (or is being sent) by some holder: no other holder sends it."""
    tools: dict[str, InFlightTool] = {}
    """Function calls started and not yet answered, by tool_call_id: a new holder finishes them."""
    reason: str | None = None
    """``released``: why (drain); ``ended``: the end reason."""
    duration_s: float | None = None


class ClaimPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What to record and do when claiming."""

    skip: bool = False
    """The call already ended: acknowledge the delivery and do nothing (but make sure ``ended`` is stored)."""
    lost: SessionLease | None = None
    """The previous holder died or was cut off without releasing: record ``session.lost`` for it."""
    record: LeaseRecord
    """The record to compare-and-set: this worker's claim (or, with `skip`, the stored one)."""


def first_claim(worker: str) -> LeaseRecord:
    """The record of a call nobody has held: created only if the key does not exist."""
    return LeaseRecord(worker=worker, token=1)


def plan_claim(worker: str, previous: LeaseRecord) -> ClaimPlan:
    """Decide how to take over a call from its stored record."""
    if previous.state == "ended":
        return ClaimPlan(skip=True, record=previous)
    lost = None
    if previous.state == "held":
        lost = SessionLease(worker=previous.worker, attempt=previous.token, reason="lease_expired")
    claim = LeaseRecord(worker=worker, token=previous.token + 1, greeted=previous.greeted, tools=previous.tools)
    return ClaimPlan(lost=lost, record=claim)


def superseded(my_token: int, claim: SessionLease) -> bool:
    """True when `claim` (seen on the bus) takes the call away from the holder of `my_token`."""
    return claim.attempt > my_token


FRESH_FRACTION = 0.9
"""A holder trusts its lease without asking for this share of the lease after its last landed beat."""


def still_fresh(*, now: float, confirmed_at: float, lease_s: float, epoch: int, current_epoch: int) -> bool:
    """Whether the call is certainly still ours at `now`, with no read of the record.

    `confirmed_at` is when a heartbeat that the server then acknowledged (a flush) was sent, or when the
    record was last read or written as ours. The server redelivers the call only `lease_s` after the last
    beat it received, which came at or after `confirmed_at`; so until `lease_s` after it (less a margin)
    nobody else can have claimed it — unless the connection dropped since (`epoch`, the count of
    disconnects, differs): a restarted server may have forgotten our beats and handed the call on.
    """
    return epoch == current_epoch and now - confirmed_at < lease_s * FRESH_FRACTION


def lease_ran_out(*, now: float, renewed_at: float, lease_s: float) -> bool:
    """Whether the server has stopped holding the call's delivery for us: no heartbeat sent since
    `renewed_at` reached it, and a whole lease has passed. It redelivers then, to whichever worker asks
    first; until that claim is stored the record still names us, so reading it proves nothing."""
    return now - renewed_at >= lease_s
