"""Identifiers shaped like OpenAI's: a type prefix, an underscore, random hex."""

from __future__ import annotations

import secrets


def new_id(prefix: str, nbytes: int = 12) -> str:
    """``<prefix>_<hex>``, e.g. ``event_3f2a…``, ``item_…``, ``resp_…``; call ids use 16 bytes (hex32)."""
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def new_call_id() -> str:
    """A call id as OpenAI issues them for SIP calls: ``rtc_`` and 32 hex digits."""
    return new_id("rtc", 16)
