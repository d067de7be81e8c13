"""Rule matching (pure): time windows across zones and DST, E.164 countries, SIP header conditions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.controller.policy import (
    MATCH_MAX_CHARS,
    CallFacts,
    HeaderMatch,
    Hours,
    NumberMatch,
    header_matches,
    in_hours,
    number_matches,
    parse_policy,
    rule_matches,
)
from switchboard.shared.events import SipHeader


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(frm: str, to: str, tz: str = "America/New_York", days: list[str] | None = None, **kw: object) -> Hours:
    return Hours(tz=tz, from_=frm, to=to, days=days or ["mon-sun"], **kw)  # type: ignore[arg-type]


OFFICE = window("09:00", "17:30", days=["mon-fri"])

# --- time windows ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "inside"),
    [
        ("2026-11-24T14:00", True),  # Tue 09:00 EST: the window opens
        ("2026-11-24T13:59", False),  # Tue 08:59 EST
        ("2026-11-24T22:29", True),  # Tue 17:29 EST
        ("2026-11-24T22:30", False),  # Tue 17:30 EST: `to` is not included
        ("2026-11-28T15:00", False),  # Sat 10:00 EST
    ],
)
def test_a_window_is_read_on_the_wall_clock_of_its_time_zone(instant: str, inside: bool) -> None:
    """Mon-fri 09:00-17:30 New York holds from 09:00 until just before 17:30 local time, weekdays only."""
    assert in_hours(OFFICE, utc(instant)) is inside


def test_the_same_instant_in_any_offset_gives_the_same_answer() -> None:
    """A window depends on the instant, not on the offset `now` happens to carry."""
    instant = utc("2026-11-24T14:30")
    for offset in (-8, 0, 5.5, 13):
        assert in_hours(OFFICE, instant.astimezone(timezone(timedelta(hours=offset))))


@pytest.mark.parametrize(
    ("instant", "inside"),
    [
        ("2026-03-06T13:30", False),  # Fri before the change: 08:30 EST
        ("2026-03-06T21:30", True),  # Fri: 16:30 EST
        ("2026-03-09T13:30", True),  # Mon after the change: 09:30 EDT
        ("2026-03-09T21:30", False),  # Mon: 17:30 EDT
    ],
)
def test_opening_hours_follow_daylight_saving_time(instant: str, inside: bool) -> None:
    """The same UTC time of day is inside or outside office hours depending on EST or EDT."""
    assert in_hours(OFFICE, utc(instant)) is inside


def test_a_wall_clock_hour_that_happens_twice_matches_both_times() -> None:
    """When clocks fall back, 01:30 happens twice in New York and a 01:00-02:00 window holds both times."""
    night = window("01:00", "02:00")
    assert in_hours(night, utc("2026-11-01T05:30"))  # 01:30 EDT
    assert in_hours(night, utc("2026-11-01T06:30"))  # 01:30 EST
    assert not in_hours(night, utc("2026-11-01T07:30"))  # 02:30 EST


def test_a_wall_clock_hour_that_is_skipped_never_matches() -> None:
    """When clocks spring forward, 02:00-03:00 does not exist that night, so a window for it never holds."""
    gap = window("02:00", "03:00", days=["sun"])
    start = utc("2026-03-08T04:00")  # Sat 23:00 EST; the next 24 h cover all of Sunday
    assert not any(in_hours(gap, start + timedelta(minutes=m)) for m in range(24 * 60))
    assert in_hours(gap, utc("2026-03-15T06:30"))  # a week later, 02:30 EDT exists


def test_european_summer_time_moves_the_window_by_an_hour_in_utc() -> None:
    """London 09:00 is 09:00 UTC in winter and 08:00 UTC in summer (BST from 2026-03-29)."""
    london = window("09:00", "17:00", tz="Europe/London")
    assert not in_hours(london, utc("2026-03-27T08:30"))
    assert in_hours(london, utc("2026-03-30T08:30"))


@pytest.mark.parametrize(
    ("instant", "inside"),
    [
        ("2026-11-28T03:00", True),  # Fri 22:00 EST: the Friday window opens
        ("2026-11-28T08:00", True),  # Sat 03:00 EST: still Friday's window
        ("2026-11-28T11:00", False),  # Sat 06:00 EST: closed
        ("2026-11-27T08:00", False),  # Fri 03:00 EST: that would be Thursday's window
    ],
)
def test_a_window_past_midnight_belongs_to_the_day_it_starts(instant: str, inside: bool) -> None:
    """Fri 22:00-06:00 covers Friday night into Saturday morning, not Friday morning."""
    assert in_hours(window("22:00", "06:00", days=["fri"]), utc(instant)) is inside


def test_holidays_are_dates_in_the_windows_time_zone() -> None:
    """Christmas in Auckland starts while it is still the 24th in UTC."""
    shop = window("00:00", "24:00", tz="Pacific/Auckland", holidays=[date(2026, 12, 25)])
    assert in_hours(shop, utc("2026-12-24T10:00"))  # 23:00 on the 24th in Auckland
    assert not in_hours(shop, utc("2026-12-24T12:00"))  # 01:00 on the 25th in Auckland
    assert not in_hours(shop, utc("2026-12-25T10:30"))  # 23:30 on the 25th in Auckland


def test_a_holiday_closes_a_night_window_that_starts_on_it() -> None:
    """A window that starts on a holiday is closed until it ends the next morning."""
    night = window("20:00", "08:00", holidays=[date(2026, 12, 25)])
    assert not in_hours(night, utc("2026-12-26T06:00"))  # 01:00 EST on the 26th, the 25th's window
    assert in_hours(night, utc("2026-12-27T06:00"))  # 01:00 EST on the 27th, the 26th's window


def test_day_ranges_can_wrap_around_the_week() -> None:
    """``fri-mon`` is Friday, Saturday, Sunday and Monday."""
    weekend = window("00:00", "24:00", tz="UTC", days=["fri-mon"])
    days = {d: in_hours(weekend, utc(f"2026-11-{d}T12:00")) for d in range(23, 30)}  # Mon 23 … Sun 29
    assert days == {23: True, 24: False, 25: False, 26: False, 27: True, 28: True, 29: True}


def test_any_of_several_windows_matches() -> None:
    """``hours`` given as a list holds when any one window holds."""
    policy = parse_policy(
        """
version: 1
agents: {a: {instructions: x}}
rules:
  - name: open
    when:
      hours:
        - {days: [mon-fri], from: "09:00", to: "17:00", tz: UTC}
        - {days: [sat], from: "10:00", to: "12:00", tz: UTC}
    accept: {agent: a}
default: {reject: closed}
"""
    )
    when = policy.rules[0].when
    facts = CallFacts(call_id="c", dialled="", caller="")
    assert rule_matches(when, facts, utc("2026-11-24T10:00"))  # Tue
    assert rule_matches(when, facts, utc("2026-11-28T11:00"))  # Sat
    assert not rule_matches(when, facts, utc("2026-11-28T13:00"))  # Sat afternoon


# --- numbers and countries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "number", "expected"),
    [
        (NumberMatch(country="US"), "+14155550101", True),  # San Francisco
        (NumberMatch(country=["US"]), "+14165550100", False),  # Toronto: also +1, but Canada
        (NumberMatch(country=["ca"]), "+14165550100", True),
        (NumberMatch(country_code=44), "+442071838750", True),
        (NumberMatch(country_code=[44, 353]), "+14155550101", False),
        (NumberMatch(country_code=1, prefix="+1415"), "+14165550100", False),  # both conditions must hold
        (NumberMatch(country_code=1), "anonymous", False),
        (NumberMatch(country_code=1), "14155550101", False),  # not E.164: no country
        (NumberMatch(country_code=1), "", False),
    ],
)
def test_numbers_match_by_e164_country(match: NumberMatch, number: str, expected: bool) -> None:
    """Countries come from the number's E.164 parse; a number that does not parse is in no country."""
    assert number_matches(match, number) is expected


@given(st.text(max_size=40))
def test_country_matching_never_fails_on_any_caller_value(value: str) -> None:
    """Whatever the caller's From holds, a country condition answers True or False without raising."""
    assert number_matches(NumberMatch(country=["US", "CA"], country_code=1), value) in (True, False)


def test_exact_prefix_and_lists() -> None:
    """A bare string is exact, a list is any of them, prefix takes a list too."""
    assert number_matches("+15550001", "+15550001") and not number_matches("+15550001", "+155500011")
    assert number_matches(["+1", "+15550001"], "+15550001")
    assert number_matches(NumberMatch(prefix=["+44", "+1800"]), "+18005550100")
    assert not number_matches(NumberMatch(exact=["+1"], prefix="+1"), "+15550001")


# --- SIP headers -------------------------------------------------------------------------------------


def headers(*pairs: tuple[str, str]) -> tuple[SipHeader, ...]:
    return tuple(SipHeader(n, v) for n, v in pairs)


def test_header_names_are_case_insensitive() -> None:
    """A rule on ``X-Customer-Tier`` matches a header sent as ``x-customer-tier``."""
    assert header_matches("X-Customer-Tier", HeaderMatch(exact="gold"), headers(("x-customer-tier", "gold")))


def test_header_presence_and_absence() -> None:
    """``present: true`` needs the header, ``present: false`` needs it missing."""
    sent = headers(("X-Vip", ""))
    assert header_matches("X-Vip", HeaderMatch(present=True), sent)
    assert not header_matches("X-Vip", HeaderMatch(present=False), sent)
    assert header_matches("X-Other", HeaderMatch(present=False), sent)
    assert not header_matches("X-Other", HeaderMatch(present=True), sent)


def test_header_regex_searches_any_value_of_a_repeated_header() -> None:
    """A regex is searched (not anchored unless it says so) in each value of a header that repeats."""
    sent = headers(("Diversion", "<sip:+1555@a>;reason=busy"), ("Diversion", "<sip:+1666@b>;reason=no-answer"))
    assert header_matches("diversion", HeaderMatch(regex="reason=no-answer"), sent)
    assert not header_matches("diversion", HeaderMatch(regex="^reason"), sent)


def test_a_header_condition_does_not_match_a_missing_header() -> None:
    """exact/prefix/regex conditions need the header to be there."""
    assert not header_matches("X-Tier", HeaderMatch(regex=".*"), ())


def test_only_the_start_of_a_long_value_is_matched() -> None:
    """Untrusted values are cut to MATCH_MAX_CHARS before matching, which bounds regex work."""
    long = "a" * MATCH_MAX_CHARS + "needle"
    assert not header_matches("X-Note", HeaderMatch(regex="needle"), headers(("X-Note", long)))
    assert header_matches("X-Note", HeaderMatch(regex="needle"), headers(("X-Note", "a needle")))
