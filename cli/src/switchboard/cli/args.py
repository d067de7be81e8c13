"""Argument types the commands share: durations (``15m``), times (``2h`` ago or ISO 8601), kind globs."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``24h``, ``7d`` → timedelta."""
    found = _DURATION.match(text.strip())
    if not found:
        raise argparse.ArgumentTypeError(f"not a duration like 90s, 15m, 24h or 7d: {text!r}")
    return timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])


_KIND_GLOB = re.compile(r"^[A-Za-z0-9_*?\[\]!-]+(?:\.[A-Za-z0-9_*?\[\]!-]+)*$")


def parse_kind(text: str) -> str:
    """An event-kind glob (``ended``, ``rt.*``, ``*.done``), checked when parsed, not when NATS refuses it."""
    if not _KIND_GLOB.match(text):
        hint = " (one per --kind: --kind ended --kind decided)" if any(c in text for c in " ,") else ""
        raise argparse.ArgumentTypeError(f"not an event kind or glob like ended, rt.* or *.done: {text!r}{hint}")
    return text


def parse_when(text: str) -> datetime:
    """``15m`` / ``2h`` / ``7d`` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time (2026-11-24T10:00, 15m, 2h, 7d): {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
