"""Calls on OpenAI's Live surface end to end, and a call offered on both surfaces answered once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer
from switchboard.emulator.server import Emulator
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.projections import TRANSCRIPTS, fold
from switchboard.shared.schema import typed
from tests.e2e.conftest import call_events
from tests.fixtures.system import running
from tests.waiting import eventually

POLICY = """\
version: 1
surface: live
agents:
  desk:
    instructions: You answer for the order desk.
    greeting: Greet the caller and offer help with their order.
    delegation: {type: responses, model: gpt-5.2, instructions: Look orders up with lookup_order.}
    tools:
      - name: lookup_order
        parameters: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
  realtime-desk: {surface: realtime, instructions: You answer for billing.}
rules:
  - name: orders
    when: {dialled: "+18005550100"}
    accept: {agent: desk}
  - name: billing
    when: {dialled: "+18005550111"}
    accept: {agent: realtime-desk}
default: {reject: busy}
"""


@pytest.fixture
async def system(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """The whole system on a policy whose order desk answers on Live, OpenAI played by the emulator."""
    async with running(nats_server, tmp_path, workers=1, policy=POLICY) as local:
        yield local


def emulator_of(system: LocalSystem) -> Emulator:
    assert system.emulator is not None
    return system.emulator


async def test_a_live_call_is_accepted_attached_greeted_and_ended(system: LocalSystem, bus: Bus) -> None:
    """A Live call: the Live accept body, an authorised attach, the greeting as commentary, caller_hangup."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live")
    logged = await call_events(bus, call_id)
    record = emulator.calls[call_id]
    session = record.accept_body["session"]
    assert (session["type"], session["model"], session["delegation"]["type"]) == ("live", "gpt-live-1", "responses")
    assert [c.authorization for c in record.sideband_connections] == ["valid"]
    greeting = record.client_events[0]
    assert greeting["type"] == "session.commentary.append" and "offer help" in greeting["content"]
    ended = [msgspec.convert(e.data, events.Ended) for e in logged if e.kind == "ended"]
    assert [e.reason for e in ended] == ["caller_hangup"]
    assert "rt.session.closed" in [e.kind for e in logged]


async def test_a_live_calls_audio_is_never_relayed(system: LocalSystem, bus: Bus) -> None:
    """Every Live server event reaches the bus except the reflected caller and agent audio."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live")
    relayed = [e.data for e in await call_events(bus, call_id) if e.kind.startswith("rt.")]
    sent = emulator.calls[call_id].server_events
    audio = {"session.input_audio.append", "session.output_audio.delta"}
    assert {e["type"] for e in sent} & audio  # the emulator did reflect audio
    assert relayed == [e for e in sent if e["type"] not in audio]


async def test_a_live_calls_transcript_folds_into_turns(system: LocalSystem, bus: Bus) -> None:
    """Live's transcript fragments become the greeting, the caller and the agent, turn by turn."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live")
    logged = [typed(e, seq=i) for i, e in enumerate(await call_events(bus, call_id), 1)]
    turns = fold(TRANSCRIPTS, logged)[call_id].turns
    assert [t.speaker for t in turns] == ["agent", "caller", "agent", "caller", "agent"]
    assert turns[1].text == "Hi, I'd like to check on my order."


async def test_a_live_call_is_hung_up_by_command(system: LocalSystem, bus: Bus) -> None:
    """`cmd.<id>.hangup` on a Live call hangs it up at /live/sessions/{id}/hangup; ended `hangup`."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live", script="hold")
    await eventually(lambda: emulator.calls[call_id].sideband_count == 1, what=f"{call_id} attached")
    reply = msgspec.json.decode(await bus.request(f"cmd.{call_id}.hangup", b"{}", timeout_s=10))
    assert reply == {"ok": True}
    ended = [e for e in await call_events(bus, call_id) if e.kind == "ended"]
    assert [e.data["reason"] for e in ended] == ["hangup"]
    assert emulator.calls[call_id].state == "ended"


async def test_a_tool_is_served_over_the_bus_on_live(system: LocalSystem, bus: Bus) -> None:
    """A Live agent's lookup_order, called through its Responses delegation, is answered by tools.lookup_order."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live", script="order_lookup")
    logged = await call_events(bus, call_id)
    requested = [e.data for e in logged if e.kind == "tool.requested"]
    completed = [e.data for e in logged if e.kind == "tool.completed"]
    assert [r["name"] for r in requested] == ["lookup_order"]
    assert len(completed) == 1 and completed[0].get("error") is None
    client_types = [e["type"] for e in emulator.calls[call_id].client_events]
    assert "response.item.create" in client_types and "response.create" in client_types


async def test_a_call_rung_on_both_surfaces_is_accepted_once(system: LocalSystem, bus: Bus) -> None:
    """Offered on both surfaces, a call for the Live desk is accepted under its live id only; its rtc id is
    set aside (no request to OpenAI) and both decisions carry the SIP Call-ID."""
    emulator = emulator_of(system)
    rtc_id = emulator.place_call("+14155550101", "+18005550100", surface="both", script="short")
    live_id = emulator.twin(rtc_id)
    assert live_id is not None
    live_log = await call_events(bus, live_id)
    rtc_log = await call_events(bus, rtc_id)
    rtc_decided = events.payload(next(e for e in rtc_log if e.kind == "decided"), events.Decided)
    live_decided = events.payload(next(e for e in live_log if e.kind == "decided"), events.Decided)
    assert (rtc_decided.set_aside, live_decided.set_aside) == (True, False)
    assert rtc_decided.sip_call_id == live_decided.sip_call_id is not None
    assert [e.data["reason"] for e in rtc_log if e.kind == "ended"] == ["other_surface"]
    assert "accepted" not in [e.kind for e in rtc_log] and "accepted" in [e.kind for e in live_log]
    assert emulator.calls[rtc_id].rest_requests == []


async def test_say_and_transfer_work_on_a_live_call(system: LocalSystem, bus: Bus) -> None:
    """`say` reaches a Live call as commentary; `transfer` refers it at /live/sessions/{id}/refer; ended `referred`."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live", script="hold")
    await eventually(lambda: emulator.calls[call_id].sideband_count == 1, what=f"{call_id} attached")
    said = await bus.request(f"cmd.{call_id}.say", b'{"instructions": "Tell the caller we are closing soon."}',
                             timeout_s=10)  # fmt: skip
    assert msgspec.json.decode(said) == {"ok": True}
    commentary = [e for e in emulator.calls[call_id].client_events if e.get("type") == "session.commentary.append"]
    assert commentary[-1]["content"] == "Tell the caller we are closing soon."
    referred = await bus.request(f"cmd.{call_id}.refer", b'{"target_uri": "tel:+14155550123"}', timeout_s=10)
    assert msgspec.json.decode(referred) == {"ok": True}
    ended = [e for e in await call_events(bus, call_id) if e.kind == "ended"]
    assert [e.data["reason"] for e in ended] == ["referred"]
    assert (emulator.calls[call_id].state, emulator.calls[call_id].target_uri) == ("referred", "tel:+14155550123")


async def test_a_live_callers_keypresses_are_relayed(system: LocalSystem, bus: Bus) -> None:
    """Live's `transport.dtmf.received` events reach the bus, one per key, in order."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live", script="dtmf")
    keys = [e.data["event"] for e in await call_events(bus, call_id) if e.kind == "rt.transport.dtmf.received"]
    assert keys == ["4", "2", "#"]


async def test_a_dropped_live_sideband_is_reattached_and_the_caller_greeted_once(system: LocalSystem, bus: Bus) -> None:
    """An abnormal close (1006) on Live: the worker attaches again, does not greet again, and the call ends
    normally with the reason Live's `session.closed` gives."""
    emulator = emulator_of(system)
    call_id = emulator.place_call("+14155550101", "+18005550100", surface="live", script="hold")
    await eventually(lambda: emulator.calls[call_id].client_events, what=f"{call_id} greeted")
    emulator.drop_sideband(call_id, 1006)
    await eventually(lambda: emulator.calls[call_id].sideband_count == 2, what="re-attached")
    await emulator.caller_hangup(call_id)
    logged = await call_events(bus, call_id)
    assert [e.data["reason"] for e in logged if e.kind == "ended"] == ["caller_hangup"]
    greetings = [e for e in emulator.calls[call_id].client_events if e.get("type") == "session.commentary.append"]
    assert len(greetings) == 1


async def test_replay_shows_a_live_calls_turns_one_line_each(system: LocalSystem, bus: Bus) -> None:
    """`replay --call` folds Live's transcript fragments into one caller or agent line per turn."""
    from tests.e2e.test_log_cli import switchboard

    call_id = emulator_of(system).place_call("+14155550101", "+18005550100", surface="live")
    await call_events(bus, call_id)
    assert system.settings.nats_url is not None
    _, timeline = await switchboard("replay", "--call", call_id, nats_url=system.settings.nats_url)
    spoken = [line for line in timeline.splitlines() if "_transcript " in line]
    assert [line.split()[3] for line in spoken] == ["agent:", "caller:", "agent:", "caller:", "agent:"]
    assert 'caller: "Hi, I\'d like to check on my order."' in spoken[1]
