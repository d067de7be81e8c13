"""Properties of deciding, over generated policies, calls, instants and live counts (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from switchboard.controller.decider import decide
from switchboard.controller.policy import CallFacts, Policy, validate
from switchboard.shared.events import SipHeader

NUMBERS = ["+18005550100", "+18005550199", "+14155550101", "+14165550100", "+442071838750", "+19005550000"]
ZONES = ["UTC", "America/New_York", "Europe/London", "Asia/Kolkata", "Pacific/Auckland"]

_times = st.sampled_from(["00:00", "06:30", "09:00", "12:00", "17:30", "22:00", "24:00"])
_number_match = st.one_of(
    st.none(),
    st.sampled_from(NUMBERS),
    st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=3),
    st.fixed_dictionaries({"prefix": st.sampled_from(["+1800", "+1", "+44", "+1900"])}),
    st.fixed_dictionaries({"country_code": st.sampled_from([1, 44])}),
    st.fixed_dictionaries({"country": st.sampled_from(["US", "CA", "GB"])}),
    st.fixed_dictionaries({"regex": st.sampled_from([r"^\+1\d{10}$", "0$", "55"])}),
)
_header = st.one_of(
    st.fixed_dictionaries({"present": st.booleans()}),
    st.fixed_dictionaries({"regex": st.sampled_from(["^gold$", "gold|platinum", "."])}),
)
_hours = st.fixed_dictionaries(
    {
        "tz": st.sampled_from(ZONES),
        "from": _times.filter(lambda t: t != "24:00"),
        "to": _times,
        "days": st.lists(st.sampled_from(["mon-fri", "sat", "sun", "fri-mon", "wed"]), min_size=1, max_size=2),
    }
).filter(lambda h: h["from"] != h["to"])


_durations = st.floats(1.0, 86400.0)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    rules: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 6))):
        when: dict[str, Any] = {}
        for key, value in (
            ("dialled", draw(_number_match)),
            ("caller", draw(_number_match)),
            ("headers", draw(st.none() | st.dictionaries(st.just("X-Tier"), _header, max_size=1))),
            ("hours", draw(st.none() | _hours)),
        ):
            if value is not None:
                when[key] = value
        rule: dict[str, Any] = {"name": f"r{i}", "when": when}
        action = draw(st.sampled_from(["accept", "reject", "refer"]))
        if action == "accept":
            rule["accept"] = {"agent": "a"}
            if draw(st.booleans()):
                rule["max_live_calls"] = draw(st.integers(1, 3))
            if draw(st.booleans()):
                rule["max_call_duration_s"] = draw(_durations)
        elif action == "reject":
            rule["reject"] = {"status_code": draw(st.sampled_from([403, 480, 486, 603]))}
        else:
            rule["refer"] = {"target_uri": "tel:+14155550123"}
        rules.append(rule)
    default = draw(st.sampled_from([{"reject": {}}, {"accept": {"agent": "a"}}]))
    raw: dict[str, Any] = {"version": 1, "agents": {"a": {"instructions": "x"}}, "rules": rules, "default": default}
    if draw(st.booleans()):
        raw["max_call_duration_s"] = draw(_durations)
    return validate(msgspec.convert(raw, Policy))


calls = st.builds(
    lambda dialled, caller, tier: CallFacts(
        call_id="rtc_p",
        dialled=dialled,
        caller=caller,
        headers=() if tier is None else (SipHeader("x-tier", tier),),
    ),
    st.sampled_from(NUMBERS) | st.text(max_size=12),
    st.sampled_from(NUMBERS) | st.text(max_size=12),
    st.none() | st.sampled_from(["gold", "silver", ""]),
)
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC))
lives = st.dictionaries(st.sampled_from([f"r{i}" for i in range(6)]), st.integers(0, 4), max_size=6)


@given(policies(), calls, instants, lives, st.integers(-12 * 60, 14 * 60), calls)
def test_a_decision_is_a_pure_function_of_policy_call_time_and_counts(
    policy: Policy, call: CallFacts, now: datetime, live: dict[str, int], offset_min: int, other_call: CallFacts
) -> None:
    """Same (policy, call, instant, counts) → same decision, whatever the offset of `now` or what ran between."""
    first = decide(policy, call, now=now, live=live)
    decide(policy, other_call, now=now + timedelta(hours=5), live={})  # nothing carries over
    shifted = now.astimezone(timezone(timedelta(minutes=offset_min)))
    assert decide(policy, call, now=shifted, live=dict(live)) == first


@given(policies(), calls, instants)
def test_the_first_matching_rule_decides(policy: Policy, call: CallFacts, now: datetime) -> None:
    """The decision names the earliest rule that, on its own, would match the call; else the default."""
    alone = [
        decide(msgspec.structs.replace(policy, rules=[rule]), call, now=now, live={}).rule == rule.name
        for rule in policy.rules
    ]
    expected = policy.rules[alone.index(True)].name if True in alone else "default"
    assert decide(policy, call, now=now, live={}).rule == expected


@given(policies(), calls, instants, lives)
def test_a_full_rule_never_accepts(policy: Policy, call: CallFacts, now: datetime, live: dict[str, int]) -> None:
    """If the deciding rule has reached max_live_calls the call is not accepted, and the event says why."""
    decided = decide(policy, call, now=now, live=live)
    rule = next((r for r in policy.rules if r.name == decided.rule), None)
    full = rule is not None and rule.max_live_calls is not None and live.get(rule.name, 0) >= rule.max_live_calls
    assert decided.capacity_full is full
    if full:
        assert decided.action != "accept"


@given(policies(), calls, instants, lives)
def test_every_accept_carries_its_max_duration_and_nothing_else_does(
    policy: Policy, call: CallFacts, now: datetime, live: dict[str, int]
) -> None:
    """An accept's max_duration_s is its rule's max_call_duration_s, else the policy's; other actions have none."""
    decided = decide(policy, call, now=now, live=live)
    rule = next((r for r in policy.rules if r.name == decided.rule), None)
    if decided.action != "accept":
        assert decided.max_duration_s is None
    elif rule is not None and rule.max_call_duration_s is not None:
        assert decided.max_duration_s == rule.max_call_duration_s
    else:
        assert decided.max_duration_s == policy.max_call_duration_s
