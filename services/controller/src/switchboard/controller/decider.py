"""Deciding a call: a pure function of (policy, call facts, the instant, live counts) → the `Decided` payload.

`decide` takes the time as an argument and the live calls per rule as a mapping the controller keeps
(counted cluster-wide from the log: see `occupies`), so the same inputs always give the same decision,
and `switchboard policy whatif` can re-decide past calls exactly as the controller would have.

Also builds the accept body OpenAI expects (the SDK's `CallAcceptParams`) from a named agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from switchboard.controller.policy import (
    BUSY,
    Agent,
    AudioFormat,
    CallFacts,
    Outcome,
    Policy,
    Rule,
    matching_rule,
    max_call_duration,
)
from switchboard.controller.policy.model import Surface, agent_model, agent_surface
from switchboard.shared.events import Decided


def _format(name: AudioFormat) -> dict[str, Any]:
    # pcm is only offered at 24 kHz; naming the rate keeps the body explicit about it.
    return {"type": name, "rate": 24000} if name == "audio/pcm" else {"type": name}


def _audio(agent: Agent) -> dict[str, Any]:
    given, out = agent.audio.input, agent.audio.output
    audio_in: dict[str, Any] = {}
    if given.format is not None:
        audio_in["format"] = _format(given.format)
    if given.noise_reduction is not None:
        audio_in["noise_reduction"] = {"type": given.noise_reduction}
    if given.transcription is not None:
        audio_in["transcription"] = msgspec.to_builtins(given.transcription)
    if given.turn_detection is not msgspec.UNSET:
        audio_in["turn_detection"] = msgspec.to_builtins(given.turn_detection)
    audio_out: dict[str, Any] = {"voice": agent.voice}
    if out.format is not None:
        audio_out["format"] = _format(out.format)
    if out.speed is not None:
        audio_out["speed"] = out.speed
    return {"input": audio_in, "output": audio_out} if audio_in else {"output": audio_out}


def accept_body(agent: Agent, surface: Surface | None = None) -> dict[str, Any]:
    """The body of the accept on `surface` (default: the agent's, else Realtime): ``POST
    /realtime/calls/{id}/accept`` takes the session's fields, ``/live/sessions/{id}/accept`` ``{"session"}``."""
    surface = surface or agent.surface or "realtime"
    if surface == "live":
        return {"session": _live_session(agent)}
    body: dict[str, Any] = {
        "type": "realtime",
        "model": agent_model(agent, "realtime"),
        "instructions": agent.instructions,
        "audio": _audio(agent),
    }
    if agent.tools:
        body["tools"] = _function_tools(agent)
    return body


def _function_tools(agent: Agent) -> list[dict[str, Any]]:
    return [
        {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
        for t in agent.tools
    ]


def _live_session(agent: Agent) -> dict[str, Any]:
    """A Live accept's ``session`` (the SDK's `SessionAcceptParams`): no audio format, tools via delegation."""
    session: dict[str, Any] = {
        "type": "live",
        "model": agent_model(agent, "live"),
        "instructions": agent.instructions,
        "audio": {"output": {"voice": agent.voice}},
    }
    given = agent.delegation
    if given is not None:
        delegation: dict[str, Any] = {"type": given.type}
        if given.type == "responses":
            backend: dict[str, Any] = {"model": given.model}
            if given.instructions:
                backend["instructions"] = given.instructions
            if agent.tools:
                backend["tools"] = _function_tools(agent)
            delegation["responses"] = backend
        if given.acknowledgement_delay_ms is not None:
            delegation["acknowledgement_delay_ms"] = given.acknowledgement_delay_ms
        session["delegation"] = delegation
    if agent.triggers:
        session["triggers"] = agent.triggers
    return session


def tool_timeouts(agent: Agent) -> dict[str, float]:
    """How long the session worker waits for each of the agent's tools before answering with an error."""
    return {t.name: t.timeout_s for t in agent.tools}


def _decided(policy: Policy, rule: str, outcome: Outcome, reason: str, *, capacity_full: bool = False) -> Decided:
    if outcome.accept is not None:
        agent = policy.agents[outcome.accept.agent]
        surface = agent_surface(policy, agent)
        return Decided(
            action="accept",
            rule=rule,
            reason=reason,
            agent=outcome.accept.agent,
            surface=surface,
            accept=accept_body(agent, surface),
            greeting=agent.greeting,
            tool_timeouts_s=tool_timeouts(agent),
            max_duration_s=max_call_duration(policy, outcome if isinstance(outcome, Rule) else None),
        )
    if outcome.refer is not None:
        target = outcome.refer.target_uri
        return Decided(
            action="refer", rule=rule, reason=reason, target_uri=target, capacity_full=capacity_full,
            surface=policy.surface,
        )  # fmt: skip
    status = outcome.status_code
    return Decided(
        action="reject", rule=rule, reason=reason, status_code=status, capacity_full=capacity_full,
        surface=policy.surface,
    )  # fmt: skip


def decide(policy: Policy, call: CallFacts, *, now: datetime, live: Mapping[str, int]) -> Decided:
    """What to do with `call` (see `_decide_on`), and whether this id is set aside: a decision carried out
    on another surface than the one the call was offered on belongs to the call's other id."""
    decision = _decide_on(policy, call, now=now, live=live)
    sip_call_id = next((h.value for h in call.headers if h.name.lower() == "call-id"), None)
    set_aside = decision.surface != call.surface
    if set_aside or sip_call_id is not None:
        decision = msgspec.structs.replace(decision, set_aside=set_aside, sip_call_id=sip_call_id)
    return decision


def _decide_on(policy: Policy, call: CallFacts, *, now: datetime, live: Mapping[str, int]) -> Decided:
    """What to do with `call` under `policy` at the instant `now`, given the live calls per rule.

    The first rule whose ``when`` matches decides. If it has ``max_live_calls`` and ``live[rule]`` has
    reached it, its ``when_full`` outcome applies (reject 486 unless given), with ``capacity_full`` set;
    the decision still names that rule. No rule matches → the default, as rule ``default``. An accept
    carries the call's ``max_duration_s`` (the rule's ``max_call_duration_s``, else the policy's).
    """
    if now.utcoffset() is None:
        raise ValueError("decide needs a timezone-aware `now`")
    rule = matching_rule(policy, call, now)
    if rule is None:
        return _decided(policy, "default", policy.default, policy.default.reason or "no rule matched")
    limit = rule.max_live_calls
    if limit is not None and live.get(rule.name, 0) >= limit:
        full = rule.when_full or BUSY
        reason = full.reason or f"rule {rule.name} is at capacity ({limit} live calls)"
        return _decided(policy, rule.name, full, reason, capacity_full=True)
    return _decided(policy, rule.name, rule, rule.reason or f"matched {rule.name}")


def occupies(decided: Decided) -> str | None:
    """The rule whose capacity a call decided this way uses while it is live (accepted calls only), or None.

    The controller counts, cluster-wide, the calls whose ``decided`` event gives a rule here and that have
    not ``ended``; that count per rule is the `live` mapping `decide` takes.
    """
    return decided.rule if decided.action == "accept" and not (decided.capacity_full or decided.set_aside) else None


def capacity_limits(policy: Policy) -> dict[str, int]:
    """Rule name → ``max_live_calls`` for the rules that have one (the only counts `decide` looks at)."""
    return {rule.name: rule.max_live_calls for rule in policy.rules if rule.max_live_calls is not None}


def capacity_max_ages(policy: Policy) -> dict[str, float]:
    """Rule name → the maximum duration of its calls, for the capped rules: how long capacity counts a
    call admitted to the rule whose end it never sees."""
    return {rule.name: max_call_duration(policy, rule) for rule in policy.rules if rule.max_live_calls is not None}
