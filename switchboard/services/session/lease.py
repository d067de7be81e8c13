"""Claiming a call: what a worker must do when a call's lease comes to it. Pure; no I/O.

The lease is the JetStream delivery of the call's ``accepted`` event, held with in-progress
heartbeats; its number is the delivery attempt, which only grows. A worker that sees a claim with a
higher number than its own has lost the call and stops at once.
"""

from __future__ import annotations

import msgspec

from switchboard.shared.events import SessionLease


class ClaimPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What to record and do when claiming."""

    skip: bool = False
    """The call already ended: acknowledge the delivery and do nothing."""
    lost: SessionLease | None = None
    """The previous owner died without releasing: record ``session.lost`` for it."""
    greet: bool = True
    """No worker has held this call before, so the agent's greeting is still to be sent."""


def plan_claim(
    *, last_claimed: SessionLease | None, last_released: SessionLease | None, ended: bool
) -> ClaimPlan:
    """Decide how to take over a call from what the log says about its earlier owners."""
    if ended:
        return ClaimPlan(skip=True, greet=False)
    if last_claimed is None:
        return ClaimPlan(greet=True)
    released = last_released is not None and last_released.attempt >= last_claimed.attempt
    if released:
        return ClaimPlan(greet=False)
    return ClaimPlan(
        greet=False,
        lost=SessionLease(worker=last_claimed.worker, attempt=last_claimed.attempt, reason="lease_expired"),
    )


def superseded(my_attempt: int, claim: SessionLease) -> bool:
    """True when `claim` (seen on the bus) takes the call away from the holder of `my_attempt`."""
    return claim.attempt > my_attempt
