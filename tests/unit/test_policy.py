"""Routing policy: loading with errors that name line, rule and field, and first-match decisions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from switchboard.controller.decider import decide
from switchboard.controller.policy import (
    CallFacts,
    PolicyError,
    builtin_policy_text,
    check_policy,
    facts_from_incoming,
    load_policy,
    parse_policy,
)
from switchboard.shared.events import SipHeader

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).parents[2] / "examples" / "policies"

POLICY = """\
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


HOURS = """\
version: 1
agents: {a: {instructions: x}}
rules:
  - name: open
    when: {hours: {days: [mon-fri], from: "09:00", to: "17:30", tz: America/New_York, holidays: ["2026-12-25"]}}
    accept: {agent: a}
default: {reject: closed}
"""


def call(caller: str = "+14155550000", dialled: str = "+18005550100", **headers: str) -> CallFacts:
    return CallFacts(
        call_id="rtc_x", caller=caller, dialled=dialled, headers=tuple(SipHeader(k, v) for k, v in headers.items())
    )


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "p.yaml")
    return info.value.problems


def test_the_built_in_policy_loads() -> None:
    """The example policy shipped in the package is valid."""
    policy = load_policy(None)
    assert [r.name for r in policy.rules] == ["blocked-callers", "after-hours-desk", "support-line"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_policies_are_valid(path: Path) -> None:
    """Every policy under examples/policies loads."""
    assert load_policy(path).rules


def test_the_dialled_number_and_the_caller_come_from_to_and_from() -> None:
    """The user parts of To and From (header names in any case) are the dialled number and the caller."""
    facts = facts_from_incoming("rtc_1", [SipHeader("to", "sip:+1800@h"), SipHeader("FROM", "sip:+1415@h")])
    assert (facts.dialled, facts.caller) == ("+1800", "+1415")


def test_first_matching_rule_wins() -> None:
    """A call matching two rules gets the earlier rule's action."""
    decision = decide(parse_policy(POLICY), call(caller="+19005550000", **{"X-Vip": "1"}), now=NOW, live={})
    assert (decision.action, decision.rule) == ("accept", "vip")


def test_reject_and_refer_carry_their_parameters() -> None:
    """A reject rule gives its status code, a refer rule its target URI."""
    policy = parse_policy(POLICY)
    assert decide(policy, call(caller="+19005550000"), now=NOW, live={}).status_code == 403
    referred = decide(policy, call(dialled="+15550002"), now=NOW, live={})
    assert (referred.action, referred.target_uri) == ("refer", "sip:desk@example.com")


def test_default_applies_when_no_rule_matches() -> None:
    """No match → the default, which rejects with 603 when no status code is given."""
    decision = decide(parse_policy(POLICY), call(), now=NOW, live={})
    assert (decision.action, decision.rule, decision.status_code) == ("reject", "default", 603)


def test_reject_by_name() -> None:
    """``reject: busy`` rejects with 486 and ``reject: closed`` with 480."""
    text = POLICY.replace("reject: {status_code: 403}", "reject: busy").replace("reject: {}", "reject: closed")
    policy = parse_policy(text)
    assert decide(policy, call(caller="+19005550000"), now=NOW, live={}).status_code == 486
    assert decide(policy, call(), now=NOW, live={}).status_code == 480


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nagents: {}\n", "p.yaml:1 policy: missing required key 'default'"),
        (
            POLICY.replace("agent: helper", "agent: nobody"),
            "p.yaml:7 rules[0] (vip): accept.agent: unknown agent 'nobody' (known: helper)",
        ),
        (
            POLICY.replace("status_code: 403", "status_code: 200"),
            "p.yaml:10 rules[1] (blocked): reject.status_code: must be a SIP error status 400-699",
        ),
        (
            POLICY.replace("sip:desk@example.com", "desk"),
            "p.yaml:13 rules[2] (transfer): refer.target_uri: must start with tel:, sip: or sips:",
        ),
        (
            POLICY.replace('regex: "^\\\\+1900"', 'regex: "(["'),
            "p.yaml:9 rules[1] (blocked): when.caller.regex: not a valid regular expression",
        ),
        (
            POLICY.replace("refer: {target_uri", "accept: {agent: helper}\n    refer: {target_uri"),
            "p.yaml:11 rules[2] (transfer): exactly one of accept, reject or refer is required (got accept, refer)",
        ),
        (
            POLICY.replace("voice: cedar", "voice: cedar, colour: red"),
            "p.yaml:3 agents.helper: colour: unknown field",
        ),
        ("version: [1", "p.yaml:1 policy: not valid YAML"),
        (POLICY.replace("status_code: 403", "status_code: loud"), "p.yaml:10 rules[1] (blocked): reject.status_code:"),
        (POLICY.replace("name: blocked", "name: vip"), "p.yaml:8 rules[1] (vip): name: duplicate rule name 'vip'"),
        (POLICY + "version: 1\n", "p.yaml:16 version: duplicate key"),
        (
            HOURS.replace("America/New_York", "Mars/Olympus"),
            "p.yaml:5 rules[0] (open): when.hours.tz: unknown time zone",
        ),
        (HOURS.replace('"17:30"', '"5pm"'), "p.yaml:5 rules[0] (open): when.hours.to: '5pm' is not a time of day"),
        (HOURS.replace('"17:30"', '"09:00"'), "p.yaml:5 rules[0] (open): when.hours.to: equals from"),
        (HOURS.replace("mon-fri", "weekdays"), "p.yaml:5 rules[0] (open): when.hours.days[0]: 'weekdays' is not a day"),
        (HOURS.replace("2026-12-25", "2026-13-45"), "p.yaml:5 rules[0] (open): when.hours.holidays[0]: Invalid"),
        (POLICY.replace("present: true", "present: false, regex: x"), "p.yaml:6 rules[0] (vip): when.headers.X-Vip:"),
        (
            POLICY.replace('{regex: "^\\\\+1900"}', "{country: [XX]}"),
            "p.yaml:9 rules[1] (blocked): when.caller.country",
        ),
    ],
)
def test_invalid_policies_are_refused_naming_line_rule_and_field(text: str, expected: str) -> None:
    """A bad policy raises PolicyError whose problem reads ``file:line rule: field: what is wrong``."""
    assert any(p.startswith(expected) for p in problems(text)), problems(text)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("version: 1\n", "version: 1\nmax_call_duration_s: 0\n"),
            "p.yaml:2 max_call_duration_s: must be at least 1 and at most 86400 seconds (24 h), got 0",
        ),
        (
            ("version: 1\n", "version: 1\nmax_call_duration_s: 90000\n"),
            "p.yaml:2 max_call_duration_s: must be at least 1 and at most 86400 seconds (24 h), got 90000",
        ),
        (
            ("version: 1\n", "version: 1\nmax_call_duration_s: forever\n"),
            "p.yaml:2 max_call_duration_s: Expected `float`, got `str`",
        ),
        (
            ("accept: {agent: helper}", "accept: {agent: helper}\n    max_call_duration_s: 0.5"),
            "p.yaml:8 rules[0] (vip): max_call_duration_s: must be at least 1 and at most 86400 seconds",
        ),
        (
            ("reject: {status_code: 403}", "reject: {status_code: 403}\n    max_call_duration_s: 60"),
            "p.yaml:11 rules[1] (blocked): max_call_duration_s: only an accept rule has calls whose duration",
        ),
    ],
)
def test_max_call_duration_mistakes_are_refused(change: tuple[str, str], expected: str) -> None:
    """max_call_duration_s, policy-wide or on a rule, is 1 s to 24 h, and a rule's only on an accept rule."""
    assert any(p.startswith(expected) for p in problems(POLICY.replace(*change))), problems(POLICY.replace(*change))


def test_max_call_durations_from_one_second_to_a_day_are_valid() -> None:
    """The shortest and longest allowed max_call_duration_s load, on the policy and on a rule."""
    text = POLICY.replace("version: 1\n", "version: 1\nmax_call_duration_s: 86400\n").replace(
        "accept: {agent: helper}", "accept: {agent: helper}\n    max_call_duration_s: 1"
    )
    policy = parse_policy(text)
    assert (policy.max_call_duration_s, policy.rules[0].max_call_duration_s) == (86400.0, 1.0)


def test_every_problem_is_reported_at_once() -> None:
    """Mistakes in different rules and agents are all listed, in file order, not just the first."""
    text = (
        POLICY.replace("voice: cedar", "voice: cedar, colour: red")
        .replace("status_code: 403", "status_code: 200")
        .replace("sip:desk@example.com", "desk")
    )
    found = problems(text)
    assert [p.split(" ")[0] for p in found] == ["p.yaml:3", "p.yaml:10", "p.yaml:13"]


def test_every_problem_of_one_rule_is_reported_at_once() -> None:
    """A rule with a typo, a wrong type and a bad target gets all three problems, not just the first."""
    text = POLICY.replace(
        '    refer: {target_uri: "sip:desk@example.com"}',
        "    whne: {}\n    max_live_calls: ten\n    refer: {target_uri: desk}",
    )
    assert [p.split(": ", 1)[0] for p in problems(text)] == [
        "p.yaml:13 rules[2] (transfer)",
        "p.yaml:14 rules[2] (transfer)",
        "p.yaml:15 rules[2] (transfer)",
    ]
    assert [p.split(": ")[1] for p in problems(text)] == ["whne", "max_live_calls", "refer.target_uri"]


def test_every_problem_of_one_agent_is_reported_at_once() -> None:
    """An agent with an unknown field and an out-of-range speed gets both problems."""
    text = POLICY.replace(
        'voice: cedar, greeting: "Say hello."', "voice: cedar, colour: red, audio: {output: {speed: 9}}"
    )
    assert problems(text) == [
        "p.yaml:3 agents.helper: colour: unknown field",
        "p.yaml:3 agents.helper: audio.output.speed: must be between 0.25 and 1.5",
    ]


def test_a_deprecated_model_is_a_warning_naming_its_replacement() -> None:
    """A valid policy on gpt-realtime loads, with a warning giving the shutdown date and gpt-realtime-2."""
    checked = check_policy(POLICY.replace("voice: cedar", "voice: cedar, model: gpt-realtime"), "p.yaml")
    assert checked.policy.agents["helper"].model == "gpt-realtime"
    assert checked.warnings == [
        "p.yaml:3 agents.helper: model: 'gpt-realtime' is deprecated: OpenAI shuts it down on 2027-01-20; "
        "use 'gpt-realtime-2'"
    ]


def test_an_unknown_model_or_voice_is_a_warning_with_a_suggestion() -> None:
    """Names the SDK does not know are warnings (OpenAI may know newer ones), with the closest known name."""
    checked = check_policy(POLICY.replace("voice: cedar", "voice: ceder, model: gpt-9000"), "p.yaml")
    assert [w.split(": ", 2)[1:] for w in checked.warnings] == [
        ["model", "'gpt-9000' is not a Realtime model the openai SDK names (e.g. gpt-realtime-2, gpt-realtime-2.1, "
                  "gpt-realtime-2.1-mini); OpenAI refuses calls if it does not exist"],
        ["voice", "'ceder' is not a voice the openai SDK names (did you mean 'cedar'?); "
                  "OpenAI refuses calls if it does not exist"],
    ]  # fmt: skip


def test_the_built_in_and_example_policies_have_no_warnings() -> None:
    """What ships uses current models and voices."""
    texts = [builtin_policy_text(), *(p.read_text() for p in sorted(EXAMPLES.glob("*.yaml")))]
    assert [check_policy(text).warnings for text in texts] == [[]] * len(texts)


def test_a_live_agent_refuses_realtime_audio_and_tools_without_responses_delegation() -> None:
    """On Live, SIP negotiates the media and tools are served through Responses delegation."""
    text = POLICY.replace('voice: cedar, greeting: "Say hello."',
                          "surface: live, audio: {output: {speed: 1.2}}, tools: [{name: t}]")  # fmt: skip
    assert [p.split(": ", 2)[1] for p in problems(text)] == ["audio", "tools"]


def test_live_only_fields_on_a_realtime_agent_are_refused() -> None:
    """``delegation`` on a Realtime agent names the fix: make the agent (or the policy) Live."""
    text = POLICY.replace('voice: cedar, greeting: "Say hello."', "delegation: {type: client}")
    assert problems(text) == [
        "p.yaml:3 agents.helper: delegation: Live only: set surface: live on the agent (or the policy) to use it"
    ]


def test_a_live_agent_is_warned_about_live_models_and_voices() -> None:
    """A Live agent's model and voice are checked against Live's names, not Realtime's."""
    checked = check_policy(POLICY.replace("voice: cedar", "voice: willow, surface: live, model: gpt-live-9"))
    assert [w.split(": ")[1] for w in checked.warnings] == ["model"]
    assert "did you mean 'gpt-live-1'?" in checked.warnings[0]


def test_a_typo_in_a_field_name_suggests_the_right_one() -> None:
    """An unknown field close to a real one is reported with a suggestion."""
    text = POLICY.replace("accept: {agent: helper}", "accept: {agent: helper}\n    max_live_call: 2")
    assert "p.yaml:8 rules[0] (vip): max_live_call: unknown field (did you mean 'max_live_calls'?)" in problems(text)


def test_yaml_11_surprises_do_not_apply() -> None:
    """Norway's code NO stays a string and an unquoted 17:30 stays a time of day."""
    text = POLICY.replace(
        "when: {caller:", "when: {hours: {from: 09:00, to: 17:30, tz: UTC}, caller: {country: [NO]}, x_caller:"
    ).replace("x_caller: {regex", "dialled: {regex")
    policy = parse_policy(text)
    when = policy.rules[1].when
    assert when.caller is not None and not isinstance(when.caller, str | list)
    assert when.caller.country == ["NO"]
    assert when.hours is not None and not isinstance(when.hours, list)
    assert (when.hours.from_, when.hours.to) == ("09:00", "17:30")


def test_a_missing_file_is_a_clear_error() -> None:
    """Loading a file that does not exist names the file and the reason."""
    with pytest.raises(PolicyError) as info:
        load_policy("/nonexistent/policy.yaml")
    assert info.value.problems == ["/nonexistent/policy.yaml policy: cannot read: No such file or directory"]


def test_a_whole_day_window_is_valid() -> None:
    """``from: "00:00", to: "24:00"`` is the whole day, not an empty window."""
    policy = parse_policy(HOURS.replace('"09:00", to: "17:30"', '"00:00", to: "24:00"'))
    assert decide(policy, call(), now=datetime(2026, 11, 24, 4, 0, tzinfo=UTC), live={}).rule == "open"
