"""The routing policy: its model (msgspec Structs read from YAML), validation with line numbers, and matching.

Pure: no clocks, no network, no I/O beyond `load_policy` reading one file. Time is an argument.

A policy is agents, ordered rules (the first whose ``when`` matches decides) and a required default. A
rule's ``when`` can look at the dialled number and the caller (the user parts of the SIP ``To``/``From``
URIs: exact, prefix, regex, E.164 country), any SIP header (present/absent, exact, prefix, regex) and time
windows (days and hours in an IANA time zone, minus holidays). Its action is exactly one of ``accept`` (a
named agent), ``reject`` (a SIP status code) or ``refer`` (a ``tel:``, ``sip:`` or ``sips:`` target). A
rule may have a capacity, ``max_live_calls``: when that many calls it accepted are live, its ``when_full``
outcome applies instead (reject 486 unless given). The capacity check itself lives in the decider, since it needs
the live counts the controller keeps. Every accepted call has a maximum duration (``max_call_duration_s``:
the rule's, else the policy's, 4 h by default): the session worker hangs up a call that reaches it, and
capacity stops counting a call whose end was never recorded once it has run out.

`parse_policy` reports every problem it can find at once, each naming the file, line, rule and field::

    policy.yaml:14 rules[2] (after-hours): refer.target_uri: must start with tel:, sip: or sips:
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import phonenumbers
import yaml

from switchboard.shared.errors import ConfigError
from switchboard.shared.events import SipHeader
from switchboard.shared.sip import target_uri_problem, user_part

POLICY_MAX_BYTES = 512 * 1024
"""Longest policy text accepted (it also has to fit in one NATS message when pushed to the KV)."""

MATCH_MAX_CHARS = 1024
"""SIP values are untrusted: only this many leading characters are matched, which bounds regex work."""


class PolicyError(ConfigError):
    """A policy that cannot be used; `problems` names each line, rule and field that is wrong."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid policy {source} ({len(self.problems)} problem(s)):\n{lines}")


# --- the model ---------------------------------------------------------------------------------------

_Strings = str | list[str]


class TextMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a value must look; every condition given must hold (a list means any one of them)."""

    exact: _Strings | None = None
    prefix: _Strings | None = None
    regex: str | None = None


class NumberMatch(TextMatch, frozen=True, forbid_unknown_fields=True):
    """A number: text conditions, plus the country it belongs to (parsed as E.164 with phonenumbers)."""

    country: _Strings | None = None
    """ISO 3166 region codes, e.g. ``[US, CA]`` (``+1 416…`` is CA, ``+1 415…`` is US)."""
    country_code: int | list[int] | None = None
    """E.164 calling codes, e.g. ``1`` or ``[44, 353]``."""


class HeaderMatch(TextMatch, frozen=True, forbid_unknown_fields=True):
    """A SIP header (name matched case-insensitively): present/absent, and conditions on any of its values."""

    present: bool | None = None


_NumberSpec = NumberMatch | str | list[str]
"""A bare string is an exact number, a list is any of those numbers."""

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Hours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A weekly window in a time zone: on `days`, from `from` until (not including) `to`, except holidays.

    A window whose `to` is not after `from` runs past midnight and belongs to the day it starts on
    (``days`` and ``holidays`` are checked for that day). ``to: "24:00"`` means the end of the day.
    """

    tz: str
    from_: str = msgspec.field(name="from")
    to: str
    days: list[str] = msgspec.field(default_factory=lambda: ["mon-sun"])
    holidays: list[date] = []


class When(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a call must look like for a rule to match; every condition given must hold."""

    dialled: _NumberSpec | None = None
    caller: _NumberSpec | None = None
    headers: dict[str, HeaderMatch] = {}
    hours: Hours | list[Hours] | None = None
    """One window or several (any one of them)."""


class Tool(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A function tool: the model's call becomes a request on ``tools.<name>``, answered within `timeout_s`."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout_s: float = 10.0


AudioFormat = Literal["audio/pcmu", "audio/pcma", "audio/pcm"]


class Transcription(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class ServerVad(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="server_vad", tag_field="type"
):
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    idle_timeout_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class SemanticVad(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, tag="semantic_vad", tag_field="type"
):
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class AudioInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: AudioFormat | None = None
    noise_reduction: Literal["near_field", "far_field"] | None = None
    transcription: Transcription | None = None
    turn_detection: ServerVad | SemanticVad | msgspec.UnsetType | None = msgspec.UNSET
    """Absent: OpenAI's default; ``null``: turned off."""


class AudioOutput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: AudioFormat | None = None
    speed: float | None = None


class Audio(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    input: AudioInput = AudioInput()
    output: AudioOutput = AudioOutput()


class Agent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The Realtime session an accepted call gets, and what the session worker does with it."""

    instructions: str
    model: str = "gpt-realtime"
    voice: str = "marin"
    greeting: str | None = None
    audio: Audio = Audio()
    tools: list[Tool] = []


class Accept(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    agent: str


class Reject(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status_code: int = 603


REJECT_NAMES: Mapping[str, int] = {
    "busy": 486,
    "closed": 480,
    "unavailable": 480,
    "blocked": 603,
    "declined": 603,
    "forbidden": 403,
    "not_found": 404,
}
"""``reject: busy`` is shorthand for ``reject: {status_code: 486}``, and so on."""


class Refer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    target_uri: str


class Outcome(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Exactly one of accept / reject / refer, and why (the ``reason`` in the `decided` event)."""

    accept: Accept | None = None
    reject: Reject | str | None = None
    refer: Refer | None = None
    reason: str = ""

    @property
    def status_code(self) -> int | None:
        """The SIP status of a reject (shorthand names resolved), else None."""
        if isinstance(self.reject, str):
            return REJECT_NAMES[self.reject]
        return None if self.reject is None else self.reject.status_code


BUSY = Outcome(reject=Reject(status_code=486))
"""What a full rule does when it has no ``when_full``."""


class Rule(Outcome, frozen=True, forbid_unknown_fields=True):
    name: str = ""
    when: When = When()
    max_live_calls: int | None = None
    """At most this many live calls accepted by this rule, counted cluster-wide by the controller."""
    when_full: Outcome | None = None
    """What happens instead when the rule is at capacity (reject or refer; default reject 486)."""
    max_call_duration_s: float | None = None
    """The longest a call this rule accepts may last (seconds); unset: the policy's ``max_call_duration_s``."""


DEFAULT_MAX_CALL_DURATION_S = 4 * 3600.0
"""How long an accepted call may last when neither its rule nor the policy says (4 h)."""
MAX_CALL_DURATION_RANGE_S = (1.0, 24 * 3600.0)
"""The values ``max_call_duration_s`` may take: at least a second, at most a day."""


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: int
    agents: dict[str, Agent]
    default: Outcome
    rules: list[Rule] = []
    max_call_duration_s: float = DEFAULT_MAX_CALL_DURATION_S
    """The longest an accepted call may last (seconds), for the default outcome and every rule without
    its own: the session worker hangs up a call that reaches it (end reason ``max_duration``), and a call
    whose end is never recorded stops counting against its rule's capacity soon after."""


def max_call_duration(policy: Policy, rule: Rule | None) -> float:
    """The maximum duration (seconds) of a call accepted by `rule` (None: the default outcome)."""
    if rule is not None and rule.max_call_duration_s is not None:
        return rule.max_call_duration_s
    return policy.max_call_duration_s


# --- the facts a decision is made from ---------------------------------------------------------------


class CallFacts(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    dialled: str
    caller: str
    headers: tuple[SipHeader, ...] = ()


def facts_from_incoming(call_id: str, sip_headers: Sequence[SipHeader]) -> CallFacts:
    """The facts of an incoming call: dialled number and caller from ``To``/``From``, and all headers.

    A number is the user part of the header's URI (`switchboard.shared.sip.user_part`), "" when there is none.
    """

    def number(name: str) -> str:
        value = next((h.value for h in sip_headers if h.name.lower() == name), "")
        return user_part(value[:MATCH_MAX_CHARS]) or ""

    return CallFacts(
        call_id=call_id,
        dialled=number("to"),
        caller=number("from"),
        headers=tuple(sip_headers),
    )


# --- matching ----------------------------------------------------------------------------------------


def _as_list(value: _Strings | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def text_matches(match: TextMatch | str | list[str], value: str) -> bool:
    """Whether `value` (cut to `MATCH_MAX_CHARS`) satisfies every condition of `match`."""
    value = value[:MATCH_MAX_CHARS]
    if isinstance(match, str):
        return value == match
    if isinstance(match, list):
        return value in match
    if match.exact is not None and value not in _as_list(match.exact):
        return False
    if match.prefix is not None and not any(value.startswith(p) for p in _as_list(match.prefix)):
        return False
    return match.regex is None or re.search(match.regex, value) is not None


def _parse_number(value: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(value[:MATCH_MAX_CHARS], None)
    except phonenumbers.NumberParseException:
        return None


def number_matches(match: _NumberSpec, value: str) -> bool:
    """Text conditions, then the country: a number that does not parse as E.164 is in no country."""
    if not text_matches(match, value):
        return False
    if not isinstance(match, NumberMatch) or (match.country is None and match.country_code is None):
        return True
    parsed = _parse_number(value)
    if parsed is None:
        return False
    if match.country_code is not None:
        codes = [match.country_code] if isinstance(match.country_code, int) else match.country_code
        if parsed.country_code not in codes:
            return False
    if match.country is not None:
        region = phonenumbers.region_code_for_number(parsed)
        if region is None or region not in [c.upper() for c in _as_list(match.country)]:
            return False
    return True


def header_matches(name: str, match: HeaderMatch, headers: Sequence[SipHeader]) -> bool:
    """Presence, then the text conditions against any of the header's values (headers may repeat)."""
    values = [h.value for h in headers if h.name.lower() == name.lower()]
    if match.present is not None and bool(values) != match.present:
        return False
    if match.exact is None and match.prefix is None and match.regex is None:
        return True
    return any(text_matches(match, v) for v in values)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


@lru_cache(maxsize=64)
def _weekdays(days: tuple[str, ...]) -> frozenset[int]:
    """``("mon-fri", "sun")`` → {0, 1, 2, 3, 4, 6}; a range may wrap (``fri-mon``)."""
    chosen: set[int] = set()
    for item in days:
        first, _, last = item.lower().partition("-")
        start = WEEKDAYS.index(first)
        end = WEEKDAYS.index(last) if last else start
        chosen.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return frozenset(chosen)


def _window_day(hours: Hours, local: datetime) -> date | None:
    """The day whose window `local` falls in, or None when it is outside the window."""
    minute = local.hour * 60 + local.minute
    start, end = _minutes(hours.from_), _minutes(hours.to)
    if start < end:
        return local.date() if start <= minute < end else None
    if minute >= start:
        return local.date()
    if minute < end:  # the tail of a window that began before midnight
        return local.date() - timedelta(days=1)
    return None


def in_hours(hours: Hours, now: datetime) -> bool:
    """Whether the instant `now` (timezone-aware) falls in the window, on the wall clock of its zone."""
    local = now.astimezone(ZoneInfo(hours.tz))
    day = _window_day(hours, local)
    return day is not None and day.weekday() in _weekdays(tuple(hours.days)) and day not in hours.holidays


def rule_matches(when: When, call: CallFacts, now: datetime) -> bool:
    """Whether every condition of `when` holds for `call` at the instant `now`."""
    if when.dialled is not None and not number_matches(when.dialled, call.dialled):
        return False
    if when.caller is not None and not number_matches(when.caller, call.caller):
        return False
    if not all(header_matches(name, m, call.headers) for name, m in when.headers.items()):
        return False
    if when.hours is not None:
        windows = [when.hours] if isinstance(when.hours, Hours) else when.hours
        return any(in_hours(w, now) for w in windows)
    return True


def matching_rule(policy: Policy, call: CallFacts, now: datetime) -> Rule | None:
    """The first rule whose ``when`` matches, or None (the default applies). Capacity is not looked at."""
    return next((rule for rule in policy.rules if rule_matches(rule.when, call, now)), None)


# --- validation --------------------------------------------------------------------------------------

_Path = tuple[str | int, ...]
_TIME = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")
_DAY = re.compile(rf"^({'|'.join(WEEKDAYS)})(-({'|'.join(WEEKDAYS)}))?$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOOL_TIMEOUT_MAX_S = 300.0


class _Problems:
    """Problems found so far, each at a path inside the policy document."""

    def __init__(self) -> None:
        self.items: list[tuple[_Path, str]] = []

    def add(self, path: _Path, message: str) -> None:
        self.items.append((path, message))


def _check_outcome(out: _Problems, at: _Path, outcome: Outcome, agents: Iterable[str]) -> None:
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


def _check_regex(out: _Problems, at: _Path, match: object) -> None:
    if isinstance(match, TextMatch) and match.regex is not None:
        try:
            re.compile(match.regex)
        except re.error as exc:
            out.add((*at, "regex"), f"not a valid regular expression: {exc}")


def _check_number(out: _Problems, at: _Path, match: _NumberSpec | None) -> None:
    _check_regex(out, at, match)
    if not isinstance(match, NumberMatch):
        return
    for region in _as_list(match.country):
        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            out.add((*at, "country"), f"unknown country {region!r}: use ISO 3166 codes like US, CA, GB")
    codes = [match.country_code] if isinstance(match.country_code, int) else match.country_code or []
    for code in codes:
        if code not in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            out.add((*at, "country_code"), f"{code} is not an E.164 country calling code")


def _check_hours(out: _Problems, at: _Path, hours: Hours) -> None:
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


def _check_when(out: _Problems, at: _Path, when: When) -> None:
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


def _check_duration(out: _Problems, at: _Path, seconds: float) -> None:
    low, high = MAX_CALL_DURATION_RANGE_S
    if not low <= seconds <= high:  # also refuses NaN
        out.add(at, f"must be at least {low:g} and at most {high:g} seconds (24 h), got {seconds:g}")


def _check_rule(out: _Problems, at: _Path, rule: Rule, agents: Iterable[str]) -> None:
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


def _check_agent(out: _Problems, at: _Path, agent: Agent) -> None:
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


def _check_parts(
    out: _Problems,
    version: int | None,
    agents: Mapping[str, Agent],
    agent_names: Iterable[str],
    rules: Iterable[tuple[int, Rule]],
    default: Outcome | None,
    max_call_duration_s: float | None = None,
) -> None:
    """Check what converted; `agent_names` also holds agents that failed to convert (not "unknown")."""
    names = sorted(agent_names)
    if version is not None and version != 1:
        out.add(("version",), f"only version 1 is known, got {version}")
    if max_call_duration_s is not None:
        _check_duration(out, ("max_call_duration_s",), max_call_duration_s)
    for name, agent in agents.items():
        _check_agent(out, ("agents", name), agent)
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


def _heading(path: _Path, raw: Any) -> tuple[str, str]:
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


def _render(source: str, root: yaml.Node | None, raw: Any, problems: _Problems) -> list[str]:
    """Each problem as ``source:line where: field: message``, in the order of the file."""
    rendered = []
    for path, message in problems.items:
        line = _line_of(root, path)
        head, field = _heading(path, raw)
        where = f"{source}:{line}" if line is not None else source
        rendered.append((line or 0, f"{where} {head}: {field + ': ' if field else ''}{message}"))
    return [text for _, text in sorted(rendered, key=lambda item: item[0])]


def validate(policy: Policy, source: str = "<policy>") -> Policy:
    """`policy` itself, or PolicyError naming every rule and field that is wrong (without line numbers)."""
    problems = _Problems()
    rules = list(enumerate(policy.rules))
    _check_parts(
        problems, policy.version, policy.agents, policy.agents, rules, policy.default, policy.max_call_duration_s
    )
    if problems.items:
        raise PolicyError(source, _render(source, None, msgspec.to_builtins(policy), problems))
    return policy


# --- reading YAML ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML with the surprises of 1.1 removed: ``NO`` stays a string, ``17:30`` stays a time of day.

    Only true/false are booleans and only plain decimals are numbers, so country codes, times and
    numbers like ``0800…`` come through as the strings they look like.
    """

    yaml_implicit_resolvers: dict[Any, Any] = {}


for _first, _resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items():
    for _tag, _regexp in _resolvers:
        if _tag in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge"):
            _Loader.add_implicit_resolver(_tag, _regexp, [_first])
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])


def _duplicate_keys(node: yaml.Node, path: _Path, out: _Problems) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    out.add((*path, key.value), "duplicate key (YAML would silently keep only the last)")
                seen.add(key.value)
                _duplicate_keys(value, (*path, key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, (*path, i), out)


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """(the node naming `step`, the node at `step`) inside `node`, or None."""
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):
            if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        item: yaml.Node = node.value[step]
        return item, item
    return None


def _line_of(root: yaml.Node | None, path: _Path) -> int | None:
    """The 1-based line of the deepest node on `path` that exists in the document."""
    if root is None:
        return None
    line = root.start_mark.line + 1
    node = root
    for step in path:
        found = _child(node, step)
        if found is None:
            break
        named, node = found
        line = named.start_mark.line + 1
    return line


_MSGSPEC_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")


@lru_cache(maxsize=1)
def _field_names() -> frozenset[str]:
    """Every field name a policy can use, to suggest the intended one for a typo."""
    structs: list[type[msgspec.Struct]] = [
        TextMatch, NumberMatch, HeaderMatch, Hours, When, Tool, Transcription, ServerVad, SemanticVad,
        AudioInput, AudioOutput, Audio, Agent, Accept, Reject, Refer, Outcome, Rule, Policy,
    ]  # fmt: skip
    return frozenset(f.encode_name for s in structs for f in msgspec.structs.fields(s))


def _msgspec_problem(out: _Problems, at: _Path, exc: msgspec.ValidationError) -> None:
    found = _MSGSPEC_AT.match(str(exc))
    assert found is not None  # the pattern matches any text
    message = found.group("message")
    path = list(at)
    for name, index in _PATH_STEP.findall(found.group("path") or ""):
        if name or index:
            path.append(name or int(index))
    unknown = _UNKNOWN_FIELD.match(message)
    if unknown:
        field = unknown.group("field")
        path.append(field)
        close = difflib.get_close_matches(field, _field_names(), n=1, cutoff=0.8)
        message = "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    out.add(tuple(path), message)


def _convert(out: _Problems, at: _Path, value: Any, as_type: type[Any]) -> Any:
    try:
        return msgspec.convert(value, as_type)
    except msgspec.ValidationError as exc:
        _msgspec_problem(out, at, exc)
        return None


def _read_yaml(text: str, out: _Problems) -> tuple[yaml.Node | None, Any]:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _duplicate_keys(root, (), out)
        return root, loader.construct_document(root)
    finally:
        loader.dispose()


def _convert_all(raw: dict[str, Any], out: _Problems) -> Policy | None:
    """Convert each agent and rule on its own, so one mistake does not hide the next."""
    known_top = {"version", "agents", "rules", "default", "max_call_duration_s"}
    for key in raw:
        if key not in known_top:
            out.add((str(key),), f"unknown top-level key (known: {', '.join(sorted(known_top))})")
    for key in ("version", "agents", "default"):
        if key not in raw:
            out.add((), f"missing required key {key!r}")
    version = _convert(out, ("version",), raw.get("version", 1), int)
    duration = _convert(
        out, ("max_call_duration_s",), raw.get("max_call_duration_s", DEFAULT_MAX_CALL_DURATION_S), float
    )
    agents_raw = raw.get("agents", {})
    agents: dict[str, Agent] = {}
    broken_agents: set[str] = set()
    if not isinstance(agents_raw, dict):
        out.add(("agents",), "must be a mapping of agent name to agent")
    else:
        for name, value in agents_raw.items():
            agent = _convert(out, ("agents", str(name)), value, Agent)
            if agent is None:
                broken_agents.add(str(name))
            else:
                agents[str(name)] = agent
    rules_raw = raw.get("rules", [])
    rules: list[tuple[int, Rule]] = []
    if not isinstance(rules_raw, list):
        out.add(("rules",), "must be a list of rules")
        rules_raw = []
    for i, value in enumerate(rules_raw):
        rule = _convert(out, ("rules", i), value, Rule)
        if rule is not None:
            rules.append((i, rule))
    default = _convert(out, ("default",), raw["default"], Outcome) if "default" in raw else None
    _check_parts(out, version, agents, {*agents, *broken_agents}, rules, default, duration)
    if out.items or version is None or default is None or duration is None:
        return None
    rules_ok = [rule for _, rule in rules]
    return Policy(version=version, agents=agents, default=default, rules=rules_ok, max_call_duration_s=duration)


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """The policy in YAML `text`, or PolicyError listing every problem as ``source:line where: field: what``."""
    problems = _Problems()
    if len(text.encode()) > POLICY_MAX_BYTES:
        raise PolicyError(source, [f"{source} policy: larger than {POLICY_MAX_BYTES} bytes"])
    try:
        root, raw = _read_yaml(text, problems)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [f"{where} policy: not valid YAML: {problem}"]) from None
    if not isinstance(raw, dict):
        problems.add((), "must be a YAML mapping with version, agents, rules and default")
        raise PolicyError(source, _render(source, root, raw, problems))
    policy = _convert_all(raw, problems)
    if policy is None:
        raise PolicyError(source, _render(source, root, raw, problems))
    return policy


def builtin_policy_text() -> str:
    """The YAML of the built-in example policy (used when ``SWITCHBOARD_POLICY`` is not set)."""
    return resources.files(__package__).joinpath("default_policy.yaml").read_text()


def load_policy(path: str | Path | None) -> Policy:
    """The policy at `path`, or the built-in example policy when `path` is None."""
    if path is None:
        return parse_policy(builtin_policy_text(), "built-in example policy")
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(p), [f"{p} policy: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    return parse_policy(text, str(p))
