"""Identifiers shaped like OpenAI's: a type prefix, an underscore, random hex."""

from __future__ import annotations

import random

_random = random.Random()  # seeded from the OS; its own, so tests that seed the global one get distinct ids


def new_id(prefix: str, nbytes: int = 12) -> str:
    """``<prefix>_<hex>``, e.g. ``event_3f2a…``, ``item_…``, ``resp_…``; call ids use 16 bytes (hex32).

    Unique, not secret: the emulator makes thousands a second, and a system call for each would show.
    """
    return f"{prefix}_{_random.getrandbits(nbytes * 8):0{nbytes * 2}x}"


def new_call_id() -> str:
    """A call id as OpenAI issues them for SIP calls: ``rtc_`` and 32 hex digits."""
    return new_id("rtc", 16)


def new_session_id() -> str:
    """A Live session id as OpenAI issues them for SIP calls: ``live_`` and 32 hex digits."""
    return new_id("live", 16)
