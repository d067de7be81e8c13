"""Commands on a live call (``cmd.<call_id>.<verb>``): the one client every sender uses, and the one rule
for the ``operator`` a request names.

A command is a NATS request answered ``{"ok": true}`` or ``{"ok": false, "error": "…"}`` (see
docs/events.md). The CLI's `say`/`send`/`hangup`/`transfer` and the console's buttons send them with
`send_command`. A body may carry ``operator`` (who asked); whoever serves the command takes it out with
`take_operator` before acting on the rest, and records it in the ``command.<verb>`` event.
"""

from __future__ import annotations

from typing import Any

import msgspec

from switchboard.shared.bus import Bus
from switchboard.shared.errors import NoResponder, SwitchboardError

VERB_SUBJECT = {"say": "say", "send": "send", "hangup": "hangup", "transfer": "refer"}
"""A sender's verb → the verb of its subject (`transfer` is a SIP REFER)."""

REPLY_TIMEOUT_S = 15.0
"""The controller answers a hangup or refer only after OpenAI has."""

OPERATOR_FIELD = "operator"
_MAX_OPERATOR = 200


class CommandRefused(SwitchboardError):
    """The worker or controller answered the command with an error, or nobody holds the call."""


class _Reply(msgspec.Struct):
    ok: bool
    error: str | None = None


def take_operator(command: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The command without its ``operator`` field, and the operator (None when absent or not a string)."""
    if OPERATOR_FIELD not in command:
        return command, None
    rest = {k: v for k, v in command.items() if k != OPERATOR_FIELD}
    operator = command[OPERATOR_FIELD]
    return rest, operator[:_MAX_OPERATOR] if isinstance(operator, str) and operator else None


async def send_command(
    bus: Bus,
    call_id: str,
    verb: str,
    body: dict[str, Any],
    *,
    operator: str | None = None,
    timeout_s: float = REPLY_TIMEOUT_S,
) -> None:
    """Request `verb` (a key of `VERB_SUBJECT`) on the call; return when it was carried out.

    Raises `CommandRefused` with the reason (nobody holds the call, the server's error, an unreadable
    reply) and `BusUnavailable` when no answer came within `timeout_s`."""
    payload = dict(body)
    if operator:
        payload[OPERATOR_FIELD] = operator
    subject_verb = VERB_SUBJECT[verb]
    try:
        raw = await bus.request(f"cmd.{call_id}.{subject_verb}", msgspec.json.encode(payload), timeout_s=timeout_s)
    except NoResponder:
        raise CommandRefused(f"nobody holds call {call_id}: it has ended, or no worker runs") from None
    try:
        reply = msgspec.json.decode(raw, type=_Reply)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise CommandRefused(f"{verb} {call_id}: unreadable reply {raw[:200]!r}") from None
    if not reply.ok:
        raise CommandRefused(f"{verb} {call_id} refused: {reply.error or 'no reason given'}")
