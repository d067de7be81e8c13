"""The console does not care which surface a call is on: a Live call's page shows its folded turns."""

from __future__ import annotations

import re

import aiohttp
import pytest

from switchboard.cli.local import LocalSystem
from tests.console.conftest import console_url, emulator
from tests.console.sse import read_until
from tests.waiting import eventually

LIVE_POLICY = """\
version: 1
surface: live
agents:
  desk: {instructions: You answer for the order desk., greeting: Greet the caller.}
default: {accept: {agent: desk}}
"""


@pytest.fixture
def policy() -> str:
    """Every call answered on Live."""
    return LIVE_POLICY


async def test_a_live_calls_page_shows_its_transcript_as_turns(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """Live's transcript fragments appear on the call's page as whole caller and agent turns."""
    call_id = emulator(system).place_call("+14155550101", "+18005550100", surface="live")
    hub = system.console.hub  # type: ignore[union-attr]
    await eventually(lambda: getattr(hub.board.states.get(call_id), "phase", None) == "ended", timeout=20)
    async with operator.get(f"{console_url(system)}/calls/{call_id}") as r:
        assert r.status == 200
        page = await r.text()
    turns = re.findall(r'<p class="turn (caller|agent)"[^>]*>.*?<b>\w+</b> (.*?)</p>', page, flags=re.S)
    assert [speaker for speaker, _ in turns] == ["agent", "caller", "agent", "caller", "agent"]
    assert "check on my order" in turns[1][1]


async def test_a_live_calls_stream_brings_each_turn_once_it_is_complete(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """While a Live call talks, its page's stream sends whole turns (never fragments), the last at the end."""
    call_id = emulator(system).place_call("+14155550101", "+18005550100", surface="live")
    hub = system.console.hub  # type: ignore[union-attr]
    await eventually(lambda: hub.board.states.get(call_id), what="the call is known")
    async with operator.get(f"{console_url(system)}/calls/{call_id}/events?after=0") as stream:
        seen = await read_until(stream, lambda ms: any('data-kind="ended"' in m.data for m in ms), timeout=30)
    turns = [m.data for m in seen if m.event == "turn"]
    speakers = [re.search(r'class="turn (\w+)"', t).group(1) for t in turns]  # type: ignore[union-attr]
    assert speakers == ["agent", "caller", "agent", "caller", "agent"]
    assert "check on my order" in turns[1] and not any("delta" in m.data for m in seen)
