"""Deciding a call: a pure function of (policy, call facts) → the `Decided` event's payload.

Also builds the accept body OpenAI expects (`CallAcceptParams`) from a named agent.
"""

from __future__ import annotations

from typing import Any

from switchboard.services.controller.policy import Agent, CallFacts, Policy, first_match
from switchboard.shared.events import Decided


def accept_body(agent: Agent) -> dict[str, Any]:
    """The session configuration sent with ``POST /realtime/calls/{id}/accept``."""
    body: dict[str, Any] = {
        "type": "realtime",
        "model": agent.model,
        "instructions": agent.instructions,
        "audio": {"output": {"voice": agent.voice}},
    }
    if agent.tools:
        body["tools"] = [
            {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
            for t in agent.tools
        ]
    return body


def decide(policy: Policy, call: CallFacts) -> Decided:
    """What to do with `call` under `policy`: accept (with the agent's session), reject or refer."""
    rule, outcome = first_match(policy, call)
    reason = outcome.reason or f"matched {rule}"
    if outcome.accept is not None:
        agent = policy.agents[outcome.accept.agent]
        return Decided(
            action="accept",
            rule=rule,
            reason=reason,
            agent=outcome.accept.agent,
            accept=accept_body(agent),
            greeting=agent.greeting,
        )
    if outcome.refer is not None:
        return Decided(action="refer", rule=rule, reason=reason, target_uri=outcome.refer.target_uri)
    assert outcome.reject is not None  # validate() guarantees exactly one action
    return Decided(action="reject", rule=rule, reason=reason, status_code=outcome.reject.status_code)
