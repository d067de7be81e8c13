"""Small pure helpers the projections share: reading facts out of event data, and time arithmetic."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from switchboard.shared.schema import IncomingCall, LogEvent
from switchboard.shared.sip import user_part


def sip_number(headers: Any, name: str) -> str | None:
    """The user part of the first SIP header called `name` (``sip:+1415…@host`` → ``+1415…``), or None."""
    for header in headers if isinstance(headers, list) else []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == name:
            return user_part(str(header.get("value", "")))
    return None


def caller_and_dialled(event: LogEvent) -> tuple[str | None, str | None]:
    """(From, To) numbers of an ``incoming`` event, typed or raw."""
    if isinstance(event.data, IncomingCall):
        headers: Any = event.data.data.get("sip_headers")
    elif isinstance(event.data, dict) and isinstance(event.data.get("data"), dict):
        headers = event.data["data"].get("sip_headers")
    else:
        headers = None
    return sip_number(headers, "from"), sip_number(headers, "to")


def millis_between(start: str | None, end: str | None) -> float | None:
    """Milliseconds from one RFC 3339 time to another, or None if either is missing or unreadable."""
    if not start or not end:
        return None
    try:
        delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    except ValueError:
        return None
    return round(delta.total_seconds() * 1000, 3)


def field(data: Any, name: str) -> Any:
    """An attribute of a payload Struct or a key of raw JSON data (events whose data did not type-check)."""
    if isinstance(data, dict):
        return data.get(name)
    return getattr(data, name, None)
