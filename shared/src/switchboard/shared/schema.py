"""Typed reading of the event log: which payload Struct each kind carries, schema versions, upcasting.

A stored message becomes a `LogEvent`: its stream sequence, subject, call id, kind, the CloudEvents
envelope and its ``data`` converted to the kind's payload Struct (`events.Decided`, `events.Ended`, …).
Reading never fails: ``rt.*`` events and kinds without a registered Struct keep their JSON data as is,
and data that does not fit its Struct, or bytes that are not a CloudEvent at all, are delivered raw with
`LogEvent.problem` saying why — a reader built on this sees every event and never crashes on one.

Schema evolution: every event names its data's version in the CloudEvents ``dataschema`` attribute
(``switchboard:call.ended/v2``); events recorded before versioning have none and are version 1. When a
kind's data changes incompatibly, bump its number in `events.SCHEMA_VERSIONS` and register an upcaster
from the previous version in `UPCASTERS`; old logs are then read as if written today. Pure module: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from switchboard.shared import events


class IncomingCall(events.IncomingWebhook, frozen=True, kw_only=True):
    """The ``incoming`` event's data: OpenAI's webhook event plus what the ingress added."""

    webhook_id: str = ""
    received_at: str = ""


PAYLOAD_TYPES: dict[str, type[msgspec.Struct]] = {
    "incoming": IncomingCall,
    "decided": events.Decided,
    "accepted": events.UpstreamOutcome,
    "rejected": events.UpstreamOutcome,
    "referred": events.UpstreamOutcome,
    "hungup": events.UpstreamOutcome,
    "failed": events.Failed,
    "session.claimed": events.SessionLease,
    "session.released": events.SessionLease,
    "session.lost": events.SessionLease,
    "ended": events.Ended,
}
"""Kinds whose data is converted to a Struct; every other kind (``rt.*`` included) is delivered as JSON."""

Upcaster = Callable[[Any], Any]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(kind, version) → a function turning that version's data into the next version's."""

_VERSION = re.compile(r"/v(\d+)$")


def schema_version(dataschema: str | None) -> int:
    """The version named by a ``dataschema`` URI; 1 for events recorded before versioning."""
    if not dataschema:
        return 1
    found = _VERSION.search(dataschema)
    return int(found.group(1)) if found else 1


def upcast(
    kind: str,
    version: int,
    data: Any,
    *,
    upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
    current: Mapping[str, int] | None = None,
) -> Any:
    """`data` of `kind` at `version`, brought to the current version through the registered upcasters."""
    upcasters = UPCASTERS if upcasters is None else upcasters
    target = (events.SCHEMA_VERSIONS if current is None else current).get(kind, 1)
    while version < target:
        step = upcasters.get((kind, version))
        if step is None:
            raise ValueError(f"no upcaster for {kind} v{version} (current v{target})")
        data = step(data)
        version += 1
    return data


class LogEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the log as a reader sees it."""

    seq: int
    """Stream sequence: the log's total order, and a reader's dedupe key (0 when not read from a stream)."""
    subject: str
    call_id: str
    kind: str
    data: Any
    """The kind's payload Struct (see `PAYLOAD_TYPES`), or the JSON data as stored."""
    envelope: events.CloudEvent | None
    """The CloudEvents envelope as stored, ``data`` untouched; None if the message was not one."""
    version: int = 1
    problem: str | None = None
    """Why `data` is raw although typed data was expected, or why there is no envelope."""

    @property
    def id(self) -> str:
        return self.envelope.id if self.envelope is not None else f"seq-{self.seq}"

    @property
    def time(self) -> str:
        return self.envelope.time if self.envelope is not None else ""


_envelope_decoder = msgspec.json.Decoder(events.CloudEvent)


def typed(
    envelope: events.CloudEvent,
    *,
    seq: int = 0,
    subject: str | None = None,
    payload_types: Mapping[str, type[msgspec.Struct]] | None = None,
    upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
) -> LogEvent:
    """A decoded envelope as a `LogEvent` with typed data. Never raises."""
    kind, call_id = envelope.kind, envelope.call_id
    if subject is None:
        subject = f"{events.SUBJECT_ROOT}.{call_id}.{kind}"
    version = schema_version(envelope.dataschema)
    as_type = (PAYLOAD_TYPES if payload_types is None else payload_types).get(kind)
    data, problem = envelope.data, None
    if as_type is not None:
        try:
            data = msgspec.convert(upcast(kind, version, data, upcasters=upcasters), as_type)
        except (msgspec.ValidationError, ValueError, TypeError) as exc:
            data, problem = envelope.data, f"{kind} data is not a valid {as_type.__name__} v{version}: {exc}"
    return LogEvent(
        seq=seq, subject=subject, call_id=call_id, kind=kind, data=data, envelope=envelope, version=version,
        problem=problem,
    )  # fmt: skip


def from_stored(seq: int, subject: str, payload: bytes) -> LogEvent:
    """A stored message (``calls.<id>.<kind>`` and its bytes) as a `LogEvent`. Never raises."""
    try:
        envelope = _envelope_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        try:
            call_id, kind = events.parse_subject(subject)
        except ValueError:
            call_id, kind = "", ""
        try:
            raw: Any = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            raw = payload.decode(errors="replace")
        return LogEvent(
            seq=seq, subject=subject, call_id=call_id, kind=kind, data=raw, envelope=None,
            problem=f"not a CloudEvent: {exc}",
        )  # fmt: skip
    return typed(envelope, seq=seq, subject=subject)


def from_json_line(seq: int, line: bytes) -> LogEvent:
    """One line of a JSONL export (an envelope per line) as a `LogEvent` at position `seq`."""
    try:
        envelope = _envelope_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return from_stored(seq, "", line)
    return typed(envelope, seq=seq)
