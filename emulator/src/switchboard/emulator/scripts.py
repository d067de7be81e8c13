"""Scripted callers: what the person on the phone does once the agent has greeted them.

A script is a named sequence of steps, run after the sideband is attached and the greeting response has
finished (or after a bounded wait if the agent never greets):

- `Say(text, reply)`: the caller speaks; server VAD ends the turn, the input is transcribed and the model
  answers by itself, speaking `reply` (a canned answer standing in for the model's).
- `Pause(seconds)`: silence (scaled by pace).
- `Dtmf(digit)`: a keypad press (``input_audio_buffer.dtmf_event_received``).
- `AskTool(text, name, arguments)`: the caller speaks and the model answers with a function call; the
  caller then waits (bounded) for the client's ``function_call_output`` and ``response.create``, and the
  model speaks about the output.
- `Hangup()`: the caller hangs up: the sideband closes with 1000 and the call ends ``caller_hangup``.

On Live the same steps play out in Live's vocabulary: speech arrives as reflected audio and
``session.input_transcript.delta``, the model answers with ``session.output_transcript.delta`` and audio,
a keypress is ``transport.dtmf.received``, a tool call goes through a ``responses`` delegation
(``session.delegation.created`` and ``response.event``; the client answers with ``response.item.create``
and ``response.create``), and a hangup sends ``session.closed`` (``remote_hangup``) before the close.

Pure data; `caller.run_script` performs them. Scripts in `SCRIPTS` can be named over the control API.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Say(msgspec.Struct, frozen=True, tag=True):
    text: str
    reply: str = "I understand. Is there anything else I can help you with?"


class Pause(msgspec.Struct, frozen=True, tag=True):
    seconds: float


class Dtmf(msgspec.Struct, frozen=True, tag=True):
    digit: str

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in "0123456789*#ABCD":
            raise ValueError(f"not a DTMF digit: {self.digit!r}")


class AskTool(msgspec.Struct, frozen=True, tag=True):
    text: str
    name: str
    arguments: dict[str, Any]
    fallback_reply: str = "I'm sorry, I can't look that up right now."
    """What the model says instead when the session offers no function tool of that name."""


class Hangup(msgspec.Struct, frozen=True, tag=True):
    pass


Step = Say | Pause | Dtmf | AskTool | Hangup


class Script(msgspec.Struct, frozen=True):
    """A named caller behaviour."""

    name: str
    steps: tuple[Step, ...]


_CHATTER_TURNS = 100
_CHATTER_TURN = Say(
    "Go on, tell me more.",
    reply=(
        "Of course. Your plan includes unlimited calls and texts across the country, twenty gigabytes of "
        "data each month, and free roaming in most of Europe. Unused data rolls over for one month, and "
        "you can add a second line at half price. If you travel often, the international pack adds fifty "
        "countries for a small daily fee. Shall I keep going?"
    ),
)

SCRIPTS: dict[str, Script] = {
    script.name: script
    for script in (
        Script(
            "default",
            (
                Say(
                    "Hi, I'd like to check on my order.",
                    reply="Of course. I see your order shipped yesterday and should arrive tomorrow.",
                ),
                Pause(0.3),
                Say("Thanks, that's all. Bye!", reply="You're welcome. Have a great day, goodbye!"),
                Hangup(),
            ),
        ),
        Script("short", (Say("Hello? Is this the right number?", reply="Yes, you've reached us. Goodbye!"), Hangup())),
        Script("silent", (Hangup(),)),
        Script(
            "order_lookup",
            (
                AskTool("Can you check the status of order A1234?", "lookup_order", {"order_id": "A1234"}),
                Hangup(),
            ),
        ),
        Script(
            "dtmf",
            (
                Say("I'd like to pay my bill.", reply="Sure. Please enter your account number, then press pound."),
                Dtmf("4"),
                Dtmf("2"),
                Dtmf("#"),
                Hangup(),
            ),
        ),
        Script("hold", ()),
        Script("chatter", (*(_CHATTER_TURN,) * _CHATTER_TURNS, Hangup())),
    )
}
"""Built-in scripts: ``default`` (two turns, then bye), ``short`` (one turn), ``silent`` (hangs up after the
greeting), ``order_lookup`` (a ``lookup_order`` tool call), ``dtmf`` (one turn and keypad presses), ``hold``
(stays on the line, silent, until the agent hangs up or refers), ``chatter`` (a long, talkative call for
benchmarks: the caller keeps asking and the agent answers at length, so events stream at a steady rate —
at pace 1 about 10 events/s, transcript deltas every 0.12 s while the agent speaks; ends after about
8 minutes at pace 1)."""

DEFAULT_SCRIPT = "default"


def resolve(script: str | Script | None) -> Script:
    """A script by name (``None`` → ``default``), or the given one; `KeyError` for unknown names."""
    if script is None:
        return SCRIPTS[DEFAULT_SCRIPT]
    if isinstance(script, Script):
        return script
    try:
        return SCRIPTS[script]
    except KeyError:
        raise KeyError(f"unknown script {script!r}; known: {', '.join(sorted(SCRIPTS))}") from None
