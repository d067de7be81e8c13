"""The live calls table and its stream: rows appear and change as calls do; a reconnect resumes exactly."""

from __future__ import annotations

import re

import aiohttp

from switchboard.cli.local import LocalSystem
from tests.console.conftest import console_url, emulator
from tests.console.sse import Message, read_until
from tests.e2e.conftest import attached_call
from tests.waiting import eventually


def _after(page: str) -> int:
    found = re.search(r'sse-connect="/events\?after=(\d+)"', page)
    assert found is not None
    return int(found.group(1))


async def test_a_live_call_is_a_row_with_its_numbers_rule_agent_and_worker(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """A call being talked on is a row of `/`: from, to, rule, agent, worker and state live."""
    call_id = await attached_call(emulator(system))
    await eventually(lambda: system.console and system.console.hub and call_id in system.console.hub.board.states)
    async with operator.get(console_url(system) + "/") as r:
        page = await r.text()
    row = re.search(rf'<tr id="call-{call_id}".*?</tr>', page, flags=re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))
    assert cells[1:7] == ["+14155550101", "+18005550100", "support-line", "concierge", "worker-1", "live"]


async def test_a_new_call_reaches_an_open_stream_as_a_row_then_as_updates_of_it(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """After the page, the stream brings the new call's row (`new`) and then its changes (`c-<id>`) up to live."""
    base = console_url(system)
    async with operator.get(base + "/") as r:
        after = _after(await r.text())
    async with operator.get(f"{base}/events?after={after}") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        call_id = emulator(system).place_call("+14155550177", "+18005550100", script="hold")
        seen = await read_until(stream, lambda ms: any('class="phase-live"' in m.data and "worker-1" in m.data
                                                       for m in ms))  # fmt: skip
    rows = [m for m in seen if call_id in m.data]
    assert rows[0].event == "new" and "+14155550177" in rows[0].data
    assert {m.event for m in rows[1:]} == {f"c-{call_id}"}
    ids = [m.id for m in rows]
    assert all(i is not None and i > after for i in ids)
    assert ids == sorted(ids)


async def test_reconnecting_with_last_event_id_gets_exactly_what_came_after_it(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """A stream reopened with `Last-Event-ID: N` carries the messages after N, none before, none missing."""
    base = console_url(system)
    hub = system.console.hub  # type: ignore[union-attr]
    calls = [emulator(system).place_call(f"+1415555010{i}", "+18005550100", script="short") for i in range(2)]
    await eventually(lambda: all(c in hub.board.states and hub.board.states[c].phase == "ended" for c in calls),
                     timeout=20, what="both calls ended")  # fmt: skip

    def logged(ms: list[Message]) -> list[Message]:
        return [m for m in ms if m.id is not None]

    async with operator.get(f"{base}/events?after=0") as stream:
        everything = logged(await read_until(stream, lambda ms: sum("phase-ended" in m.data for m in ms) == 2))
    middle = everything[len(everything) // 2].id
    expected = [m for m in everything if m.id is not None and middle is not None and m.id > middle]
    async with operator.get(f"{base}/events", headers={"Last-Event-ID": str(middle)}) as stream:
        rest = logged(await read_until(stream, lambda ms: len(logged(ms)) >= len(expected)))
    assert rest == expected


async def test_a_stream_with_a_garbled_position_is_a_400(system: LocalSystem, operator: aiohttp.ClientSession) -> None:
    """`?after=` that is not a stream sequence: 400 with a line saying what it must be."""
    async with operator.get(console_url(system) + "/events?after=yesterday") as r:
        assert r.status == 400
        assert "stream sequence" in await r.text()


async def test_ended_calls_are_in_recent_calls_filtered_by_outcome_and_number(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """`/calls` lists ended calls; `outcome=rejected` keeps the rejected one, `number=` a part of a number."""
    em = emulator(system)
    answered = em.place_call("+14155550101", "+18005550100", script="short")
    rejected = em.place_call("+19005550000", "+18005550100")
    hub = system.console.hub  # type: ignore[union-attr]
    await eventually(lambda: all(hub.board.records.get(c) and hub.board.records[c].ended_at  # type: ignore[union-attr]
                                 for c in (answered, rejected)), timeout=20)  # fmt: skip
    base = console_url(system)
    async with operator.get(base + "/calls") as r:
        page = await r.text()
    assert answered in page and rejected in page
    async with operator.get(base + "/calls?outcome=rejected") as r:
        page = await r.text()
    assert rejected in page and answered not in page
    async with operator.get(base + "/calls?number=900555") as r:
        page = await r.text()
    assert rejected in page and answered not in page
    async with operator.get(base + "/calls?outcome=lost") as r:
        assert r.status == 400
        assert "outcome must be one of" in await r.text()
