"""Routing policy: loading with clear errors, and first-match decisions (pure, no servers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.services.controller.decider import decide
from switchboard.services.controller.policy import (
    CallFacts,
    PolicyError,
    facts_from_incoming,
    load_policy,
    number_from_uri,
    parse_policy,
)
from switchboard.shared.events import SipHeader

POLICY = """
version: 1
agents:
  helper: {instructions: "Be brief.", voice: cedar, greeting: "Say hello."}
rules:
  - name: vip
    when: {headers: {X-Vip: {present: true}}}
    accept: {agent: helper}
  - name: blocked
    when: {caller: {regex: "^\\\\+1900"}}
    reject: {status_code: 403}
  - name: transfer
    when: {dialled: ["+15550001", "+15550002"]}
    refer: {target_uri: "sip:desk@example.com"}
default:
  reject: {}
"""


def call(caller: str = "+14155550000", dialled: str = "+18005550100", **headers: str) -> CallFacts:
    return CallFacts(
        call_id="rtc_x", caller=caller, dialled=dialled, headers=tuple(SipHeader(k, v) for k, v in headers.items())
    )


def test_the_built_in_policy_loads() -> None:
    """The example policy shipped in the package is valid."""
    policy = load_policy(None)
    assert [r.name for r in policy.rules] == ["blocked-callers", "after-hours-desk", "support-line"]


def test_numbers_are_read_from_sip_uris() -> None:
    """From/To values with display names, parameters and tel: URIs give their number."""
    assert number_from_uri('"Ann" <sip:+14155550000@sip.example.com>;tag=abc') == "+14155550000"
    assert number_from_uri("sip:+18005551212@sip.example.com") == "+18005551212"
    assert number_from_uri("tel:+18005551212") == "+18005551212"
    facts = facts_from_incoming("rtc_1", [SipHeader("to", "sip:+1800@h"), SipHeader("FROM", "sip:+1415@h")])
    assert (facts.dialled, facts.caller) == ("+1800", "+1415")


def test_first_matching_rule_wins() -> None:
    """A call matching two rules gets the earlier rule's action."""
    decision = decide(parse_policy(POLICY), call(caller="+19005550000", **{"X-Vip": "1"}))
    assert (decision.action, decision.rule) == ("accept", "vip")


def test_accept_carries_the_agents_session() -> None:
    """Accepting builds OpenAI's accept body from the named agent, and keeps its greeting."""
    decision = decide(parse_policy(POLICY), call(**{"X-Vip": "yes"}))
    assert decision.accept == {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "audio": {"output": {"voice": "cedar"}},
    }
    assert decision.greeting == "Say hello."


def test_reject_and_refer_carry_their_parameters() -> None:
    """A reject rule gives its status code, a refer rule its target URI."""
    policy = parse_policy(POLICY)
    assert decide(policy, call(caller="+19005550000")).status_code == 403
    referred = decide(policy, call(dialled="+15550002"))
    assert (referred.action, referred.target_uri) == ("refer", "sip:desk@example.com")


def test_default_applies_when_no_rule_matches() -> None:
    """No match → the default, which rejects with 603 when no status code is given."""
    decision = decide(parse_policy(POLICY), call())
    assert (decision.action, decision.rule, decision.status_code) == ("reject", "default", 603)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\nagents: {}\n", "default"),
        (POLICY.replace("agent: helper", "agent: nobody"), "rules[0] (vip).accept.agent: unknown agent 'nobody'"),
        (POLICY.replace("status_code: 403", "status_code: 200"), "rules[1] (blocked).reject.status_code"),
        (POLICY.replace("sip:desk@example.com", "desk"), "rules[2] (transfer).refer.target_uri"),
        (POLICY.replace('regex: "^\\\\+1900"', 'regex: "(["'), "rules[1] (blocked).when.caller.regex"),
        (POLICY.replace("refer: {target_uri", "accept: {agent: helper}\n    refer: {target_uri"), "exactly one"),
        (POLICY.replace("voice: cedar", "voice: cedar, colour: red"), "colour"),
        ("version: [1", "not valid YAML"),
    ],
)
def test_invalid_policies_are_refused_naming_the_problem(text: str, fragment: str) -> None:
    """A bad policy raises PolicyError whose message names the rule and field at fault."""
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "test.yaml")
    assert fragment in str(info.value)


@given(caller=st.text(max_size=20), dialled=st.text(max_size=20), vip=st.booleans())
def test_decisions_are_a_pure_function_of_policy_and_call(caller: str, dialled: str, vip: bool) -> None:
    """The same policy and call always give the same decision."""
    policy = parse_policy(POLICY)
    facts = call(caller, dialled, **({"X-Vip": "1"} if vip else {}))
    assert decide(policy, facts) == decide(policy, facts)
