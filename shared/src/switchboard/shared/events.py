"""The event log's vocabulary: the CloudEvents envelope, subjects, and the typed payloads.

Every message on stream ``CALLS`` is a CloudEvents 1.0 structured-mode JSON object on
``calls.<call_id>.<kind>`` with ``type = "call.<kind>"`` (``realtime.<server type>`` for ``rt.*``).
Payloads Switchboard writes are msgspec Structs below; ``incoming`` and ``rt.*`` carry OpenAI's JSON as
received. Pure module: no I/O.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import time
from typing import Any, Literal, TypeVar

import msgspec

STREAM = "CALLS"
SUBJECT_ROOT = "calls"
SPEC_VERSION = "1.0"

_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_KIND = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")

Action = Literal["accept", "reject", "refer"]
_S = TypeVar("_S", bound=msgspec.Struct)


def is_safe_call_id(call_id: object) -> bool:
    """True when `call_id` can be a single NATS subject token (no dots, wildcards or spaces)."""
    return isinstance(call_id, str) and _CALL_ID.fullmatch(call_id) is not None


@functools.lru_cache(maxsize=16_384)  # a worker's live calls times the kinds they emit: checked once each
def subject(call_id: str, kind: str) -> str:
    """``calls.<call_id>.<kind>``; refuses ids and kinds that would escape their token."""
    if not is_safe_call_id(call_id):
        raise ValueError(f"unsafe call id for a subject: {call_id!r}")
    if not _KIND.fullmatch(kind):
        raise ValueError(f"unsafe event kind for a subject: {kind!r}")
    return f"{SUBJECT_ROOT}.{call_id}.{kind}"


def parse_subject(value: str) -> tuple[str, str]:
    """``calls.<id>.<kind>`` → (call_id, kind)."""
    root, call_id, kind = value.split(".", 2)
    if root != SUBJECT_ROOT:
        raise ValueError(f"not a call subject: {value!r}")
    return call_id, kind


@functools.lru_cache(maxsize=1_024)
def event_type(kind: str) -> str:
    """The CloudEvents ``type`` of a subject kind."""
    if kind.startswith("rt."):
        return "realtime." + kind[3:]
    return "call." + kind


def rt_kind(server_event_type: str) -> str:
    """The subject kind a relayed realtime server event is published under."""
    return "rt." + server_event_type


_now_ms = -1
_now_text = ""


def utc_now() -> str:
    """RFC 3339 UTC timestamp with milliseconds, as CloudEvents ``time``.

    Events come in bursts (a relay writes hundreds a millisecond under load), so the text is formatted
    once per millisecond and reused within it.
    """
    global _now_ms, _now_text
    now_ms = time.time_ns() // 1_000_000
    if now_ms != _now_ms:
        seconds, ms = divmod(now_ms, 1000)
        _now_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
        _now_ms = now_ms
    return _now_text


class CloudEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """A CloudEvents 1.0 structured-mode event. ``data`` stays raw JSON-compatible data.

    Extension attributes (omitted when unset): ``lease`` — the session lease number (claim attempt)
    under which a session worker published the event, so readers can fence out a stale owner.
    ``dataschema`` (a CloudEvents optional attribute) names the data's schema and version, e.g.
    ``switchboard:call.decided/v1``; events recorded before it existed have none and read as version 1.
    """

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: str
    datacontenttype: str
    data: Any
    lease: int | None = None
    dataschema: str | None = None
    traceparent: str | None = None
    """The CloudEvents distributed-tracing extension: the W3C ``traceparent`` of the call's trace, stamped
    by the ingress on the call's first event (``incoming``) while tracing is on."""

    @property
    def call_id(self) -> str:
        return self.subject

    @property
    def kind(self) -> str:
        if self.type.startswith("realtime."):
            return "rt." + self.type[len("realtime.") :]
        return self.type.removeprefix("call.")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CloudEvent)

# The version of each kind's data (kinds not listed, ``rt.*`` included, are at 1). Bump a kind's number
# when its data changes incompatibly, and add an upcaster from the old version in `shared.schema`.
SCHEMA_VERSIONS: dict[str, int] = {}


@functools.lru_cache(maxsize=1_024)
def dataschema(kind: str) -> str:
    """The CloudEvents ``dataschema`` of a kind's data: ``switchboard:<type>/v<version>``."""
    return f"switchboard:{event_type(kind)}/v{SCHEMA_VERSIONS.get(kind, 1)}"


_id_prefix = os.urandom(8).hex()
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)  # a forked child must not repeat its parent's ids


def new_event_id() -> str:
    """A new event id, unique across processes: 32 hex digits, this process's random 64-bit prefix and
    a counter (a relay makes thousands a second: a uuid4 each cost a system call for its randomness)."""
    return f"{_id_prefix}{next(_id_counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def make_event(
    call_id: str, kind: str, data: Any, *, source: str, event_id: str | None = None, lease: int | None = None
) -> CloudEvent:
    """Wrap `data` (a Struct or plain JSON data) in an envelope for ``calls.<call_id>.<kind>``."""
    subject(call_id, kind)  # validates both tokens
    return CloudEvent(
        specversion=SPEC_VERSION,
        id=event_id or new_event_id(),
        source=source,
        type=event_type(kind),
        subject=call_id,
        time=utc_now(),
        datacontenttype="application/json",
        # JSON data, or JSON text (a relayed server event), is stored as it is; Structs become JSON data.
        data=data if isinstance(data, (dict, msgspec.Raw)) else msgspec.to_builtins(data),
        lease=lease,
        dataschema=dataschema(kind),
    )


def encode(event: CloudEvent) -> bytes:
    return _encoder.encode(event)


def decode(payload: bytes) -> CloudEvent:
    return _decoder.decode(payload)


def payload(event: CloudEvent, as_type: type[_S]) -> _S:
    """The event's data converted to a typed payload Struct."""
    return msgspec.convert(event.data, as_type)


# --- payloads Switchboard writes -------------------------------------------------------------------


class SipHeader(msgspec.Struct, frozen=True):
    name: str
    value: str


Surface = Literal["realtime", "live"]
"""OpenAI's two surfaces for SIP calls: Realtime (``/realtime/calls/{call_id}``) and Live
(``/live/sessions/{session_id}``). A call's id is the id its surface gave it (``rtc_…``, ``live_…``)."""

INCOMING_SURFACES: dict[str, Surface] = {
    "realtime.call.incoming": "realtime",
    "live.transport.incoming": "live",
    "live.call.incoming": "live",  # deprecated by OpenAI for live.transport.incoming; same data
}
"""The webhook types that ring a call (stored as ``calls.<id>.incoming``), and the surface of each."""


class IncomingCallData(msgspec.Struct, frozen=True, kw_only=True):
    """The ``data`` object of an incoming-call webhook: ``call_id`` on Realtime, ``session_id`` on Live."""

    call_id: str | None = None
    session_id: str | None = None
    sip_headers: list[SipHeader] = []

    def sip_call_id(self) -> str | None:
        """The SIP ``Call-ID`` header: what links the two ids of a call offered on both surfaces."""
        return next((h.value for h in self.sip_headers if h.name.lower() == "call-id"), None)


class IncomingWebhook(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's webhook event, as far as Switchboard needs it; unknown fields are ignored."""

    id: str
    type: str
    object: str = "event"
    created_at: int | None = None
    data: dict[str, Any]


class Decided(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    action: Action
    rule: str
    reason: str
    agent: str | None = None
    surface: Surface = "realtime"
    """The surface the decision is carried out on (the agent's for an accept, else the policy's)."""
    accept: dict[str, Any] | None = None
    greeting: str | None = None
    tool_timeouts_s: dict[str, float] | None = None
    status_code: int | None = None
    target_uri: str | None = None
    capacity_full: bool = False
    """True when `rule` matched but was at its ``max_live_calls``, so its ``when_full`` outcome applied."""
    max_duration_s: float | None = None
    """Accept only: the longest the call may last (the rule's ``max_call_duration_s``, else the policy's);
    absent in decisions recorded before it existed."""
    set_aside: bool = False
    """The call was offered on another surface than the decision's: this id is left alone (OpenAI offers
    one call on both surfaces when the project takes both; the other id is answered). Ended ``other_surface``."""
    sip_call_id: str | None = None
    """The SIP ``Call-ID`` of the call, which links the ids of a call offered on both surfaces."""


class UpstreamOutcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """OpenAI's answer to accept/reject/refer/hangup (``accepted`` … ``hungup``)."""

    http_status: int
    latency_ms: float
    agent: str | None = None
    surface: Surface = "realtime"
    """The surface OpenAI answered on; the session worker attaches to the call there."""
    greeting: str | None = None
    tool_timeouts_s: dict[str, float] | None = None
    status_code: int | None = None
    target_uri: str | None = None
    confirmed_by: Literal["conflict"] | None = None
    """Set when OpenAI answered 409 ``call_already_handled`` to a resumed request: an earlier attempt
    (a replica that died before recording its answer) went through, and this records it."""
    max_duration_s: float | None = None
    """``accepted`` only: the decision's ``max_duration_s``; the session worker hangs up a call that lasts
    this long (end reason ``max_duration``)."""


class Failed(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    stage: str
    message: str
    http_status: int | None = None
    code: str | None = None


class SessionLease(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``session.claimed`` / ``session.released`` / ``session.lost``."""

    worker: str
    attempt: int
    reason: str | None = None


class Ended(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    duration_s: float


class ToolRequested(msgspec.Struct, frozen=True, kw_only=True):
    """``tool.requested``: the model called a function; Switchboard asks ``tools.<name>``."""

    tool_call_id: str
    name: str
    arguments: str


class ToolCompleted(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``tool.completed``: what went back to the model (the output, or the error it was told)."""

    tool_call_id: str
    name: str
    output: str
    latency_ms: float
    error: str | None = None


class CommandRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``command.<verb>``: a command served, with its outcome."""

    verb: str
    command: dict[str, Any]
    ok: bool
    error: str | None = None
    served_by: str | None = None
    operator: str | None = None
    """Who asked: the request body's ``operator`` (the console's signed-in operator, the CLI's user)."""
