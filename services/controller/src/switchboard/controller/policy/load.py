"""Reading a policy from YAML: line numbers for every problem, duplicate keys, msgspec's errors made readable.

The only I/O of the policy package: `load_policy` reads one file (or the built-in example). `parse_policy`
converts each agent and rule on its own, so one mistake does not hide the next, then runs `check`; every
problem is reported at once, naming the file, line, rule and field.
"""

from __future__ import annotations

import difflib
import re
import typing
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from switchboard.controller.policy.check import (
    FieldPath,
    PolicyError,
    Problems,
    check_parts,
    check_warnings,
    render_problems,
)
from switchboard.controller.policy.model import (
    DEFAULT_MAX_CALL_DURATION_S,
    Accept,
    Agent,
    Audio,
    AudioInput,
    AudioOutput,
    Delegation,
    HeaderMatch,
    Hours,
    NumberMatch,
    Outcome,
    Policy,
    Refer,
    Reject,
    Rule,
    SemanticVad,
    ServerVad,
    Surface,
    TextMatch,
    Tool,
    Transcription,
    When,
)

POLICY_MAX_BYTES = 512 * 1024
"""Longest policy text accepted (it also has to fit in one NATS message when pushed to the KV)."""


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


def _duplicate_keys(node: yaml.Node, path: FieldPath, out: Problems) -> None:
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


def _line_of(root: yaml.Node | None, path: FieldPath) -> int | None:
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
        AudioInput, AudioOutput, Audio, Agent, Delegation, Accept, Reject, Refer, Outcome, Rule, Policy,
    ]  # fmt: skip
    return frozenset(f.encode_name for s in structs for f in msgspec.structs.fields(s))


def _msgspec_problem(out: Problems, at: FieldPath, exc: msgspec.ValidationError) -> None:
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


def _struct_of(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct a field holds (``Accept`` for ``Accept | None``), or None when it holds anything else."""
    options = [a for a in typing.get_args(annotation) if a not in (type(None), msgspec.UnsetType)] or [annotation]
    struct = options[0] if len(options) == 1 else None
    return struct if isinstance(struct, type) and issubclass(struct, msgspec.Struct) else None


def _field_problems(out: Problems, at: FieldPath, value: dict[str, Any], as_type: type[msgspec.Struct]) -> set[str]:
    """Check each key of `value` against `as_type` on its own, so every wrong field is named; the bad keys."""
    fields = {f.encode_name: f for f in msgspec.structs.fields(as_type)}
    bad: set[str] = set()
    for key, item in value.items():
        field = fields.get(str(key))
        if field is None:
            close = difflib.get_close_matches(str(key), _field_names(), n=1, cutoff=0.8)
            out.add((*at, str(key)), "unknown field" + (f" (did you mean {close[0]!r}?)" if close else ""))
            bad.add(str(key))
        elif _convert(out, (*at, str(key)), item, field.type) is None and item is not None:
            bad.add(str(key))
    for name, field in fields.items():
        if field.required and name not in value:
            out.add(at, f"Object missing required field `{name}`")
    return bad


def _convert(out: Problems, at: FieldPath, value: Any, as_type: Any) -> Any:
    """`value` as `as_type`, or None with every problem in it added to `out` (each field of a Struct on its own)."""
    try:
        return msgspec.convert(value, as_type)
    except msgspec.ValidationError as exc:
        struct = _struct_of(as_type)
        before = len(out.items)
        if struct is not None and isinstance(value, dict):
            _field_problems(out, at, value, struct)
        if len(out.items) == before:  # nothing more precise found: msgspec's own message
            _msgspec_problem(out, at, exc)
        return None


def _salvage(value: Any, as_type: type[msgspec.Struct]) -> tuple[Any, set[str]]:
    """(`value` as `as_type` without its wrong fields, those fields) to check the rest, or (None, ∅)."""
    if not isinstance(value, dict):
        return None, set()
    bad = _field_problems(Problems(), (), value, as_type)
    try:
        return msgspec.convert({k: v for k, v in value.items() if k not in bad}, as_type), bad
    except msgspec.ValidationError:
        return None, set()


def _render(source: str, root: yaml.Node | None, raw: Any, problems: Problems) -> list[str]:
    """The problems rendered with the line of each in the YAML document `root`."""
    return render_problems(source, problems, raw, lambda path: _line_of(root, path))


def _read_yaml(text: str, out: Problems) -> tuple[yaml.Node | None, Any]:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _duplicate_keys(root, (), out)
        return root, loader.construct_document(root)
    finally:
        loader.dispose()


def _convert_all(raw: dict[str, Any], out: Problems) -> Policy | None:
    """Convert each agent and rule on its own, so one mistake does not hide the next."""
    known_top = {"version", "agents", "rules", "default", "max_call_duration_s", "surface"}
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
    surface = _convert(out, ("surface",), raw.get("surface", "realtime"), Surface)
    # A part that does not convert is checked without its wrong fields too, so every problem of an agent
    # or rule is reported at once; what those checks say about the wrong fields themselves is dropped.
    salvaged: dict[FieldPath, set[str]] = {}
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
                agent, salvaged[("agents", str(name))] = _salvage(value, Agent)
            if agent is not None:
                agents[str(name)] = agent
    rules_raw = raw.get("rules", [])
    rules: list[tuple[int, Rule]] = []
    if not isinstance(rules_raw, list):
        out.add(("rules",), "must be a list of rules")
        rules_raw = []
    for i, value in enumerate(rules_raw):
        rule = _convert(out, ("rules", i), value, Rule)
        if rule is None:
            rule, salvaged[("rules", i)] = _salvage(value, Rule)
        if rule is not None:
            rules.append((i, rule))
    default = _convert(out, ("default",), raw["default"], Outcome) if "default" in raw else None
    converted = len(out.items)
    check_parts(out, version, agents, {*agents, *broken_agents}, rules, default, duration, surface or "realtime")
    out.items[converted:] = [(path, m) for path, m in out.items[converted:] if not _shadowed(path, m, salvaged)]
    if out.items or version is None or default is None or duration is None or surface is None:
        return None
    rules_ok = [rule for _, rule in rules]
    return Policy(
        version=version, agents=agents, default=default, rules=rules_ok, max_call_duration_s=duration, surface=surface
    )


def _shadowed(path: FieldPath, message: str, salvaged: dict[FieldPath, set[str]]) -> bool:
    """Whether a check's problem is about a field already reported as wrong: at it, or naming it."""
    bad = salvaged.get(path[:2])
    if bad is None:
        return False
    return (len(path) > 2 and path[2] in bad) or any(re.search(rf"\b{re.escape(f)}\b", message) for f in bad)


class CheckedPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """A valid policy, and its warnings: what it may use but likely should not (deprecated models, …)."""

    policy: Policy
    warnings: list[str]


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """The policy in YAML `text`, or PolicyError listing every problem as ``source:line where: field: what``."""
    return check_policy(text, source).policy


def check_policy(text: str, source: str = "<policy>") -> CheckedPolicy:
    """`parse_policy`, with the valid policy's warnings rendered as its problems would be."""
    problems = Problems()
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
    warnings = Problems()
    check_warnings(warnings, policy)
    return CheckedPolicy(policy=policy, warnings=_render(source, root, raw, warnings))


def builtin_policy_text() -> str:
    """The YAML of the built-in example policy (used when ``SWITCHBOARD_POLICY`` is not set)."""
    # It ships beside the controller's modules, not inside this package.
    return resources.files("switchboard.controller").joinpath("default_policy.yaml").read_text()


def read_policy_text(path: str | Path) -> str:
    """The YAML in the policy file at `path` (PolicyError naming the file when it cannot be read)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise PolicyError(str(path), [f"{path} policy: cannot read: {reason}"]) from None


def load_policy(path: str | Path | None) -> Policy:
    """The policy at `path`, or the built-in example policy when `path` is None."""
    if path is None:
        return parse_policy(builtin_policy_text(), "built-in example policy")
    return parse_policy(read_policy_text(path), str(path))
