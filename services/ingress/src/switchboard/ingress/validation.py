"""What the ingress stores: a verified body that is an OpenAI webhook event, and the subject it goes to.

Pure: bytes in, a `Webhook` or an `InvalidWebhook` (with a reason a metric can label by) out. The body
is decoded once; the decoded object is what gets stored, so it is never decoded twice.

Routing: an incoming call goes to ``calls.<id>.incoming`` under the id its surface gave it:
``realtime.call.incoming`` needs a ``data.call_id`` (``rtc_…``), ``live.transport.incoming`` (and the
deprecated ``live.call.incoming``) a ``data.session_id`` (``live_…``). Any other validly signed event
type is kept too, as ``calls.<id>.webhook`` under the call or session it names, or under ``_unrouted``
when it names none. An id that is not a safe subject token is refused whatever the type: no event ever
lands on a subject a caller chose.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

import msgspec

from switchboard.shared import events
from switchboard.shared.errors import InvalidEvent

UNROUTED: Final = "_unrouted"
# A webhook id becomes the Nats-Msg-Id header: visible ASCII only, so no header can be bent by it.
_WEBHOOK_ID = re.compile(r"[!-~]{1,256}")

# Every `InvalidWebhook.reason` (a closed set: metrics label by it).
REASONS: Final = ("bad_webhook_id", "invalid_json", "too_deep", "not_an_event", "missing_data", "bad_call_id")
# OpenAI's events nest a few levels; anything near the interpreter's recursion limit would be stored
# only to fail every consumer that decodes it.
MAX_DEPTH: Final = 32

_decoder = msgspec.json.Decoder()


class InvalidWebhook(InvalidEvent):
    """A verified body that is not a usable OpenAI event; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Webhook(NamedTuple):
    """A usable webhook event: where it goes and what it says (the decoded JSON object, as sent)."""

    call_id: str
    kind: str
    type: str
    event: dict[str, Any]


def check_webhook_id(webhook_id: str) -> None:
    """Raise `InvalidWebhook` unless the id can key deduplication (1-256 visible ASCII characters)."""
    if _WEBHOOK_ID.fullmatch(webhook_id) is None:
        raise InvalidWebhook("bad_webhook_id", "webhook-id must be 1-256 visible ASCII characters")


def parse(raw: bytes) -> Webhook:
    """Decode and check a verified body; raise `InvalidWebhook` saying what is wrong (never echoing it)."""
    try:
        event = _decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidWebhook("invalid_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidWebhook("too_deep", f"body is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(event, dict):
        raise InvalidWebhook("not_an_event", "body must be a JSON object (an OpenAI webhook event)")
    _check_depth(event)
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise InvalidWebhook("not_an_event", "'id' must be a non-empty string")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidWebhook("not_an_event", "'type' must be a non-empty string")
    if event.get("object", "event") != "event":
        raise InvalidWebhook("not_an_event", "'object' must be \"event\"")
    created_at = event.get("created_at")
    if created_at is not None and (not isinstance(created_at, int) or isinstance(created_at, bool)):
        raise InvalidWebhook("not_an_event", "'created_at' must be an integer")
    if "data" not in event:
        raise InvalidWebhook("missing_data", "'data' is required")
    data = event["data"]
    if not isinstance(data, dict):
        raise InvalidWebhook("not_an_event", "'data' must be an object")
    call_id, kind = route(event_type, data)
    return Webhook(call_id, kind, event_type, event)


def _check_depth(node: dict[str, Any] | list[Any], room: int = MAX_DEPTH - 1) -> None:
    # Recursion is safe here: it never goes more than MAX_DEPTH frames down, whatever the body.
    # (msgspec decodes objects and arrays to exactly dict and list, so `type() is` is enough, and faster.)
    for child in node.values() if isinstance(node, dict) else node:
        kind = type(child)
        if kind is dict or kind is list:
            if room == 0:
                raise InvalidWebhook("too_deep", f"body is nested deeper than {MAX_DEPTH} levels")
            _check_depth(child, room - 1)


def route(event_type: str, data: dict[str, Any]) -> tuple[str, str]:
    """(call_id, kind) a verified event of `event_type` is stored under; raises `InvalidWebhook`."""
    field = "session_id" if events.INCOMING_SURFACES.get(event_type) == "live" or "call_id" not in data else "call_id"
    call_id = data.get(field)
    if call_id is not None and not events.is_safe_call_id(call_id):
        raise InvalidWebhook("bad_call_id", f"data.{field} must match ^[A-Za-z0-9_-]{{1,128}}$")
    if event_type in events.INCOMING_SURFACES:
        if call_id is None:
            raise InvalidWebhook("missing_data", f"data.{field} is required for {event_type}")
        _check_sip_headers(data.get("sip_headers", []))
        return call_id, "incoming"
    return call_id or UNROUTED, "webhook"


def _check_sip_headers(headers: object) -> None:
    # The controller routes on these; a malformed list would be stored and then fail every decision.
    if not isinstance(headers, list) or not all(
        isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str) for h in headers
    ):
        raise InvalidWebhook("not_an_event", "data.sip_headers must be a list of {name, value} strings")
