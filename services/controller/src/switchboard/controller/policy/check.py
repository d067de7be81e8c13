"""Semantic validation of a policy (pure): what its types cannot say, every problem at once.

Each problem is found at a path inside the document (`FieldPath`) and rendered as
``source:line where: field: what is wrong``, e.g.::

    policy.yaml:14 rules[2] (after-hours): refer.target_uri: must start with tel:, sip: or sips:

`check_parts` checks the pieces that converted (`load` calls it, and renders with line numbers); `validate`
checks a `Policy` built in code. Refer targets are checked by `switchboard.shared.sip.target_uri_problem`,
the same check as every other refer path.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import phonenumbers

from switchboard.controller.policy.model import (
    DEPRECATED_MODELS,
    LIVE_MODELS,
    LIVE_VOICES,
    MAX_CALL_DURATION_RANGE_S,
    REALTIME_MODELS,
    REJECT_NAMES,
    VOICES,
    WEEKDAYS,
    Agent,
    Audio,
    Hours,
    NumberMatch,
    NumberSpec,
    Outcome,
    Policy,
    Reject,
    Rule,
    Surface,
    TextMatch,
    When,
    agent_model,
    agent_surface,
    as_list,
)
from switchboard.shared.errors import ConfigError
from switchboard.shared.sip import target_uri_problem


class PolicyError(ConfigError):
    """A policy that cannot be used; `problems` names each line, rule and field that is wrong."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid policy {source} ({len(self.problems)} problem(s)):\n{lines}")


FieldPath = tuple[str | int, ...]
"""Where in the policy document: keys and list indexes, e.g. ``("rules", 2, "refer", "target_uri")``."""

_TIME = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")
_DAY = re.compile(rf"^({'|'.join(WEEKDAYS)})(-({'|'.join(WEEKDAYS)}))?$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOOL_TIMEOUT_MAX_S = 300.0


class Problems:
    """Problems found so far, each at a path inside the policy document."""

    def __init__(self) -> None:
        self.items: list[tuple[FieldPath, str]] = []

    def add(self, path: FieldPath, message: str) -> None:
        self.items.append((path, message))


def _check_outcome(out: Problems, at: FieldPath, outcome: Outcome, agents: Iterable[str]) -> None:
    chosen = [k for k in ("accept", "reject", "refer") if getattr(outcome, k) is not None]
    if len(chosen) != 1:
        out.add(at, f"exactly one of accept, reject or refer is required (got {', '.join(chosen) or 'none'})")
    known = sorted(agents)
    if outcome.accept is not None and outcome.accept.agent not in known:
        out.add((*at, "accept", "agent"), f"unknown agent {outcome.accept.agent!r} (known: {', '.join(known)})")
    if isinstance(outcome.reject, str) and outcome.reject not in REJECT_NAMES:
        names = ", ".join(f"{k} ({v})" for k, v in REJECT_NAMES.items())
        out.add((*at, "reject"), f"unknown name {outcome.reject!r}: use a status_code or one of {names}")
    elif isinstance(outcome.reject, Reject) and not 400 <= outcome.reject.status_code <= 699:
        out.add((*at, "reject", "status_code"), "must be a SIP error status 400-699")
    problem = None if outcome.refer is None else target_uri_problem(outcome.refer.target_uri)
    if problem is not None:
        out.add((*at, "refer", "target_uri"), problem)


def _check_regex(out: Problems, at: FieldPath, match: object) -> None:
    if isinstance(match, TextMatch) and match.regex is not None:
        try:
            re.compile(match.regex)
        except re.error as exc:
            out.add((*at, "regex"), f"not a valid regular expression: {exc}")


def _check_number(out: Problems, at: FieldPath, match: NumberSpec | None) -> None:
    _check_regex(out, at, match)
    if not isinstance(match, NumberMatch):
        return
    for region in as_list(match.country):
        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            out.add((*at, "country"), f"unknown country {region!r}: use ISO 3166 codes like US, CA, GB")
    codes = [match.country_code] if isinstance(match.country_code, int) else match.country_code or []
    for code in codes:
        if code not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            out.add((*at, "country_code"), f"{code} is not an E.164 country calling code")


def _check_hours(out: Problems, at: FieldPath, hours: Hours) -> None:
    try:
        ZoneInfo(hours.tz)
    except (ZoneInfoNotFoundError, ValueError):
        out.add((*at, "tz"), f"unknown time zone {hours.tz!r} (use an IANA name like America/New_York)")
    times_ok = True
    for field, value in (("from", hours.from_), ("to", hours.to)):
        if not _TIME.match(value) or (field == "from" and value == "24:00"):
            out.add((*at, field), f"{value!r} is not a time of day HH:MM (00:00-23:59, or 24:00 for to)")
            times_ok = False
    if times_ok and hours.from_ == hours.to:
        out.add((*at, "to"), "equals from: for a whole day use from: '00:00', to: '24:00'")
    for i, day in enumerate(hours.days):
        if not _DAY.match(day.lower()):
            out.add((*at, "days", i), f"{day!r} is not a day or range like mon, sat-sun, mon-fri")


def _check_when(out: Problems, at: FieldPath, when: When) -> None:
    _check_number(out, (*at, "dialled"), when.dialled)
    _check_number(out, (*at, "caller"), when.caller)
    for name, header in when.headers.items():
        _check_regex(out, (*at, "headers", name), header)
        has_text = header.exact is not None or header.prefix is not None or header.regex is not None
        if header.present is False and has_text:
            out.add((*at, "headers", name), "present: false cannot be combined with exact, prefix or regex")
    windows = [when.hours] if isinstance(when.hours, Hours) else when.hours or []
    for i, window in enumerate(windows):
        _check_hours(out, (*at, "hours") if isinstance(when.hours, Hours) else (*at, "hours", i), window)


def _check_duration(out: Problems, at: FieldPath, seconds: float) -> None:
    low, high = MAX_CALL_DURATION_RANGE_S
    if not low <= seconds <= high:  # also refuses NaN
        out.add(at, f"must be at least {low:g} and at most {high:g} seconds (24 h), got {seconds:g}")


def _check_rule(out: Problems, at: FieldPath, rule: Rule, agents: Iterable[str]) -> None:
    agents = list(agents)
    _check_outcome(out, at, rule, agents)
    _check_when(out, (*at, "when"), rule.when)
    if rule.max_call_duration_s is not None:
        _check_duration(out, (*at, "max_call_duration_s"), rule.max_call_duration_s)
        if rule.accept is None:
            out.add((*at, "max_call_duration_s"), "only an accept rule has calls whose duration to limit")
    if rule.max_live_calls is not None:
        if rule.max_live_calls < 1:
            out.add((*at, "max_live_calls"), "must be at least 1")
        if rule.accept is None:
            out.add((*at, "max_live_calls"), "only an accept rule has live calls to count")
    if rule.when_full is not None:
        if rule.max_live_calls is None:
            out.add((*at, "when_full"), "needs max_live_calls")
        _check_outcome(out, (*at, "when_full"), rule.when_full, agents)
        if rule.when_full.accept is not None:
            out.add((*at, "when_full", "accept"), "a full rule cannot accept: use reject or refer")


def _check_live_agent(out: Problems, at: FieldPath, agent: Agent) -> None:
    """What a Live agent cannot have: Realtime's audio settings; tools without Responses delegation."""
    if agent.audio != Audio():
        out.add((*at, "audio"), "Realtime only: on Live, SIP negotiates the media; give the agent a voice")
    delegation = agent.delegation
    if agent.tools and (delegation is None or delegation.type != "responses"):
        out.add((*at, "tools"), "a Live agent's tools are called through Responses delegation: add "
                                "delegation: {type: responses, model: <a Responses model>}")  # fmt: skip
    if delegation is not None and delegation.type == "responses" and not delegation.model:
        out.add((*at, "delegation", "model"), "Responses delegation needs the Responses model that does the work")
    if delegation is not None and delegation.type == "client" and (delegation.model or delegation.instructions):
        out.add((*at, "delegation"), "model and instructions are for type: responses")


def _check_agent(out: Problems, at: FieldPath, agent: Agent, surface: Surface) -> None:
    if surface == "live":
        _check_live_agent(out, at, agent)
    else:
        for field in ("delegation", "triggers"):
            if getattr(agent, field):
                out.add((*at, field), "Live only: set surface: live on the agent (or the policy) to use it")
    speed = agent.audio.output.speed
    if speed is not None and not 0.25 <= speed <= 1.5:
        out.add((*at, "audio", "output", "speed"), "must be between 0.25 and 1.5")
    seen: set[str] = set()
    for i, tool in enumerate(agent.tools):
        where = (*at, "tools", i)
        if not _TOOL_NAME.match(tool.name):
            out.add((*where, "name"), "1-64 letters, digits, _ or - (it becomes the subject tools.<name>)")
        elif tool.name in seen:
            out.add((*where, "name"), f"duplicate tool name {tool.name!r}")
        seen.add(tool.name)
        if not 0 < tool.timeout_s <= _TOOL_TIMEOUT_MAX_S:
            out.add((*where, "timeout_s"), f"must be more than 0 and at most {_TOOL_TIMEOUT_MAX_S:g} seconds")
        if tool.parameters.get("type") != "object":
            out.add((*where, "parameters"), "must be a JSON schema with type: object")


def check_parts(
    out: Problems,
    version: int | None,
    agents: Mapping[str, Agent],
    agent_names: Iterable[str],
    rules: Iterable[tuple[int, Rule]],
    default: Outcome | None,
    max_call_duration_s: float | None = None,
    surface: Surface = "realtime",
) -> None:
    """Check what converted; `agent_names` also holds agents that failed to convert (not "unknown").
    `surface` is the policy's (agents that name none answer on it)."""
    names = sorted(agent_names)
    if version is not None and version != 1:
        out.add(("version",), f"only version 1 is known, got {version}")
    if max_call_duration_s is not None:
        _check_duration(out, ("max_call_duration_s",), max_call_duration_s)
    for name, agent in agents.items():
        _check_agent(out, ("agents", name), agent, agent.surface or surface)
    seen: set[str] = set()
    for i, rule in rules:
        if not rule.name:
            out.add(("rules", i, "name"), "every rule needs a name")
        elif rule.name == "default":
            out.add(("rules", i, "name"), "'default' is the name of the default outcome")
        elif rule.name in seen:
            out.add(("rules", i, "name"), f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        _check_rule(out, ("rules", i), rule, names)
    if default is not None:
        _check_outcome(out, ("default",), default, names)


_CURRENT_MODELS = ("gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini")


def _unknown_name(kind: str, name: str, known: Iterable[str], examples: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"e.g. {', '.join(examples)}"
    return f"{name!r} is not a {kind} the openai SDK names ({hint}); OpenAI refuses calls if it does not exist"


def check_warnings(out: Problems, policy: Policy) -> None:
    """What is valid but likely wrong: a deprecated or unknown model, an unknown voice (see `REALTIME_MODELS`)."""
    for name, agent in policy.agents.items():
        surface = agent_surface(policy, agent)
        model = agent_model(agent, surface)
        models, voices = (LIVE_MODELS, LIVE_VOICES) if surface == "live" else (REALTIME_MODELS, VOICES)
        current = sorted(LIVE_MODELS) if surface == "live" else _CURRENT_MODELS
        if model in DEPRECATED_MODELS and surface == "realtime":
            shutdown, instead = DEPRECATED_MODELS[model]
            out.add(("agents", name, "model"),
                    f"{model!r} is deprecated: OpenAI shuts it down on {shutdown}; use {instead!r}")  # fmt: skip
        elif model not in models:
            what = "Live model" if surface == "live" else "Realtime model"
            out.add(("agents", name, "model"), _unknown_name(what, model, models, current))
        if agent.voice not in voices:
            out.add(("agents", name, "voice"), _unknown_name("voice", agent.voice, voices, sorted(voices)))


def _heading(path: FieldPath, raw: Any) -> tuple[str, str]:
    """("rules[2] (after-hours)", "refer.target_uri") for a problem's path."""
    if not path:
        return "policy", ""
    rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[2:]).lstrip(".")
    if path[0] == "rules" and len(path) > 1 and isinstance(path[1], int):
        rules = raw.get("rules") if isinstance(raw, dict) else None
        name = rules[path[1]].get("name") if isinstance(rules, list) and path[1] < len(rules) else None
        named = f" ({name})" if isinstance(name, str) and name else ""
        return f"rules[{path[1]}]{named}", rest
    if path[0] == "agents" and len(path) > 1:
        return f"agents.{path[1]}", rest
    return str(path[0]), "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:]).lstrip(".")


def render_problems(
    source: str, problems: Problems, raw: Any, line_of: Callable[[FieldPath], int | None] | None = None
) -> list[str]:
    """Each problem as ``source:line where: field: message``, in the order of the file.

    `raw` is the document as plain data (for rule names); `line_of` finds a path's line, when there is a file.
    """
    rendered = []
    for path, message in problems.items:
        line = None if line_of is None else line_of(path)
        head, field = _heading(path, raw)
        where = f"{source}:{line}" if line is not None else source
        rendered.append((line or 0, f"{where} {head}: {field + ': ' if field else ''}{message}"))
    return [text for _, text in sorted(rendered, key=lambda item: item[0])]


def validate(policy: Policy, source: str = "<policy>") -> Policy:
    """`policy` itself, or PolicyError naming every rule and field that is wrong (without line numbers)."""
    problems = Problems()
    rules = list(enumerate(policy.rules))
    check_parts(
        problems, policy.version, policy.agents, policy.agents, rules, policy.default, policy.max_call_duration_s,
        policy.surface,
    )  # fmt: skip
    if problems.items:
        raise PolicyError(source, render_problems(source, problems, msgspec.to_builtins(policy)))
    return policy
