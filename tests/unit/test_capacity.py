"""Capacity's pure core: which admitted calls still count at an instant, and both stored forms of a key."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from switchboard.controller.capacity import EXPIRY_GRACE_S, decode_entries, grace, live_entries

NOW = 1_800_000_000.0
FOUR_HOURS = 4 * 3600.0

_ids = st.text("abcdef0123456789", min_size=1, max_size=6)
_entries = st.dictionaries(_ids, st.floats(NOW - 2 * 86400, NOW + 60, allow_nan=False), max_size=12)
_ages = st.floats(1.0, 86400.0)


def test_a_call_counts_until_its_max_duration_and_the_grace_have_run_out() -> None:
    """Admitted 4 h 1 min minus a moment ago it still counts; exactly 4 h 1 min ago it no longer does."""
    expiry = FOUR_HOURS + EXPIRY_GRACE_S
    entries = {"rtc_young": NOW - expiry + 0.001, "rtc_old": NOW - expiry}
    assert live_entries(entries, now=NOW, max_age_s=FOUR_HOURS) == {"rtc_young": NOW - expiry + 0.001}


def test_the_grace_is_a_minute_or_the_max_duration_when_that_is_shorter() -> None:
    """A 4 h rule's calls get 60 s of grace; a 1 s rule's calls get 1 s."""
    assert (grace(FOUR_HOURS), grace(1.0), grace(30.0)) == (60.0, 1.0, 30.0)


def test_a_call_admitted_by_a_replica_whose_clock_is_ahead_counts() -> None:
    """An admission time in the future is live, not garbage."""
    assert live_entries({"rtc_a": NOW + 5}, now=NOW, max_age_s=1.0) == {"rtc_a": NOW + 5}


@given(_entries, _ages, st.floats(NOW - 86400, NOW + 86400))
def test_exactly_the_unexpired_entries_count(entries: dict[str, float], max_age_s: float, now: float) -> None:
    """An entry counts, with its admission time unchanged, iff admitted_at + max age + grace is after `now`."""
    live = live_entries(entries, now=now, max_age_s=max_age_s)
    assert live == {c: t for c, t in entries.items() if t + (max_age_s + grace(max_age_s)) > now}


@given(_entries, _ages, st.floats(0, 86400), st.floats(0, 86400))
def test_what_counts_later_counted_earlier(entries: dict[str, float], max_age_s: float, a: float, b: float) -> None:
    """Time only ever drops calls: the live set at a later instant is a subset of an earlier one's."""
    earlier, later = sorted((NOW + a, NOW + b))
    assert live_entries(entries, now=later, max_age_s=max_age_s).items() <= (
        live_entries(entries, now=earlier, max_age_s=max_age_s).items()
    )


@given(_entries, _ages)
def test_a_longer_max_duration_never_counts_fewer_calls(entries: dict[str, float], max_age_s: float) -> None:
    """Raising a rule's max duration keeps every call that counted under the shorter one."""
    shorter = live_entries(entries, now=NOW, max_age_s=max_age_s)
    assert shorter.items() <= live_entries(entries, now=NOW, max_age_s=min(max_age_s * 2, 86400.0)).items()


def test_a_key_in_the_old_list_form_reads_as_calls_admitted_now() -> None:
    """A key an older controller wrote (a list of call ids) gives every call the time of reading."""
    assert decode_entries(b'["rtc_a", "rtc_b"]', now=NOW) == {"rtc_a": NOW, "rtc_b": NOW}


@given(_entries)
def test_a_key_in_the_new_form_reads_back_as_written(entries: dict[str, float]) -> None:
    """call id → admitted at survives encoding and decoding unchanged."""
    assert decode_entries(msgspec.json.encode(entries), now=NOW) == entries
