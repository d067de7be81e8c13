"""A call's page: the decision and its reason, the timeline (tools with arguments, output and latency), the
transcript turn by turn, the end reason; its stream resumes exactly and never carries deltas."""

from __future__ import annotations

import re

import aiohttp

from switchboard.cli.local import LocalSystem
from tests.console.conftest import console_url, emulator
from tests.console.sse import Message, read_until
from tests.e2e.conftest import attached_call
from tests.waiting import eventually


def _ended(system: LocalSystem, call_id: str) -> bool:
    hub = system.console.hub  # type: ignore[union-attr]
    state = hub.board.states.get(call_id)
    return state is not None and state.phase == "ended"


async def test_a_finished_call_shows_its_decision_reason_timeline_tools_transcript_and_end(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """After an order lookup: the rule and reason, incoming…ended in order, the tool's arguments, output and
    latency, both speakers' turns and the end reason."""
    call_id = emulator(system).place_call("+14155550101", "+18005550100", script="order_lookup")
    await eventually(lambda: _ended(system, call_id), timeout=20, what="the call ended")
    async with operator.get(f"{console_url(system)}/calls/{call_id}") as r:
        assert r.status == 200
        page = await r.text()
    assert "accept by rule support-line" in page
    assert "toll-free numbers reach the concierge" in page
    kinds = re.findall(r'data-kind="([^"]+)"', page)
    assert kinds[:4] == ["incoming", "decided", "accepted", "session.claimed"]
    assert "ended" in kinds[-2:]
    assert "tool.requested" in kinds and "tool.completed" in kinds
    tool = re.search(r'data-kind="tool.completed".*?</li>', page, flags=re.S)
    assert tool is not None and "output" in tool.group(0) and " ms" in tool.group(0)
    requested = re.search(r'data-kind="tool.requested".*?</li>', page, flags=re.S)
    assert requested is not None and "order_id" in requested.group(0)
    speakers = re.findall(r'<p class="turn (caller|agent)"', page)
    assert {"caller", "agent"} <= set(speakers)
    assert re.search(r'id="end-reason">(caller_hangup|end_call)<', page)


async def test_the_transcript_streams_turn_by_turn_and_never_a_delta(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """While the call talks, its stream brings whole turns (`turn`), timeline lines and status, never deltas."""
    em = emulator(system)
    call_id = em.place_call("+14155550101", "+18005550100", script="chatter")
    await eventually(lambda: system.console.hub.board.states.get(call_id), what="the call is known")  # type: ignore[union-attr]
    base = console_url(system)
    async with operator.get(f"{base}/calls/{call_id}/events?after=0") as stream:
        seen = await read_until(stream, lambda ms: sum(m.event == "turn" for m in ms) >= 3, timeout=30)
    assert {m.event for m in seen} <= {"timeline", "turn", "status"}
    assert not any("delta" in m.data for m in seen)
    turns = [m for m in seen if m.event == "turn"]
    assert all(m.data.startswith('<p class="turn ') for m in turns)


async def test_a_call_stream_reopened_with_last_event_id_continues_where_it_stopped(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """The call's stream after `Last-Event-ID: N` is exactly the part of the whole stream after N."""
    call_id = emulator(system).place_call("+14155550101", "+18005550100", script="short")
    await eventually(lambda: _ended(system, call_id), timeout=20, what="the call ended")
    url = f"{console_url(system)}/calls/{call_id}/events"

    def has_end(ms: list[Message]) -> bool:
        return any('data-kind="ended"' in m.data for m in ms)

    async with operator.get(url + "?after=0") as stream:
        everything = await read_until(stream, has_end)
    middle = everything[len(everything) // 2].id
    assert middle is not None
    expected = [m for m in everything if m.id is not None and m.id > middle]
    async with operator.get(url, headers={"Last-Event-ID": str(middle)}) as stream:
        rest = await read_until(stream, has_end)
    assert rest == expected


async def test_a_call_the_log_does_not_have_is_a_404_page(system: LocalSystem, operator: aiohttp.ClientSession) -> None:
    """`/calls/<id>` of no call: 404 saying the log has no such call."""
    async with operator.get(f"{console_url(system)}/calls/rtc_nothing_like_it") as r:
        assert r.status == 404
        assert "No call" in await r.text()


async def test_the_status_of_a_live_call_names_its_worker_and_state(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """A call being talked on: its page says live, and the worker holding it."""
    call_id = await attached_call(emulator(system))
    await eventually(lambda: (s := system.console.hub.board.states.get(call_id)) and s.worker)  # type: ignore[union-attr]
    async with operator.get(f"{console_url(system)}/calls/{call_id}") as r:
        page = await r.text()
    assert '<dd id="phase">live</dd>' in page
    assert "worker-1" in page
