"""SIP header values and refer targets (`switchboard.shared.sip`), and that every reader of them agrees."""

from __future__ import annotations

import pytest

from switchboard.cli.render import summary
from switchboard.controller.policy import PolicyError, facts_from_incoming, parse_policy
from switchboard.shared.events import SipHeader, make_event
from switchboard.shared.projections._facts import sip_number
from switchboard.shared.sip import target_uri_problem, user_part

USER_PARTS = [
    ("sip:+14155550101@sip.example.com", "+14155550101"),
    ("sips:+14155550101@sip.example.com", "+14155550101"),
    ("SIP:+14155550101@sip.example.com", "+14155550101"),
    ("<sip:+14155550101@sip.example.com>", "+14155550101"),
    ("<sip:+14155550101@sip.example.com>;tag=x", "+14155550101"),
    ("sip:+14155550101@sip.example.com;tag=x", "+14155550101"),
    ('"Ann" <sip:+14155550101@sip.example.com;user=phone>;tag=x', "+14155550101"),
    ("Ann <sip:+14155550101@sip.example.com>", "+14155550101"),
    ('"Ann <ops>" <sip:+14155550101@sip.example.com>', "+14155550101"),
    ('"say \\"hi\\"" <sip:+14155550101@h>', "+14155550101"),
    ("  <sip:+14155550101@h>  ", "+14155550101"),
    ("<sip:+14155550101;npdi@h;user=phone>", "+14155550101"),
    ("sip:alice:secret@h", "alice"),
    ("sip:%2B14155550101@h", "+14155550101"),
    ('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=1', "anonymous"),
    ("tel:+14155550101", "+14155550101"),
    ("TEL:+14155550101", "+14155550101"),
    ("<tel:+14155550101>;tag=x", "+14155550101"),
    ("tel:5550101;phone-context=+1415", "5550101"),
    ("tel:+1-415-555-0101", "+1-415-555-0101"),
    ("+14155550101", "+14155550101"),
    ("", None),
    ("   ", None),
    ("sip:example.com", None),
    ("sip:@example.com", None),
    ("<>", None),
    ("<sip:>", None),
    ("mailto:ann@example.com", None),
    ("http://example.com", None),
    ("anonymous", None),
    ('"Ann', None),
    ("garbage with spaces", None),
]

TARGETS = [
    ("tel:+14155550123", None),
    ("tel:+1-415-555-0123", None),
    ("tel:5550123;phone-context=+1415", None),
    ("TEL:+14155550123", None),
    ("sip:desk@pbx.example.com", None),
    ("sips:desk@pbx.example.com", None),
    ("sip:pbx.example.com", None),
    ("SIP:desk@pbx.example.com;transport=tls", None),
    ("", "must start with tel:, sip: or sips: (e.g. tel:+14155550123)"),
    ("desk", "must start with tel:, sip: or sips: (e.g. tel:+14155550123)"),
    ("+14155550123", "must start with tel:, sip: or sips: (e.g. tel:+14155550123)"),
    ("mailto:desk@example.com", "must start with tel:, sip: or sips: (e.g. tel:+14155550123)"),
    ("<sip:desk@example.com>", "must start with tel:, sip: or sips: (e.g. tel:+14155550123)"),
    (" tel:+14155550123", "must start with tel:, sip: or sips: (e.g. tel:+14155550123)"),
    ("tel:+14155550123 ", "must not contain whitespace (e.g. tel:+14155550123)"),
    ("sip:desk @example.com", "must not contain whitespace (e.g. tel:+14155550123)"),
    ("tel:", "must have a number after tel: (e.g. tel:+14155550123)"),
    ("tel:desk", "must have a number after tel: (e.g. tel:+14155550123)"),
    ("tel:+", "must have a number after tel: (e.g. tel:+14155550123)"),
    ("sip:", "must have a host or user@host after sip: (e.g. sip:desk@pbx.example.com)"),
    ("sips:@example.com", "must have a host or user@host after sips: (e.g. sips:desk@pbx.example.com)"),
    ("sip:desk@", "must have a host or user@host after sip: (e.g. sip:desk@pbx.example.com)"),
    ("sip:a@b@c", "must have a host or user@host after sip: (e.g. sip:desk@pbx.example.com)"),
]

REFER_POLICY = """\
version: 1
agents: {a: {instructions: x}}
rules:
  - name: desk
    refer: {target_uri: "TARGET"}
default: {reject: {}}
"""


@pytest.mark.parametrize(("value", "expected"), USER_PARTS)
def test_the_user_part_of_a_header_value(value: str, expected: str | None) -> None:
    """A From/To value gives the user part of its sip:/sips:/tel: URI, or None when it holds none."""
    assert user_part(value) == expected


@pytest.mark.parametrize(("uri", "expected"), TARGETS)
def test_a_refer_target_is_accepted_or_refused_saying_why(uri: str, expected: str | None) -> None:
    """tel: with a number and sip:/sips: with user@host or a host pass; anything else gets its problem."""
    assert target_uri_problem(uri) == expected


@pytest.mark.parametrize(("value", "expected"), USER_PARTS)
def test_the_console_projections_and_policy_read_a_header_alike(value: str, expected: str | None) -> None:
    """The console line, the projections' caller and the policy's caller all show the same number."""
    headers = [{"name": "From", "value": value}, {"name": "To", "value": "<tel:+18005550100>;tag=y"}]
    event = make_event("rtc_1", "incoming", {"data": {"call_id": "rtc_1", "sip_headers": headers}}, source="t")
    assert summary(event) == ("incoming", f"call from {expected or '?'} to +18005550100")
    assert sip_number(headers, "from") == expected
    facts = facts_from_incoming("rtc_1", [SipHeader(h["name"], h["value"]) for h in headers])
    assert (facts.caller, facts.dialled) == (expected or "", "+18005550100")


def test_the_console_shows_the_number_of_a_bracketed_tel_uri() -> None:
    """``<tel:+14155550101>;tag=x`` is shown as +14155550101, not with its bracket and tag."""
    headers = [{"name": "From", "value": "<tel:+14155550101>;tag=x"}, {"name": "To", "value": "sip:+1800@h"}]
    event = make_event("rtc_1", "incoming", {"data": {"call_id": "rtc_1", "sip_headers": headers}}, source="t")
    assert summary(event)[1] == "call from +14155550101 to +1800"


@pytest.mark.parametrize("uri", [uri for uri, problem in TARGETS if problem is None])
def test_a_policy_may_refer_to_every_target_the_check_accepts(uri: str) -> None:
    """A refer rule whose target the check accepts loads."""
    refer = parse_policy(REFER_POLICY.replace("TARGET", uri)).rules[0].refer
    assert refer is not None and refer.target_uri == uri


@pytest.mark.parametrize(("uri", "problem"), [(uri, problem) for uri, problem in TARGETS if problem is not None])
def test_a_policy_refer_target_the_check_refuses_is_named_with_its_problem(uri: str, problem: str) -> None:
    """A refer rule whose target the check refuses gets that problem at its line, rule and field."""
    with pytest.raises(PolicyError) as info:
        parse_policy(REFER_POLICY.replace("TARGET", uri), "p.yaml")
    assert info.value.problems == [f"p.yaml:5 rules[0] (desk): refer.target_uri: {problem}"]
