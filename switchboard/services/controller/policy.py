"""The routing policy: its model (msgspec Structs loaded from YAML), validation, and matching.

Pure: no I/O beyond `load_policy` reading one file. Rules are ordered, the first match wins, and a
default is required. A rule's ``when`` matches the dialled number and the caller (parsed from the
``To``/``From`` SIP URIs) and SIP headers; its action is exactly one of ``accept`` (a named agent),
``reject`` (a SIP status code) or ``refer`` (a ``tel:``/``sip:`` target).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from switchboard.shared.errors import ConfigError
from switchboard.shared.events import SipHeader


class PolicyError(ConfigError):
    """A policy that cannot be used; `problems` names each rule/field that is wrong."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"invalid policy {source}: " + "; ".join(self.problems))


# --- the model ---------------------------------------------------------------------------------------

_Strings = str | list[str]


class TextMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a value (a number or a header) must look; every given condition must hold."""

    exact: _Strings | None = None
    prefix: _Strings | None = None
    regex: str | None = None


class HeaderMatch(TextMatch, frozen=True, forbid_unknown_fields=True):
    present: bool | None = None


_NumberMatch = TextMatch | str | list[str]
"""A bare string is an exact number, a list is any of those numbers."""


class When(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dialled: _NumberMatch | None = None
    caller: _NumberMatch | None = None
    headers: dict[str, HeaderMatch] = {}


class Tool(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout_s: float = 10.0


class Agent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    instructions: str
    model: str = "gpt-realtime"
    voice: str = "marin"
    greeting: str | None = None
    tools: list[Tool] = []


class Accept(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    agent: str


class Reject(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status_code: int = 603


class Refer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    target_uri: str


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Exactly one of accept / reject / refer."""

    accept: Accept | None = None
    reject: Reject | None = None
    refer: Refer | None = None
    reason: str = ""


class Rule(Outcome, frozen=True, forbid_unknown_fields=True):
    name: str = ""
    when: When = When()


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    agents: dict[str, Agent]
    default: Outcome
    rules: list[Rule] = []


# --- the facts a decision is made from ---------------------------------------------------------------


class CallFacts(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    dialled: str
    caller: str
    headers: tuple[SipHeader, ...] = ()


_URI_USER = re.compile(r"(?:sips?|tel):([^@;>?\s]+)", re.IGNORECASE)


def number_from_uri(value: str) -> str:
    """The user part of a SIP ``From``/``To`` value (``"Ann" <sip:+1555@host>;tag=x`` → ``+1555``)."""
    found = _URI_USER.search(value)
    return found.group(1) if found else value.strip()


def facts_from_incoming(call_id: str, sip_headers: Sequence[SipHeader]) -> CallFacts:
    def first(name: str) -> str:
        return next((h.value for h in sip_headers if h.name.lower() == name), "")

    return CallFacts(
        call_id=call_id,
        dialled=number_from_uri(first("to")),
        caller=number_from_uri(first("from")),
        headers=tuple(sip_headers),
    )


# --- matching ----------------------------------------------------------------------------------------


def _as_list(value: _Strings | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def text_matches(match: _NumberMatch, value: str) -> bool:
    if isinstance(match, str):
        return value == match
    if isinstance(match, list):
        return value in match
    if match.exact is not None and value not in _as_list(match.exact):
        return False
    if match.prefix is not None and not any(value.startswith(p) for p in _as_list(match.prefix)):
        return False
    return not (match.regex is not None and re.search(match.regex, value) is None)


def _header_matches(name: str, match: HeaderMatch, headers: Sequence[SipHeader]) -> bool:
    values = [h.value for h in headers if h.name.lower() == name.lower()]
    if match.present is not None and bool(values) != match.present:
        return False
    if match.exact is None and match.prefix is None and match.regex is None:
        return True
    return any(text_matches(match, v) for v in values)


def rule_matches(when: When, call: CallFacts) -> bool:
    if when.dialled is not None and not text_matches(when.dialled, call.dialled):
        return False
    if when.caller is not None and not text_matches(when.caller, call.caller):
        return False
    return all(_header_matches(name, m, call.headers) for name, m in when.headers.items())


def first_match(policy: Policy, call: CallFacts) -> tuple[str, Outcome]:
    """(rule name, outcome) of the first rule that matches, else ("default", the default)."""
    for rule in policy.rules:
        if rule_matches(rule.when, call):
            return rule.name, rule
    return "default", policy.default


# --- loading and validation --------------------------------------------------------------------------


def _check_outcome(where: str, outcome: Outcome, agents: dict[str, Agent]) -> list[str]:
    problems: list[str] = []
    chosen = [k for k in ("accept", "reject", "refer") if getattr(outcome, k) is not None]
    if len(chosen) != 1:
        problems.append(f"{where}: exactly one of accept, reject or refer is required (got {chosen or 'none'})")
    if outcome.accept is not None and outcome.accept.agent not in agents:
        problems.append(f"{where}.accept.agent: unknown agent {outcome.accept.agent!r} (known: {sorted(agents)})")
    if outcome.reject is not None and not 400 <= outcome.reject.status_code <= 699:
        problems.append(f"{where}.reject.status_code: must be a SIP error status 400-699")
    if outcome.refer is not None and not outcome.refer.target_uri.startswith(("tel:", "sip:", "sips:")):
        problems.append(f"{where}.refer.target_uri: must start with tel: or sip:")
    return problems


def _check_regexes(where: str, when: When) -> list[str]:
    problems = []
    candidates: list[tuple[str, _NumberMatch | None]] = [("dialled", when.dialled), ("caller", when.caller)]
    candidates += [(f"headers.{name}", m) for name, m in when.headers.items()]
    for field, match in candidates:
        if isinstance(match, TextMatch) and match.regex is not None:
            try:
                re.compile(match.regex)
            except re.error as exc:
                problems.append(f"{where}.when.{field}.regex: {exc}")
    return problems


def validate(policy: Policy, source: str = "<policy>") -> Policy:
    problems: list[str] = []
    if policy.version != 1:
        problems.append(f"version: only version 1 is known, got {policy.version}")
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        where = f"rules[{i}]" + (f" ({rule.name})" if rule.name else "")
        if not rule.name:
            problems.append(f"{where}.name: every rule needs a name")
        elif rule.name in seen:
            problems.append(f"{where}.name: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        problems += _check_outcome(where, rule, policy.agents)
        problems += _check_regexes(where, rule.when)
    problems += _check_outcome("default", policy.default, policy.agents)
    if problems:
        raise PolicyError(source, problems)
    return policy


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(source, [f"not valid YAML: {exc}"]) from None
    try:
        policy = msgspec.convert(raw, Policy)
    except msgspec.ValidationError as exc:
        raise PolicyError(source, [str(exc)]) from None
    return validate(policy, source)


def load_policy(path: str | Path | None) -> Policy:
    """The policy at `path`, or the built-in example policy when `path` is None."""
    if path is None:
        text = resources.files(__package__).joinpath("default_policy.yaml").read_text()
        return parse_policy(text, "built-in example policy")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PolicyError(str(p), [f"cannot read: {exc.strerror}"]) from None
    return parse_policy(text, str(p))
