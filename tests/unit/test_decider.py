"""The decider (pure): accept bodies OpenAI's SDK accepts, tool timeouts, capacity, and the demo's decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, get_args, get_origin

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.live.session_accept_params import SessionAcceptParams
from openai.types.realtime.call_accept_params import CallAcceptParams
from pydantic import TypeAdapter
from typing_extensions import get_type_hints  # the SDK's TypedDicts are typing_extensions'

from switchboard.controller.decider import (
    accept_body,
    capacity_limits,
    capacity_max_ages,
    decide,
    occupies,
)
from switchboard.controller.policy import Agent, CallFacts, PolicyError, load_policy, parse_policy
from switchboard.controller.policy.model import (
    DEPRECATED_MODELS,
    LIVE_MODELS,
    LIVE_VOICES,
    REALTIME_MODELS,
    VOICES,
)
from switchboard.shared.events import Decided, SipHeader
from tests.sdk_types import unknown_keys

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)

# --- accept bodies against the SDK's CallAcceptParams ------------------------------------------------


_ACCEPT_PARAMS = TypeAdapter(CallAcceptParams)


def assert_openai_accepts(body: dict[str, Any]) -> None:
    _ACCEPT_PARAMS.validate_python(body)  # value types, required keys, literals
    assert unknown_keys(body, CallAcceptParams) == []


def _literals(annotation: Any) -> set[str]:
    """The string literals anywhere inside a type annotation (``Union[str, Literal["a", "b"]]`` → a, b)."""
    if get_origin(annotation) is Literal:
        return {a for a in get_args(annotation) if isinstance(a, str)}
    return set().union(*(_literals(a) for a in get_args(annotation)))


def test_the_policys_model_and_voice_lists_are_the_sdks() -> None:
    """The models, deprecations and voices `policy check` warns about are exactly those the SDK names."""
    import inspect
    import re

    from openai.types.realtime import call_accept_params, realtime_audio_config_output_param

    assert _literals(get_type_hints(CallAcceptParams)["model"]) == REALTIME_MODELS
    output = realtime_audio_config_output_param.RealtimeAudioConfigOutputParam
    assert _literals(get_type_hints(output)["voice"]) == VOICES
    announced = re.search(r"Deprecated values:\s*-(.*?):\s*Announced shutdown date: ([\d-]+)",
                          inspect.getsource(call_accept_params), re.DOTALL)  # fmt: skip
    assert announced is not None
    deprecated = set(re.findall(r'"([^"]+)"', announced.group(1)))
    assert deprecated == set(DEPRECATED_MODELS)
    assert {shutdown for shutdown, _ in DEPRECATED_MODELS.values()} == {announced.group(2)}
    assert {instead for _, instead in DEPRECATED_MODELS.values()} <= REALTIME_MODELS - deprecated


def test_the_sdk_check_catches_made_up_keys() -> None:
    """A key the SDK does not define, however deep, fails the check the bodies below pass."""
    body = accept_body(Agent(instructions="x"))
    body["audio"]["output"]["volume"] = 11
    body["audio"]["input"] = {"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}
    assert sorted(unknown_keys(body, CallAcceptParams)) == [
        "$.audio.input.turn_detection.threshold",
        "$.audio.output.volume",
    ]


FULL_AGENT = """
version: 1
agents:
  full:
    model: gpt-realtime-mini
    instructions: Be brief.
    voice: cedar
    greeting: Say hello.
    audio:
      input:
        format: audio/pcmu
        noise_reduction: far_field
        transcription: {model: gpt-4o-transcribe, language: en, prompt: "order numbers"}
        turn_detection: {type: server_vad, threshold: 0.6, prefix_padding_ms: 300, silence_duration_ms: 500,
                         idle_timeout_ms: 6000, create_response: true, interrupt_response: true}
      output: {format: audio/pcm, speed: 1.25}
    tools:
      - name: lookup_order
        description: Look up an order.
        parameters: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
        timeout_s: 4.5
      - {name: end_call}
  semantic:
    instructions: x
    audio: {input: {turn_detection: {type: semantic_vad, eagerness: high}}, output: {format: audio/pcma}}
  no-vad:
    instructions: x
    audio: {input: {turn_detection: null}}
rules: []
default: {accept: {agent: full}}
"""


@pytest.mark.parametrize("name", ["full", "semantic", "no-vad"])
def test_accept_bodies_are_valid_sdk_call_accept_params(name: str) -> None:
    """Every audio and tool option an agent can have produces a body the SDK's CallAcceptParams accepts."""
    agent = parse_policy(FULL_AGENT).agents[name]
    assert_openai_accepts(accept_body(agent))


LIVE_AGENTS = """\
version: 1
agents:
  plain: {surface: live, instructions: "Answer briefly.", voice: cedar, greeting: "Say hello."}
  backend:
    surface: live
    instructions: x
    model: gpt-live-1.1
    delegation: {type: responses, model: gpt-5.2, instructions: "Look orders up.", acknowledgement_delay_ms: 200}
    tools: [{name: lookup_order, parameters: {type: object, properties: {order: {type: string}}}, timeout_s: 3}]
  realtime: {instructions: x}
rules:
  - name: live-line
    when: {dialled: "+18005550100"}
    accept: {agent: plain}
default: {reject: busy}
"""


def _live_accepts(body: dict[str, Any]) -> None:
    _LIVE_ACCEPT_PARAMS.validate_python(body)
    assert unknown_keys(body, SessionAcceptParams) == []


_LIVE_ACCEPT_PARAMS = TypeAdapter(SessionAcceptParams)


@pytest.mark.parametrize("name", ["plain", "backend"])
def test_live_accept_bodies_are_valid_sdk_session_accept_params(name: str) -> None:
    """A Live agent's accept body is the SDK's Live SessionAcceptParams: ``{"session": {"type": "live", …}}``."""
    _live_accepts(accept_body(parse_policy(LIVE_AGENTS).agents[name]))


def test_a_live_agents_tools_become_its_responses_delegations_function_tools() -> None:
    """Tools of a Live agent go to the Responses backend it delegates to, with its model and prompt."""
    session = accept_body(parse_policy(LIVE_AGENTS).agents["backend"])["session"]
    assert (session["model"], session["audio"]) == ("gpt-live-1.1", {"output": {"voice": "marin"}})
    delegation = session["delegation"]
    assert (delegation["type"], delegation["acknowledgement_delay_ms"]) == ("responses", 200)
    assert delegation["responses"]["model"] == "gpt-5.2"
    assert [t["name"] for t in delegation["responses"]["tools"]] == ["lookup_order"]


def test_a_call_is_accepted_on_its_agents_surface_and_its_other_id_set_aside() -> None:
    """Offered on both surfaces, the Live agent's call is accepted under its live id; its rtc id is set aside."""
    policy = parse_policy(LIVE_AGENTS)
    headers = (SipHeader("To", "sip:+18005550100@x"), SipHeader("Call-ID", "abc@pbx"))
    live = decide(policy, CallFacts(call_id="live_1", caller="", dialled="+18005550100", headers=headers,
                                    surface="live"), now=NOW, live={})  # fmt: skip
    realtime = decide(policy, CallFacts(call_id="rtc_1", caller="", dialled="+18005550100", headers=headers),
                      now=NOW, live={})  # fmt: skip
    assert (live.action, live.surface, live.set_aside, live.sip_call_id) == ("accept", "live", False, "abc@pbx")
    assert (realtime.surface, realtime.set_aside, realtime.sip_call_id) == ("live", True, "abc@pbx")
    assert occupies(realtime) is None and occupies(live) == "live-line"


def test_rejects_and_refers_happen_on_the_policys_surface() -> None:
    """A reject is carried out on the policy's surface (Realtime unless it says ``surface: live``)."""
    facts = CallFacts(call_id="live_1", caller="", dialled="+1999", surface="live")
    assert decide(parse_policy(LIVE_AGENTS), facts, now=NOW, live={}).set_aside
    on_live = parse_policy(LIVE_AGENTS.replace("version: 1\n", "version: 1\nsurface: live\n"))
    decision = decide(on_live, facts, now=NOW, live={})
    assert (decision.action, decision.surface, decision.set_aside) == ("reject", "live", False)


def test_the_live_model_and_voice_lists_are_the_sdks() -> None:
    """The Live models and voices `policy check` knows are those of the SDK's Live accept parameters."""
    from openai.types.live import built_in_voice, session_accept_params

    assert _literals(get_type_hints(session_accept_params.Session)["model"]) == LIVE_MODELS
    assert _literals(built_in_voice.BuiltInVoice) == LIVE_VOICES


def test_the_accept_body_carries_the_agents_options() -> None:
    """Model, instructions, voice, audio options and function tools reach OpenAI's accept body."""
    body = accept_body(parse_policy(FULL_AGENT).agents["full"])
    assert body["model"] == "gpt-realtime-mini"
    assert body["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert body["audio"]["input"]["noise_reduction"] == {"type": "far_field"}
    assert body["audio"]["output"] == {"voice": "cedar", "format": {"type": "audio/pcm", "rate": 24000}, "speed": 1.25}
    assert [t["name"] for t in body["tools"]] == ["lookup_order", "end_call"]
    assert "timeout_s" not in body["tools"][0]


def test_turn_detection_null_turns_it_off() -> None:
    """``turn_detection: null`` is sent as null; leaving it out leaves OpenAI's default."""
    policy = parse_policy(FULL_AGENT)
    assert accept_body(policy.agents["no-vad"])["audio"]["input"] == {"turn_detection": None}
    semantic = accept_body(policy.agents["semantic"])["audio"]["input"]
    assert semantic == {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}
    assert "input" not in accept_body(Agent(instructions="x"))["audio"]


def test_accept_decisions_carry_greeting_and_tool_timeouts() -> None:
    """The decided event tells the session worker the greeting and each tool's timeout."""
    decided = decide(parse_policy(FULL_AGENT), CallFacts(call_id="c", dialled="", caller=""), now=NOW, live={})
    assert decided.greeting == "Say hello."
    assert decided.tool_timeouts_s == {"lookup_order": 4.5, "end_call": 10.0}


_vad = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.just("server_vad")},
        optional={
            "threshold": st.floats(0, 1),
            "silence_duration_ms": st.integers(0, 2000),
            "create_response": st.booleans(),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("semantic_vad")},
        optional={"eagerness": st.sampled_from(["low", "medium", "high", "auto"]), "interrupt_response": st.booleans()},
    ),
)
_formats = st.sampled_from(["audio/pcmu", "audio/pcma", "audio/pcm"])
_transcription = st.fixed_dictionaries({}, optional={"language": st.sampled_from(["en", "de"])})
_agents = st.fixed_dictionaries(
    {"instructions": st.text(max_size=20)},
    optional={
        "model": st.sampled_from(["gpt-realtime", "gpt-realtime-2"]),
        "voice": st.sampled_from(["marin", "cedar", "alloy"]),
        "audio": st.fixed_dictionaries(
            {},
            optional={
                "input": st.fixed_dictionaries(
                    {},
                    optional={
                        "format": _formats,
                        "noise_reduction": st.sampled_from(["near_field", "far_field"]),
                        "transcription": _transcription,
                        "turn_detection": _vad,
                    },
                ),
                "output": st.fixed_dictionaries({}, optional={"format": _formats, "speed": st.floats(0.25, 1.5)}),
            },
        ),
        "tools": st.lists(
            st.fixed_dictionaries(
                {"name": st.from_regex(r"\A[a-z_]{1,20}\Z")}, optional={"timeout_s": st.floats(0.1, 300)}
            ),
            max_size=3,
            unique_by=lambda t: t["name"],
        ),
    },
)


@given(_agents)
def test_any_valid_agent_gives_a_body_the_sdk_accepts(raw: dict[str, Any]) -> None:
    """Whatever combination of options an agent has, its accept body is a valid CallAcceptParams."""
    assert_openai_accepts(accept_body(msgspec.convert(raw, Agent)))


# --- capacity ----------------------------------------------------------------------------------------

CAPPED = """
version: 1
agents: {a: {instructions: x}}
rules:
  - name: sales
    when: {dialled: "+1555"}
    accept: {agent: a}
    max_live_calls: 2
  - name: support
    when: {dialled: "+1666"}
    accept: {agent: a}
    max_live_calls: 1
    when_full: {refer: {target_uri: "tel:+14155550123"}, reason: overflow desk}
default: {reject: closed}
"""


def dialled(number: str) -> CallFacts:
    return CallFacts(call_id="c", dialled=number, caller="+14155550000")


def test_a_rule_below_capacity_accepts() -> None:
    """With fewer live calls than max_live_calls, the rule accepts as usual."""
    decided = decide(parse_policy(CAPPED), dialled("+1555"), now=NOW, live={"sales": 1})
    assert (decided.action, decided.rule, decided.capacity_full) == ("accept", "sales", False)


def test_a_full_rule_rejects_busy_by_default() -> None:
    """At max_live_calls, a rule without when_full rejects 486 and says it is at capacity."""
    decided = decide(parse_policy(CAPPED), dialled("+1555"), now=NOW, live={"sales": 2})
    assert (decided.action, decided.status_code, decided.rule, decided.capacity_full) == ("reject", 486, "sales", True)
    assert decided.reason == "rule sales is at capacity (2 live calls)"


def test_a_full_rule_applies_its_when_full() -> None:
    """A full rule with ``when_full: refer`` transfers the call instead."""
    decided = decide(parse_policy(CAPPED), dialled("+1666"), now=NOW, live={"support": 1})
    assert (decided.action, decided.target_uri, decided.reason) == ("refer", "tel:+14155550123", "overflow desk")
    assert decided.capacity_full


def test_other_rules_live_calls_do_not_count() -> None:
    """Only the matching rule's own live count is compared with its limit."""
    decided = decide(parse_policy(CAPPED), dialled("+1555"), now=NOW, live={"support": 99, "default": 99})
    assert decided.action == "accept"


def test_the_third_concurrent_call_is_busy_and_a_fourth_after_one_ends_is_accepted() -> None:
    """Counting live calls with `occupies`: limit 2 → accept, accept, 486, then accept once one ended."""
    policy = parse_policy(CAPPED)
    live: dict[str, int] = {}
    outcomes = []
    for step in ("call", "call", "call", "end", "call"):
        if step == "end":
            live["sales"] -= 1
            continue
        decided = decide(policy, dialled("+1555"), now=NOW, live=live)
        outcomes.append(decided.status_code or decided.action)
        if (rule := occupies(decided)) is not None:
            live[rule] = live.get(rule, 0) + 1
    assert outcomes == ["accept", "accept", 486, "accept"]


def test_capacity_limits_lists_the_capped_rules() -> None:
    """The runtime learns which rules need live counts, and their limits."""
    assert capacity_limits(parse_policy(CAPPED)) == {"sales": 2, "support": 1}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (("max_live_calls: 2", "max_live_calls: 0"), "rules[0] (sales): max_live_calls: must be at least 1"),
        (("accept: {agent: a}\n    max_live_calls: 2", "reject: busy\n    max_live_calls: 2"), "only an accept rule"),
        (("when_full: {refer", "when_full: {accept: {agent: a}, refer"), "when_full: exactly one of"),
        (('{refer: {target_uri: "tel:+14155550123"}', "{accept: {agent: a}"), "when_full.accept: a full rule cannot"),
        (("    max_live_calls: 1\n", ""), "rules[1] (support): when_full: needs max_live_calls"),
    ],
)
def test_capacity_mistakes_are_refused(change: tuple[str, str], fragment: str) -> None:
    """max_live_calls must be positive and on an accept rule; when_full must reject or refer."""
    with pytest.raises(PolicyError) as info:
        parse_policy(CAPPED.replace(*change))
    assert fragment in str(info.value)


# --- maximum call duration ---------------------------------------------------------------------------

DURATIONS = """
version: 1
max_call_duration_s: 7200
agents: {a: {instructions: x}}
rules:
  - name: short
    when: {dialled: "+1555"}
    accept: {agent: a}
    max_live_calls: 1
    max_call_duration_s: 600
    when_full: {refer: {target_uri: "tel:+14155550123"}}
  - name: long
    when: {dialled: "+1666"}
    accept: {agent: a}
    max_live_calls: 3
  - name: closed
    when: {dialled: "+1777"}
    reject: closed
default: {accept: {agent: a}}
"""


def test_an_accept_carries_its_rules_max_call_duration() -> None:
    """A rule's own max_call_duration_s is the decision's max_duration_s."""
    decided = decide(parse_policy(DURATIONS), dialled("+1555"), now=NOW, live={})
    assert (decided.action, decided.max_duration_s) == ("accept", 600.0)


def test_an_accept_without_its_own_takes_the_policys_max_call_duration() -> None:
    """A rule without one, and the default outcome, use the policy-wide max_call_duration_s."""
    policy = parse_policy(DURATIONS)
    assert decide(policy, dialled("+1666"), now=NOW, live={}).max_duration_s == 7200.0
    assert decide(policy, dialled("+1999"), now=NOW, live={}).max_duration_s == 7200.0


def test_the_max_call_duration_is_four_hours_unless_given() -> None:
    """A policy that names no max_call_duration_s lets accepted calls last 4 h."""
    assert decide(parse_policy(CAPPED), dialled("+1555"), now=NOW, live={}).max_duration_s == 14400.0


def test_only_accepts_carry_a_max_duration() -> None:
    """Rejects, refers and a full rule's when_full have no max_duration_s, and their events omit it."""
    policy = parse_policy(DURATIONS)
    for decided in (
        decide(policy, dialled("+1777"), now=NOW, live={}),
        decide(policy, dialled("+1555"), now=NOW, live={"short": 1}),
    ):
        assert decided.max_duration_s is None
        assert "max_duration_s" not in msgspec.to_builtins(decided)


def test_capacity_max_ages_gives_each_capped_rules_max_call_duration() -> None:
    """Capacity counts a capped rule's calls for their rule's maximum duration."""
    assert capacity_max_ages(parse_policy(DURATIONS)) == {"short": 600.0, "long": 7200.0}


def test_a_decision_recorded_before_max_durations_existed_still_reads() -> None:
    """An old accepted decision without max_duration_s converts, with None for it."""
    old = msgspec.convert({"action": "accept", "rule": "r", "reason": "x", "agent": "a"}, Decided)
    assert old.max_duration_s is None


def test_decide_needs_an_aware_time() -> None:
    """A naive `now` is a programming error: time zones would silently be wrong."""
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(parse_policy(CAPPED), dialled("+1555"), now=datetime(2026, 1, 1), live={})


# --- the built-in policy -----------------------------------------------------------------------------


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31)),
    st.integers(-12 * 60, 14 * 60),
)
def test_the_demo_calls_get_the_same_decisions_at_any_time(when: datetime, offset_min: int) -> None:
    """The built-in policy rejects +1900 callers, refers +18005550199, accepts other +1800 numbers, at any hour."""
    now = when.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    policy = load_policy(None)

    def decided(caller: str, number: str) -> tuple[object, ...]:
        d = decide(policy, CallFacts(call_id="c", caller=caller, dialled=number), now=now, live={})
        return d.action, d.rule, d.status_code or d.target_uri or d.agent

    assert decided("+19005550000", "+18005550100") == ("reject", "blocked-callers", 603)
    assert decided("+14155550102", "+18005550199") == ("refer", "after-hours-desk", "tel:+14155550123")
    assert decided("+14155550101", "+18005550100") == ("accept", "support-line", "concierge")
    assert decided("+14155550101", "+14155550100") == ("reject", "default", 480)
