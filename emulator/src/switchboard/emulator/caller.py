"""The scripted caller: performs a `Script` against a call's `RealtimeSession`.

It starts once the first sideband is attached, waits (bounded) for the agent's greeting to finish, then
runs the steps in order, pausing like a person would between turns. Every wait for the client is bounded
and scaled by pace (with a floor, so pace 0 still gives a fast client a chance), so a silent or broken
client never hangs the call: the caller simply carries on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from switchboard.emulator.realtime import RealtimeSession
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


async def run_script(script: Script, realtime: RealtimeSession, hang_up: Callable[[], Awaitable[None]]) -> None:
    """Run `script` on the call; `hang_up` ends the call as the caller (``caller_hangup``)."""
    bound = log.bind(call_id=realtime.record.call_id, script=script.name)
    wait_pace = max(realtime.pace, MIN_WAIT_PACE)

    greeted = await realtime.wait_until(lambda: realtime.responses_started > 0, GREETING_WAIT_S * wait_pace)
    if not greeted:
        bound.info("caller_heard_no_greeting")
    await realtime.wait_idle()

    for step in script.steps:
        await realtime.wait_idle()
        match step:
            case Say(text=text, reply=reply):
                await realtime.sleep(CALLER_THINK_S)
                await realtime.caller_speaks(text)
                if realtime.auto_response:
                    await realtime.respond(reply)
            case Pause(seconds=seconds):
                await realtime.sleep(seconds)
            case Dtmf(digit=digit):
                await realtime.sleep(CALLER_THINK_S)
                await realtime.dtmf(digit)
            case AskTool():
                await _ask_tool(step, realtime, wait_pace)
            case Hangup():
                await realtime.sleep(CALLER_THINK_S)
                bound.info("caller_hanging_up")
                await hang_up()
                return
    bound.info("caller_script_finished")


async def _ask_tool(step: AskTool, realtime: RealtimeSession, wait_pace: float) -> None:
    await realtime.sleep(CALLER_THINK_S)
    await realtime.caller_speaks(step.text)
    if not realtime.auto_response:
        return
    if not realtime.offers_function(step.name):
        # The model cannot call a tool the session does not offer; it answers in words instead.
        log.info("caller_tool_not_offered", call_id=realtime.record.call_id, tool=step.name)
        await realtime.respond(step.fallback_reply)
        return
    started_before = realtime.responses_started
    call_id = await realtime.function_call(step.name, step.arguments)
    answered = await realtime.wait_until(
        lambda: call_id in realtime.function_outputs and realtime.responses_started > started_before + 1,
        TOOL_OUTPUT_WAIT_S * wait_pace,
    )
    if not answered:
        log.info("caller_tool_output_missing", call_id=realtime.record.call_id, tool_call_id=call_id)
    await realtime.wait_idle()
