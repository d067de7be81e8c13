"""Claiming and fencing a call's lease: the pure rules (`switchboard.session.lease`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchboard.session.lease import (
    InFlightTool,
    LeaseRecord,
    first_claim,
    lease_ran_out,
    plan_claim,
    still_fresh,
    superseded,
)
from switchboard.shared.events import SessionLease

TOOL = {"call_1": InFlightTool("lookup_order", '{"order_id": "A1"}')}


def test_the_first_claim_of_a_call_has_token_one_and_nothing_done_yet() -> None:
    """A call nobody held gets token 1, not greeted, no tools in flight."""
    assert first_claim("w1") == LeaseRecord(worker="w1", token=1)


def test_taking_over_a_held_call_records_the_previous_holder_as_lost() -> None:
    """A record still `held` means its holder died or was cut off: session.lost names it and its token."""
    plan = plan_claim("w2", LeaseRecord(worker="w1", token=3))
    assert plan.lost == SessionLease(worker="w1", attempt=3, reason="lease_expired")
    assert (plan.record.worker, plan.record.token, plan.record.state) == ("w2", 4, "held")


def test_a_new_holder_keeps_the_greeting_and_the_tools_in_flight() -> None:
    """What the previous holder did is carried over: no second greeting, its unanswered tools to finish."""
    plan = plan_claim("w2", LeaseRecord(worker="w1", token=1, greeted=True, tools=TOOL))
    assert plan.record.greeted and plan.record.tools == TOOL


def test_a_released_call_is_taken_over_without_a_lost_holder() -> None:
    """A drained worker released the call: the next claim is a handover, not a takeover."""
    plan = plan_claim("w2", LeaseRecord(worker="w1", token=2, state="released", reason="drain"))
    assert plan.lost is None and not plan.skip and plan.record.token == 3


def test_an_ended_call_is_skipped_with_its_end_reason() -> None:
    """A holder ended the call: nothing to claim; the stored record says how it ended."""
    ended = LeaseRecord(worker="w1", token=2, state="ended", reason="caller_hangup", duration_s=4.0)
    plan = plan_claim("w2", ended)
    assert plan.skip and plan.record == ended


@given(st.integers(min_value=1, max_value=10**9))
def test_only_a_higher_token_supersedes_a_holder(token: int) -> None:
    """A claim seen with the holder's own token or an older one changes nothing; a newer one takes over."""
    assert not superseded(token, SessionLease(worker="x", attempt=token))
    assert not superseded(token, SessionLease(worker="x", attempt=token - 1))
    assert superseded(token, SessionLease(worker="x", attempt=token + 1))


def test_a_lease_is_fresh_only_within_most_of_the_lease_after_a_landed_beat() -> None:
    """The heartbeat vouches for 90 % of the lease; after that the record must be read again."""
    fresh = {"confirmed_at": 100.0, "lease_s": 1.5, "epoch": 0, "current_epoch": 0}
    assert still_fresh(now=101.0, **fresh)
    assert not still_fresh(now=101.4, **fresh)


def test_a_reconnect_voids_the_proof_of_the_heartbeats() -> None:
    """After the connection dropped, a restarted server may have handed the call on: not fresh."""
    assert not still_fresh(now=100.1, confirmed_at=100.0, lease_s=1.5, epoch=0, current_epoch=1)


def test_a_lease_runs_out_a_whole_lease_after_its_last_landed_beat() -> None:
    """No beat for the ack wait: the server hands the call on, so the holder must stop."""
    assert not lease_ran_out(now=101.4, renewed_at=100.0, lease_s=1.5)
    assert lease_ran_out(now=101.5, renewed_at=100.0, lease_s=1.5)
