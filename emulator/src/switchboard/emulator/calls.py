"""What the emulator remembers about each call: the `CallRecord`, plain data that serialises with msgspec.

Tests and the control API read records to check what Switchboard did (the accept body it sent, how it
authenticated, which client events it sent) and what the emulator did in return (webhook attempts, the
server events it sent). The live, non-serialisable side of a call (sockets, tasks) lives in
`live.LiveCall`; this module is pure data.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

Surface = Literal["realtime", "live"]
"""Which of OpenAI's two SIP surfaces offered the call: Realtime (``rtc_…`` calls) or Live (``live_…`` sessions)."""
CallState = Literal["ringing", "accepted", "rejected", "referred", "ended"]
EndReason = Literal["caller_hangup", "hangup", "referred", "rejected", "caller_abandoned", "answered_elsewhere"]
"""``answered_elsewhere``: a call rung on both surfaces was accepted on the other one (its twin)."""
Authorization = Literal["valid", "invalid", "missing"]
"""A presented bearer key, redacted to whether it matched."""

TERMINAL_STATES: frozenset[str] = frozenset({"rejected", "referred", "ended"})


class SipHeader(msgspec.Struct, frozen=True):
    """One SIP INVITE header, as OpenAI forwards them (order and repeats kept)."""

    name: str
    value: str


SipHeaderLike = SipHeader | tuple[str, str] | Mapping[str, str]
"""A SIP header as callers may give it: a `SipHeader`, a ``(name, value)`` pair or ``{"name", "value"}``."""


def sip_header(value: SipHeaderLike) -> SipHeader:
    """Normalise one `SipHeaderLike`; `ValueError` if it is not a name and a value."""
    if isinstance(value, SipHeader):
        return value
    if isinstance(value, Mapping):
        name, header_value = value.get("name"), value.get("value")
    else:
        name, header_value = value
    if not isinstance(name, str) or not name or not isinstance(header_value, str):
        raise ValueError(f"a SIP header needs a non-empty name and a string value, got {value!r}")
    return SipHeader(name, header_value)


class WebhookDelivery(msgspec.Struct, kw_only=True):
    """One delivery attempt of the call's incoming webhook (``realtime.call.incoming``/``live.transport.incoming``)."""

    attempt: int
    webhook_id: str
    at: float
    status: int | None = None
    """The receiver's HTTP status, or None when the attempt failed before an answer."""
    error: str | None = None


class RestRequest(msgspec.Struct, kw_only=True):
    """One REST request about this call (``accept``, ``reject``, ``refer``, ``hangup``), on its surface."""

    op: str
    at: float
    body: Any
    """The JSON body as received (None when empty; the raw text when it was not JSON)."""
    authorization: Authorization
    status: int
    """What the emulator answered."""


class SidebandConnection(msgspec.Struct, kw_only=True):
    """One attempt to open the sideband WebSocket for this call."""

    index: int
    at: float
    authorization: Authorization
    status: int
    """101 when the upgrade succeeded, else the HTTP status of the refusal."""
    closed_at: float | None = None
    close_code: int | None = None
    """The close code the emulator closed with, 1006 when aborted, or the client's when it closed first."""


class CallRecord(msgspec.Struct, kw_only=True):
    """Everything observable about one emulated call, on one surface.

    A SIP call rung on both surfaces has two records, one per surface, each with its own id, sharing
    the SIP headers and naming each other in `twin_id`.
    """

    call_id: str
    """The surface's id: the Realtime ``call_id`` (``rtc_…``) or the Live ``session_id`` (``live_…``)."""
    from_number: str = msgspec.field(name="from")
    to_number: str = msgspec.field(name="to")
    sip_headers: list[SipHeader]
    script: str
    surface: Surface = "realtime"
    twin_id: str | None = None
    """The other surface's id of the same SIP call, when it was rung on both."""
    state: CallState = "ringing"
    end_reason: EndReason | None = None
    status_code: int | None = None
    """The SIP status of a reject."""
    target_uri: str | None = None
    """Where a refer sent the caller."""
    accept_body: Any = None
    """The accept request's JSON exactly as received (on Live, the whole ``{"session": …}``)."""
    webhook_event_id: str | None = None
    webhook_deliveries: list[WebhookDelivery] = msgspec.field(default_factory=list)
    rest_requests: list[RestRequest] = msgspec.field(default_factory=list)
    sideband_connections: list[SidebandConnection] = msgspec.field(default_factory=list)
    client_events: list[Any] = msgspec.field(default_factory=list)
    """Every client event received on any sideband, as parsed JSON (or the raw text if it was not JSON)."""
    server_events: list[dict[str, Any]] = msgspec.field(default_factory=list)
    """Every server event sent on at least one sideband, in order."""
    client_event_times: list[float] = msgspec.field(default_factory=list)
    """When each of `client_events` arrived (``time.time()``), index for index (benchmarks time the greeting)."""
    server_event_times: list[float] = msgspec.field(default_factory=list)
    """When each of `server_events` was sent (``time.time()`` just before the send), index for index
    (benchmarks time the relay from here to the bus)."""
    created_at: float = msgspec.field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None

    @property
    def ended(self) -> bool:
        """The call is over (rejected, referred or ended); OpenAI no longer knows it."""
        return self.state in TERMINAL_STATES

    @property
    def sideband_count(self) -> int:
        """How many sideband connections were opened successfully."""
        return sum(1 for conn in self.sideband_connections if conn.status == 101)

    def server_event_types(self) -> list[str]:
        """The types of the server events sent, in order (handy in tests and logs)."""
        return [str(event.get("type")) for event in self.server_events]
