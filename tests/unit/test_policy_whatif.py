"""What-if (pure): re-deciding logged calls under another policy, at their own time and live counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from switchboard.controller.decider import decide
from switchboard.controller.policy import facts_from_incoming, load_policy, parse_policy
from switchboard.controller.whatif import redecide, render
from switchboard.shared.events import CloudEvent, Ended, SipHeader, make_event

SINCE = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
BUILT_IN = load_policy(None)


def event(call_id: str, kind: str, data: Any, at: str) -> CloudEvent:
    return msgspec.structs.replace(make_event(call_id, kind, data, source="test"), time=at)


def incoming(call_id: str, caller: str, dialled: str, at: str) -> CloudEvent:
    headers = [{"name": "From", "value": f"sip:{caller}@carrier"}, {"name": "To", "value": f"sip:{dialled}@openai"}]
    webhook = {"id": "evt_1", "type": "realtime.call.incoming", "data": {"call_id": call_id, "sip_headers": headers}}
    return event(call_id, "incoming", webhook, at)


def decided_by_built_in(call_id: str, caller: str, dialled: str, at: str) -> list[CloudEvent]:
    """A call's incoming and decided events as the built-in policy decided it."""
    headers = [SipHeader("From", f"sip:{caller}@carrier"), SipHeader("To", f"sip:{dialled}@openai")]
    when = datetime.fromisoformat(at)
    decided = decide(BUILT_IN, facts_from_incoming(call_id, headers), now=when, live={})
    return [incoming(call_id, caller, dialled, at), event(call_id, "decided", decided, at)]


HOURS = """
version: 1
agents: {concierge: {instructions: x}}
rules:
  - name: blocked-callers
    when: {caller: {prefix: "+1900"}}
    reject: {status_code: 603}
  - name: support-line
    when: {dialled: {prefix: "+1800"}, hours: {days: [mon-fri], from: "09:00", to: "17:00", tz: America/New_York}}
    accept: {agent: concierge}
    max_live_calls: 2
default: {reject: closed}
"""


def test_only_changed_decisions_are_listed() -> None:
    """Calls decided the same way under the new policy are counted but not listed."""
    log = [
        *decided_by_built_in("rtc_a", "+14155550101", "+18005550100", "2026-11-24T15:00:00Z"),  # Tue 10:00 NY
        *decided_by_built_in("rtc_b", "+19005550000", "+18005550100", "2026-11-24T15:01:00Z"),
    ]
    report = redecide(parse_policy(HOURS), log, since=SINCE)
    assert (report.compared, report.changed) == (2, [])


def test_calls_are_re_decided_at_the_time_they_came_in() -> None:
    """A call that came in on Saturday is closed under an office-hours policy, whenever what-if runs."""
    log = [
        *decided_by_built_in("rtc_weekday", "+14155550101", "+18005550100", "2026-11-24T15:00:00Z"),
        *decided_by_built_in("rtc_saturday", "+14155550101", "+18005550100", "2026-11-28T15:00:00Z"),
    ]
    report = redecide(parse_policy(HOURS), log, since=SINCE)
    assert [(r.call_id, r.before.action, r.after.action, r.after.status_code) for r in report.changed] == [
        ("rtc_saturday", "accept", "reject", 480)
    ]


def test_live_counts_are_simulated_under_the_new_policy() -> None:
    """Limit 2: with two accepted calls live a third is busy, and once one ended the next is accepted."""
    log = [
        *decided_by_built_in("rtc_1", "+14155550101", "+18005550100", "2026-11-24T15:00:00Z"),
        *decided_by_built_in("rtc_2", "+14155550102", "+18005550100", "2026-11-24T15:00:01Z"),
        *decided_by_built_in("rtc_3", "+14155550103", "+18005550100", "2026-11-24T15:00:02Z"),
        event("rtc_1", "ended", Ended(reason="caller_hangup", duration_s=3.0), "2026-11-24T15:00:03Z"),
        *decided_by_built_in("rtc_4", "+14155550104", "+18005550100", "2026-11-24T15:00:04Z"),
    ]
    report = redecide(parse_policy(HOURS), log, since=SINCE)
    assert [(r.call_id, r.after.status_code, r.after.capacity_full) for r in report.changed] == [("rtc_3", 486, True)]


def test_calls_the_new_policy_turns_away_use_no_capacity() -> None:
    """A call the new policy rejects does not count towards a later call's limit, though it was live then."""
    blocking = HOURS.replace('prefix: "+1900"', 'prefix: ["+1900", "+14155550102"]')
    log = [
        *decided_by_built_in("rtc_1", "+14155550101", "+18005550100", "2026-11-24T15:00:00Z"),
        *decided_by_built_in("rtc_2", "+14155550102", "+18005550100", "2026-11-24T15:00:01Z"),
        *decided_by_built_in("rtc_3", "+14155550103", "+18005550100", "2026-11-24T15:00:02Z"),
    ]
    report = redecide(parse_policy(blocking), log, since=SINCE)
    assert [(r.call_id, r.after.action, r.after.rule) for r in report.changed] == [
        ("rtc_2", "reject", "blocked-callers")
    ]


def test_calls_before_since_only_count_towards_capacity() -> None:
    """Calls that came in before `since` are not compared, but still occupy their rule while live."""
    log = [
        *decided_by_built_in("rtc_old1", "+14155550101", "+18005550100", "2026-11-24T14:30:00Z"),
        *decided_by_built_in("rtc_old2", "+14155550102", "+18005550100", "2026-11-24T14:31:00Z"),
        *decided_by_built_in("rtc_new", "+14155550103", "+18005550100", "2026-11-24T15:00:00Z"),
    ]
    report = redecide(parse_policy(HOURS), log, since=datetime(2026, 11, 24, 15, 0, tzinfo=UTC))
    assert report.compared == 1
    assert [(r.call_id, r.after.status_code) for r in report.changed] == [("rtc_new", 486)]


def test_calls_without_a_decision_are_counted_apart() -> None:
    """A call whose decision is not in the log is not compared, and the report says how many."""
    log = [incoming("rtc_x", "+14155550101", "+18005550100", "2026-11-24T15:00:00Z")]
    report = redecide(BUILT_IN, log, since=SINCE)
    assert (report.compared, report.undecided) == (0, 1)


def test_unreadable_events_are_skipped_and_counted() -> None:
    """An event whose data is not what its kind says is skipped, not fatal."""
    log = [
        event("rtc_bad", "decided", {"action": "explode"}, "2026-11-24T15:00:00Z"),
        *decided_by_built_in("rtc_ok", "+14155550101", "+18005550100", "2026-11-24T15:00:00Z"),
    ]
    report = redecide(BUILT_IN, log, since=SINCE)
    assert (report.compared, report.unreadable) == (1, 1)


def test_the_report_is_a_table_and_a_count() -> None:
    """Changed calls print as rows with before and after; the last line counts the changes."""
    log = decided_by_built_in("rtc_saturday", "+14155550101", "+18005550100", "2026-11-28T15:00:00Z")
    text = render(redecide(parse_policy(HOURS), log, since=SINCE), policy_name="hours.yaml")
    header, row, count = text.splitlines()
    assert header.split() == ["CALL", "TIME", "(UTC)", "FROM", "TO", "BEFORE", "AFTER"]
    assert row.split() == [
        "rtc_saturday", "2026-11-28", "15:00:00", "+14155550101", "+18005550100",
        "accept", "concierge", "(support-line)", "reject", "480", "(default)",
    ]  # fmt: skip
    assert count == "1 of 1 decisions change under hours.yaml (calls since 2026-11-24 00:00:00 UTC)"


def test_capacity_decisions_are_marked_full_in_the_table() -> None:
    """A decision made because a rule was full shows ``full`` next to the rule."""
    log = [
        e
        for i in range(3)
        for e in decided_by_built_in(f"rtc_{i}", "+14155550101", "+18005550100", f"2026-11-24T15:00:0{i}Z")
    ]
    text = render(redecide(parse_policy(HOURS), log, since=SINCE), policy_name="p")
    assert "reject 486 (support-line, full)" in text
