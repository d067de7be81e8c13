"""The controller's redelivery plan (`switchboard.controller.redelivery`): drop, retry when, or resume."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.controller.redelivery import (
    DECISION_RETRY,
    REFER_WATCH_RETRY,
    RELEASE_RETRY,
    Backoff,
    BusDown,
    Failure,
    NotDue,
    Resume,
    Unreadable,
    plan,
    plan_duplicate,
)
from switchboard.shared.bus import Ack, Drop, Outcome, Retry

BUS = "bus unavailable"


@pytest.mark.parametrize(
    ("attempt", "failure", "backoff", "expected"),
    [
        (1, Unreadable("not JSON"), DECISION_RETRY, Drop(reason="not JSON")),
        (7, Unreadable("no call_id"), RELEASE_RETRY, Drop(reason="no call_id")),
        (1, Unreadable("bad time"), REFER_WATCH_RETRY, Drop(reason="bad time")),
        (1, BusDown(), DECISION_RETRY, Retry(delay_s=1.0, reason=BUS)),
        (19, BusDown(), DECISION_RETRY, Retry(delay_s=1.0, reason=BUS)),
        (1, BusDown(), RELEASE_RETRY, Retry(delay_s=1.0, reason=BUS)),
        (100, BusDown(), RELEASE_RETRY, Retry(delay_s=1.0, reason=BUS)),
        (1, BusDown(), REFER_WATCH_RETRY, Retry(delay_s=2.0, reason=BUS)),
        (2, BusDown(), REFER_WATCH_RETRY, Retry(delay_s=4.0, reason=BUS)),
        (4, BusDown(), REFER_WATCH_RETRY, Retry(delay_s=16.0, reason=BUS)),
        (5, BusDown(), REFER_WATCH_RETRY, Retry(delay_s=30.0, reason=BUS)),
        (50, BusDown(), REFER_WATCH_RETRY, Retry(delay_s=30.0, reason=BUS)),
        (1, NotDue(29.5), REFER_WATCH_RETRY, Retry(delay_s=29.5, reason="refer watch not due")),
        (2, NotDue(0.25), REFER_WATCH_RETRY, Retry(delay_s=0.25, reason="refer watch not due")),
    ],
)
def test_a_failed_delivery_is_dropped_or_retried_after_its_consumers_delay(
    attempt: int, failure: Failure, backoff: Backoff, expected: Outcome
) -> None:
    """Unreadable is dropped; bus down retries after the consumer's backoff; a refer not due, when due."""
    assert plan(attempt, failure, backoff=backoff) == expected


@pytest.mark.parametrize(
    ("attempt", "stored", "carried_out", "expected"),
    [
        (1, True, False, Ack()),
        (1, True, True, Ack()),
        (1, False, False, Ack()),
        (2, False, False, Ack()),
        (2, True, True, Ack()),
        (2, True, False, Resume()),
        (20, True, False, Resume()),
    ],
)
def test_a_call_decided_already_is_resumed_only_when_a_redelivery_finds_it_not_carried_out(
    attempt: int, stored: bool, carried_out: bool, expected: Ack | Resume
) -> None:
    """A first delivery leaves it to its decider; a redelivery carries out a stored decision with no answer."""
    assert plan_duplicate(attempt, stored=stored, carried_out=carried_out) == expected


@given(attempt=st.integers(min_value=-5, max_value=10**6))
def test_a_backoff_delay_stays_between_its_first_delay_and_its_cap(attempt: int) -> None:
    """For any attempt number (even absurd ones) the delay is at least first_s and at most max_s."""
    assert REFER_WATCH_RETRY.first_s <= REFER_WATCH_RETRY.delay_s(attempt) <= REFER_WATCH_RETRY.max_s


@given(attempt=st.integers(min_value=1, max_value=200))
def test_a_backoff_delay_never_shrinks_from_one_attempt_to_the_next(attempt: int) -> None:
    """Each attempt waits at least as long as the one before it."""
    assert REFER_WATCH_RETRY.delay_s(attempt + 1) >= REFER_WATCH_RETRY.delay_s(attempt)
