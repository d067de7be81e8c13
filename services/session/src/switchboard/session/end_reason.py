"""Which end reason a session worker records in ``ended`` when it stops holding a call. Pure.

The worker observes three things, and this module turns them into the ``reason`` (one of the strings in
docs/events.md, a contract subscribers rely on):

- how the sideband ended (`SidebandEnd`), which `CallSession.run()` reports in a `SessionEnd`;
- what the holder itself did to end the call (`EndedBy`: the agent's ``end_call`` tool, the rule's
  ``max_duration_s``, the ``transfer_call`` tool), also in the `SessionEnd`;
- which ``hangup`` / ``refer`` commands the controller carried out for the call (their ``command.<verb>``
  outcome recorded with ``ok``), which the worker reads from the log.

`resolve_end_reason` decides; the first rule that applies wins:

1. a ``hangup`` command succeeded → ``hangup``;
2. a ``refer`` command succeeded → ``referred``;
3. the sideband was refused (a 4xx on the upgrade) → ``call_gone`` for 404, else ``sideband_refused``;
4. it could not be connected (5xx or network) on any reconnect attempt → ``sideband_unreachable``;
5. it kept dropping without a close frame past the reconnect attempts → ``sideband_lost``;
6. OpenAI closed it with a close frame, after the holder ended the call → ``end_call``, ``max_duration``
   or ``referred`` (``transfer_call``);
7. …and otherwise: the reason OpenAI gave in the close frame, if any;
8. else ``caller_hangup`` for code 1000 (the caller hung up), ``sideband_closed_<code>`` for another code.

A command outranks everything because OpenAI may close the sideband (or refuse a re-attach) before the
controller has recorded the command's outcome; the worker waits for that outcome before deciding.

Reading those outcomes from the log costs two reads per call, and nearly every call has none: the
worker listens to every call's commands, so `commands_known_absent` says when it knows none was asked
and the reads can be skipped.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Literal, assert_never

import msgspec

EndedBy = Literal["end_call", "max_duration", "transfer_call"]
"""What the holder did to end the call: hung up after the agent's ``end_call``, hung up at the rule's
``max_duration_s``, or referred the call for the ``transfer_call`` tool."""

EndingCommand = Literal["hangup", "refer"]
"""A command, served by the controller, that ends the call when it succeeds."""
ENDING_COMMANDS: tuple[EndingCommand, ...] = ("hangup", "refer")

_BY_HOLDER: dict[EndedBy, str] = {"end_call": "end_call", "max_duration": "max_duration", "transfer_call": "referred"}
_BY_COMMAND: tuple[tuple[EndingCommand, str], ...] = (("hangup", "hangup"), ("refer", "referred"))


class Refused(msgspec.Struct, frozen=True):
    """OpenAI refused the sideband upgrade with this 4xx status (404: the call is over or unknown)."""

    status: int


class Unreachable(msgspec.Struct, frozen=True):
    """The sideband could not be connected (5xx or a network error) in any reconnect attempt."""


class Lost(msgspec.Struct, frozen=True):
    """The sideband kept dropping without a close frame (network, 1006) past the reconnect attempts."""


class Closed(msgspec.Struct, frozen=True):
    """OpenAI closed the sideband with a close frame: its code and the reason it gave (may be empty)."""

    code: int
    reason: str = ""


SidebandEnd = Refused | Unreachable | Lost | Closed
"""How the sideband of a call ended for good (the relay stops re-attaching)."""


class SessionEnd(msgspec.Struct, frozen=True):
    """What `CallSession.run()` saw when the call ended: how the sideband ended, and what the holder did."""

    sideband: SidebandEnd
    ended_by: EndedBy | None = None


def resolve_end_reason(end: SessionEnd, commanded: Collection[EndingCommand] = ()) -> str:
    """The ``reason`` of the call's ``ended`` event (the rules in the module docstring, in order).

    `commanded` holds the ending commands whose outcome was recorded as successful for the call.
    """
    for verb, reason in _BY_COMMAND:
        if verb in commanded:
            return reason
    sideband = end.sideband
    if isinstance(sideband, Refused):
        return "call_gone" if sideband.status == 404 else "sideband_refused"
    if isinstance(sideband, Unreachable):
        return "sideband_unreachable"
    if isinstance(sideband, Lost):
        return "sideband_lost"
    if isinstance(sideband, Closed):
        if end.ended_by is not None:
            return _BY_HOLDER[end.ended_by]
        if sideband.reason:
            return sideband.reason
        return "caller_hangup" if sideband.code == 1000 else f"sideband_closed_{sideband.code}"
    assert_never(sideband)


CLOCK_MARGIN_S = 2.0
"""How much earlier than a call's acceptance (stamped by another host's clock) a worker must have been
listening for commands to know that none was asked for the call."""


def commands_known_absent(
    *,
    token: int,
    seen: bool,
    listening_since: float | None,
    accepted_at: float | None,
    disconnects_then: int,
    disconnects_now: int,
) -> bool:
    """True when no ``hangup`` or ``refer`` can have been asked for a call, so its end reason needs no
    reading of the log: the worker saw none for it (`seen` false) while listening to every call's
    commands since before the call was accepted (by `CLOCK_MARGIN_S`, epoch seconds), on a connection
    that never dropped meanwhile (core NATS delivers to a connected subscriber, and only then), and the
    call is on its first lease (no earlier holder, which may have served a command this one missed)."""
    return (
        token == 1
        and not seen
        and listening_since is not None
        and accepted_at is not None
        and accepted_at > listening_since + CLOCK_MARGIN_S
        and disconnects_now == disconnects_then
    )
