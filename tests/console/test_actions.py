"""Acting on a live call from the console: Hang up, Transfer, Say over `cmd.*`, POST from its own origin only,
the outcome on the page and the operator in the `command.*` event."""

from __future__ import annotations

import aiohttp

from switchboard.cli.local import LocalSystem
from switchboard.shared.bus import Bus
from tests.console.conftest import console_url, emulator
from tests.e2e.conftest import attached_call, call_events
from tests.reading import stored
from tests.waiting import eventually


async def test_hang_up_ends_the_call_and_the_log_names_the_operator(
    system: LocalSystem, operator: aiohttp.ClientSession, bus: Bus
) -> None:
    """Hang up: `ok: hung up`, the call ends with reason hangup, `command.hangup` records operator alice."""
    call_id = await attached_call(emulator(system))
    base = console_url(system)
    async with operator.post(f"{base}/calls/{call_id}/hangup", headers={"Origin": base}) as r:
        assert r.status == 200
        assert "ok: hung up" in await r.text()
    logged = await call_events(bus, call_id)
    commands = [e.data for e in logged if e.kind == "command.hangup"]
    assert [(c["ok"], c["operator"]) for c in commands] == [(True, "alice")]
    assert [e.data["reason"] for e in logged if e.kind == "ended"] == ["hangup"]


async def test_say_reaches_the_model_without_the_operator_and_records_who_asked(
    system: LocalSystem, operator: aiohttp.ClientSession, bus: Bus
) -> None:
    """Say: the agent gets a response.create with the instructions alone; `command.say` names alice."""
    em = emulator(system)
    call_id = await attached_call(em)
    await eventually(lambda: em.calls[call_id].client_events, what="the greeting sent")
    base = console_url(system)
    async with operator.post(f"{base}/calls/{call_id}/say", data={"instructions": "Mention the offer"},
                             headers={"Origin": base}) as r:  # fmt: skip
        assert r.status == 200
        assert "ok:" in await r.text()
    assert em.calls[call_id].client_events[-1] == {"type": "response.create",
                                                   "response": {"instructions": "Mention the offer"}}  # fmt: skip
    says = await eventually(lambda: stored(bus, call_id, "command.say"))
    assert says[0].data["operator"] == "alice"
    assert says[0].data["command"] == {"instructions": "Mention the offer"}


async def test_an_action_from_another_origin_or_none_is_refused_and_nothing_is_sent(
    system: LocalSystem, operator: aiohttp.ClientSession, bus: Bus
) -> None:
    """A POST whose Origin is another site's, or that has none: 403, and no command reaches the call."""
    em = emulator(system)
    call_id = await attached_call(em)
    base = console_url(system)
    async with operator.post(f"{base}/calls/{call_id}/hangup", headers={"Origin": "https://evil.example"}) as r:
        assert r.status == 403
        assert "Origin" in await r.text()
    async with operator.post(f"{base}/calls/{call_id}/hangup") as r:
        assert r.status == 403
    assert await stored(bus, call_id, "command.hangup") == []
    assert em.calls[call_id].state != "ended"


async def test_a_transfer_to_a_target_that_is_no_uri_is_a_400_naming_the_problem(
    system: LocalSystem, operator: aiohttp.ClientSession
) -> None:
    """Transfer to `desk 4`: 400 saying what a target must look like; the call goes on."""
    em = emulator(system)
    call_id = await attached_call(em)
    base = console_url(system)
    async with operator.post(f"{base}/calls/{call_id}/transfer", data={"target": "desk 4"},
                             headers={"Origin": base}) as r:  # fmt: skip
        assert r.status == 400
        assert "tel:, sip: or sips:" in await r.text()
    assert em.calls[call_id].state != "ended"


async def test_transfer_refers_the_call_to_the_target(
    system: LocalSystem, operator: aiohttp.ClientSession, bus: Bus
) -> None:
    """Transfer to tel:+14155550123: `ok: transferred`, and the log has the refer with that target and alice."""
    call_id = await attached_call(emulator(system))
    base = console_url(system)
    async with operator.post(f"{base}/calls/{call_id}/transfer", data={"target": "tel:+14155550123"},
                             headers={"Origin": base}) as r:  # fmt: skip
        assert r.status == 200
        assert "transferred to tel:+14155550123" in await r.text()
    refers = await eventually(lambda: stored(bus, call_id, "command.refer"))
    assert (refers[0].data["command"], refers[0].data["operator"]) == ({"target_uri": "tel:+14155550123"}, "alice")


async def test_hanging_up_a_call_that_has_ended_says_it_was_refused(
    system: LocalSystem, operator: aiohttp.ClientSession, bus: Bus
) -> None:
    """Hang up after the end: 409 with the refusal, shown where the outcome goes."""
    call_id = emulator(system).place_call("+14155550101", "+18005550100", script="short")
    await call_events(bus, call_id, timeout_s=20)
    base = console_url(system)
    async with operator.post(f"{base}/calls/{call_id}/hangup", headers={"Origin": base}) as r:
        assert r.status == 409
        assert "refused" in await r.text()
