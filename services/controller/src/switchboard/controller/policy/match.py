"""Matching a call against a policy (pure): the facts of a call, each kind of condition, the first rule.

A rule's ``when`` looks at the dialled number and the caller (the user parts of the SIP ``To``/``From``
URIs: exact, prefix, regex, E.164 country), any SIP header (present/absent, exact, prefix, regex) and time
windows (days and hours in an IANA time zone, minus holidays). No clock is read: the instant is an
argument. Capacity is not looked at here; the decider does that with the live counts the controller keeps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import msgspec
import phonenumbers

from switchboard.controller.policy.model import (
    WEEKDAYS,
    HeaderMatch,
    Hours,
    NumberMatch,
    NumberSpec,
    Policy,
    Rule,
    TextMatch,
    When,
    as_list,
)
from switchboard.shared.events import SipHeader, Surface
from switchboard.shared.sip import user_part

MATCH_MAX_CHARS = 1024
"""SIP values are untrusted: only this many leading characters are matched, which bounds regex work."""


class CallFacts(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    dialled: str
    caller: str
    headers: tuple[SipHeader, ...] = ()
    surface: Surface = "realtime"
    """The surface the call was offered on (its id is that surface's)."""


def facts_from_incoming(call_id: str, sip_headers: Sequence[SipHeader], surface: Surface = "realtime") -> CallFacts:
    """The facts of an incoming call: dialled number and caller from ``To``/``From``, and all headers.

    A number is the user part of the header's URI (`switchboard.shared.sip.user_part`), "" when there is none.
    """

    def number(name: str) -> str:
        value = next((h.value for h in sip_headers if h.name.lower() == name), "")
        return user_part(value[:MATCH_MAX_CHARS]) or ""

    return CallFacts(
        call_id=call_id,
        dialled=number("to"),
        caller=number("from"),
        headers=tuple(sip_headers),
        surface=surface,
    )


def text_matches(match: TextMatch | str | list[str], value: str) -> bool:
    """Whether `value` (cut to `MATCH_MAX_CHARS`) satisfies every condition of `match`."""
    value = value[:MATCH_MAX_CHARS]
    if isinstance(match, str):
        return value == match
    if isinstance(match, list):
        return value in match
    if match.exact is not None and value not in as_list(match.exact):
        return False
    if match.prefix is not None and not any(value.startswith(p) for p in as_list(match.prefix)):
        return False
    return match.regex is None or re.search(match.regex, value) is not None


def _parse_number(value: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(value[:MATCH_MAX_CHARS], None)
    except phonenumbers.NumberParseException:
        return None


def number_matches(match: NumberSpec, value: str) -> bool:
    """Text conditions, then the country: a number that does not parse as E.164 is in no country."""
    if not text_matches(match, value):
        return False
    if not isinstance(match, NumberMatch) or (match.country is None and match.country_code is None):
        return True
    parsed = _parse_number(value)
    if parsed is None:
        return False
    if match.country_code is not None:
        codes = [match.country_code] if isinstance(match.country_code, int) else match.country_code
        if parsed.country_code not in codes:
            return False
    if match.country is not None:
        region = phonenumbers.region_code_for_number(parsed)
        if region is None or region not in [c.upper() for c in as_list(match.country)]:
            return False
    return True


def header_matches(name: str, match: HeaderMatch, headers: Sequence[SipHeader]) -> bool:
    """Presence, then the text conditions against any of the header's values (headers may repeat)."""
    values = [h.value for h in headers if h.name.lower() == name.lower()]
    if match.present is not None and bool(values) != match.present:
        return False
    if match.exact is None and match.prefix is None and match.regex is None:
        return True
    return any(text_matches(match, v) for v in values)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@lru_cache(maxsize=64)
def _weekdays(days: tuple[str, ...]) -> frozenset[int]:
    """``("mon-fri", "sun")`` → {0, 1, 2, 3, 4, 6}; a range may wrap (``fri-mon``)."""
    chosen: set[int] = set()
    for item in days:
        first, _, last = item.lower().partition("-")
        start = WEEKDAYS.index(first)
        end = WEEKDAYS.index(last) if last else start
        chosen.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(chosen)


def _window_day(hours: Hours, local: datetime) -> date | None:
    """The day whose window `local` falls in, or None when it is outside the window."""
    minute = local.hour * 60 + local.minute
    start, end = _minutes(hours.from_), _minutes(hours.to)
    if start < end:
        return local.date() if start <= minute < end else None
    if minute >= start:
        return local.date()
    if minute < end:  # the tail of a window that began before midnight
        return local.date() - timedelta(days=1)
    return None


def in_hours(hours: Hours, now: datetime) -> bool:
    """Whether the instant `now` (timezone-aware) falls in the window, on the wall clock of its zone."""
    local = now.astimezone(ZoneInfo(hours.tz))
    day = _window_day(hours, local)
    return day is not None and day.weekday() in _weekdays(tuple(hours.days)) and day not in hours.holidays


def rule_matches(when: When, call: CallFacts, now: datetime) -> bool:
    """Whether every condition of `when` holds for `call` at the instant `now`."""
    if when.dialled is not None and not number_matches(when.dialled, call.dialled):
        return False
    if when.caller is not None and not number_matches(when.caller, call.caller):
        return False
    if not all(header_matches(name, m, call.headers) for name, m in when.headers.items()):
        return False
    if when.hours is not None:
        windows = [when.hours] if isinstance(when.hours, Hours) else when.hours
        return any(in_hours(w, now) for w in windows)
    return True


def matching_rule(policy: Policy, call: CallFacts, now: datetime) -> Rule | None:
    """The first rule whose ``when`` matches, or None (the default applies). Capacity is not looked at."""
    return next((rule for rule in policy.rules if rule_matches(rule.when, call, now)), None)
