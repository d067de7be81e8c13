"""The routing policy's model: the msgspec Structs a policy file converts to, and the constants they use.

Pure data: no matching (`match`), no validation beyond the types (`check`), no YAML (`load`). Every Struct
is frozen and refuses unknown fields, so a typo in a policy is an error, not a silently ignored key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

import msgspec

Strings = str | list[str]
"""A text condition: one string, or a list meaning any one of them."""


class TextMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a value must look; every condition given must hold (a list means any one of them)."""

    exact: Strings | None = None
    prefix: Strings | None = None
    regex: str | None = None


class NumberMatch(TextMatch, frozen=True, forbid_unknown_fields=True):
    """A number: text conditions, plus the country it belongs to (parsed as E.164 with phonenumbers)."""

    country: Strings | None = None
    """ISO 3166 region codes, e.g. ``[US, CA]`` (``+1 416…`` is CA, ``+1 415…`` is US)."""
    country_code: int | list[int] | None = None
    """E.164 calling codes, e.g. ``1`` or ``[44, 353]``."""


class HeaderMatch(TextMatch, frozen=True, forbid_unknown_fields=True):
    """A SIP header (name matched case-insensitively): present/absent, and conditions on any of its values."""

    present: bool | None = None


NumberSpec = NumberMatch | str | list[str]
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

    dialled: NumberSpec | None = None
    caller: NumberSpec | None = None
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


Surface = Literal["realtime", "live"]
"""OpenAI's two surfaces for SIP calls: Realtime (``/realtime/calls``) and Live (``/live/sessions``)."""

DEFAULT_MODELS: Mapping[str, str] = {"realtime": "gpt-realtime-2", "live": "gpt-live-1"}
"""The model of an agent that names none, on each surface."""


class Delegation(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A Live agent's delegation: who does the work the voice model hands off.

    ``client`` (the default): Switchboard's application. ``responses``: a Responses model the session runs,
    with `model` and a backend prompt (`instructions`); the agent's ``tools`` are its function tools, each
    served over ``tools.<name>`` like a Realtime agent's.
    """

    type: Literal["client", "responses"] = "client"
    model: str | None = None
    instructions: str | None = None
    acknowledgement_delay_ms: int | None = None


class Agent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The session an accepted call gets, on its surface, and what the session worker does with it.

    `surface` unset: the policy's. A Live agent takes `model` (default ``gpt-live-1``), `voice`,
    `instructions`, `greeting` (said as commentary when the sideband attaches), `delegation`, `tools` (with
    ``delegation: {type: responses}``) and `triggers` (Decisions triggers on transcripts, sent as given);
    `audio` is Realtime's only.
    """

    instructions: str
    surface: Surface | None = None
    model: str | None = None
    voice: str = "marin"
    greeting: str | None = None
    audio: Audio = Audio()
    tools: list[Tool] = []
    delegation: Delegation | None = None
    triggers: list[dict[str, Any]] = []


# The models and voices OpenAI's Realtime accept body names (the openai SDK's `CallAcceptParams`: its
# `model` and `audio.output.voice` literals, and the deprecations its docstring announces), beside the
# accept body's own check against the SDK in the tests. `policy check` warns about any other name, and
# about a deprecated one with its replacement; OpenAI itself may know newer names than the SDK does.
REALTIME_MODELS = frozenset(
    {
        "gpt-realtime", "gpt-realtime-1.5", "gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini",
        "gpt-realtime-2025-08-28", "gpt-4o-realtime-preview", "gpt-4o-realtime-preview-2024-10-01",
        "gpt-4o-realtime-preview-2024-12-17", "gpt-4o-realtime-preview-2025-06-03",
        "gpt-4o-mini-realtime-preview", "gpt-4o-mini-realtime-preview-2024-12-17", "gpt-realtime-mini",
        "gpt-realtime-mini-2025-10-06", "gpt-realtime-mini-2025-12-15", "gpt-audio-1.5", "gpt-audio-mini",
        "gpt-audio-mini-2025-10-06", "gpt-audio-mini-2025-12-15",
    }
)  # fmt: skip
DEPRECATED_MODELS: Mapping[str, tuple[str, str]] = {
    "gpt-realtime": ("2027-01-20", "gpt-realtime-2"),
    "gpt-realtime-2025-08-28": ("2027-01-20", "gpt-realtime-2"),
    "gpt-realtime-mini": ("2027-01-20", "gpt-realtime-2.1-mini"),
    "gpt-realtime-mini-2025-12-15": ("2027-01-20", "gpt-realtime-2.1-mini"),
    "gpt-audio-mini": ("2027-01-20", "gpt-audio-1.5"),
    "gpt-audio-mini-2025-12-15": ("2027-01-20", "gpt-audio-1.5"),
}
"""A deprecated model: (its announced shutdown date, the current model to use instead)."""
VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"})
# The same for Live's accept body (the SDK's `SessionAcceptParams`: `session.model`, `BuiltInVoice`).
LIVE_MODELS = frozenset({"gpt-live-1", "gpt-live-1.1"})
LIVE_VOICES = frozenset(
    {
        "alloy", "ash", "ballad", "beacon", "bossa", "cedar", "cinder", "coral", "delta", "echo", "gleam", "marin",
        "meridian", "quartz", "ripple", "sage", "shida", "shimmer", "stone", "tempo", "verse", "vesper", "willow",
    }
)  # fmt: skip


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
    surface: Surface = "realtime"
    """The surface calls are answered on: rejects and refers, and agents that name none. A call offered on
    both surfaces is answered once, on the surface of its decision; its other id is set aside."""
    max_call_duration_s: float = DEFAULT_MAX_CALL_DURATION_S
    """The longest an accepted call may last (seconds), for the default outcome and every rule without
    its own: the session worker hangs up a call that reaches it (end reason ``max_duration``), and a call
    whose end is never recorded stops counting against its rule's capacity soon after."""


def as_list(value: Strings | None) -> list[str]:
    """A condition's strings as a list (none, one or several)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else value


def max_call_duration(policy: Policy, rule: Rule | None) -> float:
    """The maximum duration (seconds) of a call accepted by `rule` (None: the default outcome)."""
    if rule is not None and rule.max_call_duration_s is not None:
        return rule.max_call_duration_s
    return policy.max_call_duration_s


def agent_surface(policy: Policy, agent: Agent) -> Surface:
    """The surface `agent` answers on: its own, else the policy's."""
    return agent.surface or policy.surface


def agent_model(agent: Agent, surface: Surface) -> str:
    """The model `agent` runs on `surface`: its own, else the surface's default."""
    return agent.model or DEFAULT_MODELS[surface]
