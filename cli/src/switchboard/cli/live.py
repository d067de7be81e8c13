"""`switchboard say|send|hangup|transfer CALL …`: steer a live call from the terminal, and find calls by prefix.

Each verb is one request on the call's command subject (``cmd.<call_id>.<verb>``, see docs/architecture.md):
``say`` and ``send`` are served by the session worker holding the call, ``hangup`` and ``transfer``
(``refer``) by the controller, which answers once OpenAI has. The answer is printed as one line; a
refusal is one line on stderr and exit 1, bad input exit 2.

A call may be named by any unique prefix of its id (what `tail` shows): `resolve_call` looks it up among
the calls in the log; `transcript`, `replay --call` and `tail --call` use it too.
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

import msgspec

from switchboard.shared import events
from switchboard.shared.bus import ONE_SHOT_CONNECT_S, Bus
from switchboard.shared.commands import VERB_SUBJECT, send_command
from switchboard.shared.config import Settings
from switchboard.shared.errors import BusUnavailable, ConfigError, SwitchboardError
from switchboard.shared.sip import target_uri_problem

VERBS = tuple(VERB_SUBJECT)
_SHOWN_MATCHES = 5


class UnknownCall(SwitchboardError):
    """No call in the log has this id or prefix, or more than one has the prefix."""


def add_parsers(sub: Any) -> None:
    """Add `say`, `send`, `hangup` and `transfer` to the `switchboard` command."""
    call_help = "the call's id, or a unique prefix of it (as `tail` shows)"
    say = sub.add_parser("say", help="have the agent of a live call say something (a response.create)")
    say.add_argument("call", metavar="CALL", help=call_help)
    say.add_argument("instructions", nargs="+", metavar="INSTRUCTIONS", help="what to tell the model to say")
    send = sub.add_parser("send", help="send one Realtime client event on a live call's sideband")
    send.add_argument("call", metavar="CALL", help=call_help)
    send.add_argument(
        "event", metavar="EVENT", help='a JSON object with a "type", e.g. \'{"type": "response.cancel"}\''
    )
    hangup = sub.add_parser("hangup", help="hang up a live call")
    hangup.add_argument("call", metavar="CALL", help=call_help)
    transfer = sub.add_parser("transfer", help="transfer a live call (a SIP REFER)")
    transfer.add_argument("call", metavar="CALL", help=call_help)
    transfer.add_argument("target", metavar="TARGET", help="tel:+14155550123, sip:desk@pbx.example.com or sips:…")


async def resolve_call(bus: Bus, given: str, *, must_exist: bool = True) -> str:
    """The id of the one call in the log whose id is `given` or starts with it; `UnknownCall` if several
    do, or if none does and `must_exist` (otherwise `given` itself: a call `tail` may yet see)."""
    if not given or not events.is_safe_call_id(given):
        raise ConfigError(f"not a call id: {given!r}")
    try:
        # One subject per call (every call starts with `incoming`), not one per event kind of every call.
        info = await bus.js.stream_info(events.STREAM, subjects_filter=f"{events.SUBJECT_ROOT}.*.incoming")
    except Exception as exc:
        raise BusUnavailable(f"cannot read stream {events.STREAM}: {str(exc) or type(exc).__name__}") from exc
    calls = {subject.split(".", 2)[1] for subject in (info.state.subjects or {})}
    if given in calls:
        return given
    matches = sorted(c for c in calls if c.startswith(given))
    if len(matches) == 1:
        return matches[0]
    if not matches and not must_exist:
        return given
    if not matches:
        raise UnknownCall(f"no call {given!r} in the log")
    shown = ", ".join(matches[:_SHOWN_MATCHES]) + (", …" if len(matches) > _SHOWN_MATCHES else "")
    raise UnknownCall(f"{given!r} matches {len(matches)} calls ({shown}): give more of the id")


def _body(args: argparse.Namespace) -> bytes:
    """The command's JSON body from the arguments, checked as the server will check it (exit 2 if not)."""
    if args.command == "say":
        return msgspec.json.encode({"instructions": " ".join(args.instructions)})
    if args.command == "send":
        try:
            event = msgspec.json.decode(args.event)
        except msgspec.DecodeError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise ConfigError('EVENT must be a JSON object with a "type", e.g. \'{"type": "response.cancel"}\'')
        return msgspec.json.encode(event)
    if args.command == "transfer":
        problem = target_uri_problem(args.target)
        if problem is not None:
            raise ConfigError(f"TARGET {problem}")
        return msgspec.json.encode({"target_uri": args.target})
    return b"{}"


def _operator() -> str | None:
    """Who runs the command, for the ``command.*`` event: ``cli:<login name>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name for this uid
        return None


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """Send the verb's command to the call and print the outcome."""
    body = _body(args)
    bus = await Bus.connect(settings.require_nats_url(), name=args.command, give_up_after_s=ONE_SHOT_CONNECT_S)
    try:
        call_id = await resolve_call(bus, args.call)
        await send_command(bus, call_id, args.command, msgspec.json.decode(body), operator=_operator())
    finally:
        await bus.close()
    done = {
        "say": f"the agent of {call_id} was asked to say it",
        "send": f"sent {msgspec.json.decode(body).get('type')} on {call_id}",
        "hangup": f"hung up {call_id}",
        "transfer": f"transferred {call_id} to {getattr(args, 'target', '')}",
    }
    print(f"ok: {done[args.command]}")
    return 0
