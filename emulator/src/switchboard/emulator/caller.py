"""The scripted caller: performs a `Script` against a call's model session, on either surface.

It starts once the first sideband is attached, waits (bounded) for the agent's greeting to finish, then
runs the steps in order, pausing like a person would between turns. Every wait for the client is bounded
and scaled by pace (with a floor, so pace 0 still gives a fast client a chance), so a silent or broken
client never hangs the call: the caller simply carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from switchboard.emulator.calls import CallRecord
from switchboard.emulator.scripts import AskTool, Dtmf, Hangup, Pause, Say, Script

log = structlog.get_logger(__name__)

GREETING_WAIT_S = 5.0
"""How long the caller waits for the agent to start greeting, at pace 1."""
TOOL_OUTPUT_WAIT_S = 10.0
"""How long the caller waits for a function call's output and the follow-up response.create, at pace 1."""
MIN_WAIT_PACE = 0.2
"""Waits for the client are scaled by max(pace, this): never zero, even at pace 0."""
CALLER_THINK_S = 0.3
"""The pause before the caller starts a turn."""


class ModelSide(Protocol):
    """What the caller talks to: `model.RealtimeSession` and `live_session.LiveSession` both are one."""

    record: CallRecord
    pace: float
    responses_started: int
    function_outputs: dict[str, str]

    @property
    def auto_response(self) -> bool: ...

    async def sleep(self, seconds_at_pace_1: float) -> None: ...

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool: ...

    async def wait_idle(self) -> None: ...

    async def caller_speaks(self, text: str) -> str: ...

    async def respond(self, text: str) -> None: ...

    async def dtmf(self, digit: str) -> None: ...

    def offers_function(self, name: str) -> bool: ...

    async def function_call(self, name: str, arguments: dict[str, Any]) -> str: ...


async def run_script(script: Script, model: ModelSide, hang_up: Callable[[], Awaitable[None]]) -> None:
    """Run `script` on the call; `hang_up` ends the call as the caller (``caller_hangup``)."""
    bound = log.bind(call_id=model.record.call_id, script=script.name)
    wait_pace = max(model.pace, MIN_WAIT_PACE)

    greeted = await model.wait_until(lambda: model.responses_started > 0, GREETING_WAIT_S * wait_pace)
    if not greeted:
        bound.info("caller_heard_no_greeting")
    await model.wait_idle()

    for step in script.steps:
        await model.wait_idle()
        match step:
            case Say(text=text, reply=reply):
                await model.sleep(CALLER_THINK_S)
                await model.caller_speaks(text)
                if model.auto_response:
                    await model.respond(reply)
            case Pause(seconds=seconds):
                await model.sleep(seconds)
            case Dtmf(digit=digit):
                await model.sleep(CALLER_THINK_S)
                await model.dtmf(digit)
            case AskTool():
                await _ask_tool(step, model, wait_pace)
            case Hangup():
                await model.sleep(CALLER_THINK_S)
                bound.info("caller_hanging_up")
                await hang_up()
                return
    bound.info("caller_script_finished")


async def _ask_tool(step: AskTool, model: ModelSide, wait_pace: float) -> None:
    await model.sleep(CALLER_THINK_S)
    await model.caller_speaks(step.text)
    if not model.auto_response:
        return
    if not model.offers_function(step.name):
        # The model cannot call a tool the session does not offer; it answers in words instead.
        log.info("caller_tool_not_offered", call_id=model.record.call_id, tool=step.name)
        await model.respond(step.fallback_reply)
        return
    started_before = model.responses_started
    call_id = await model.function_call(step.name, step.arguments)
    answered = await model.wait_until(
        lambda: call_id in model.function_outputs and model.responses_started > started_before + 1,
        TOOL_OUTPUT_WAIT_S * wait_pace,
    )
    if not answered:
        log.info("caller_tool_output_missing", call_id=model.record.call_id, tool_call_id=call_id)
    await model.wait_idle()
