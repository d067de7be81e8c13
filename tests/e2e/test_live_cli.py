"""Steering live calls from the terminal: `say`, `send`, `hangup`, `transfer`, with call ids by unique prefix."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer
from switchboard.emulator.server import Emulator
from switchboard.shared.bus import Bus
from tests.e2e.conftest import attached_call, call_events
from tests.fixtures.system import running
from tests.processes import CLI
from tests.waiting import eventually


async def _switchboard(*args: str, nats_url: str) -> tuple[int, str, str]:
    """Run one `switchboard` command: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**os.environ, "NATS_URL": nats_url, "LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode().strip(), err.decode().strip()


@pytest.fixture
async def system(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """The whole system with one session worker."""
    async with running(nats_server, tmp_path, workers=1) as local:
        yield local


def _emulator(system: LocalSystem) -> Emulator:
    assert system.emulator is not None
    return system.emulator


async def test_hangup_by_a_prefix_of_the_id_ends_the_call_as_hung_up(
    system: LocalSystem, nats_server: NatsServer, bus: Bus
) -> None:
    """`switchboard hangup <prefix>` prints ``ok: hung up <id>`` and the call ends with reason hangup."""
    emulator = _emulator(system)
    call_id = await attached_call(emulator)
    code, out, err = await _switchboard("hangup", call_id[:12], nats_url=nats_server.url)
    assert (code, out, err) == (0, f"ok: hung up {call_id}", "")
    events = await call_events(bus, call_id)
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["hangup"]
    assert emulator.calls[call_id].state == "ended"


async def test_say_reaches_the_call_and_the_agent_is_asked_to_speak(
    system: LocalSystem, nats_server: NatsServer
) -> None:
    """`switchboard say CALL words…` becomes a response.create with those instructions on the sideband."""
    emulator = _emulator(system)
    call_id = await attached_call(emulator)
    await eventually(lambda: emulator.calls[call_id].client_events, what="the greeting sent")
    code, out, _ = await _switchboard("say", call_id, "Say:", "one", "moment", nats_url=nats_server.url)
    assert (code, out) == (0, f"ok: the agent of {call_id} was asked to say it")
    sent = emulator.calls[call_id].client_events[-1]
    assert sent == {"type": "response.create", "response": {"instructions": "Say: one moment"}}


async def test_a_prefix_shared_by_two_calls_is_refused_with_the_candidates(
    system: LocalSystem, nats_server: NatsServer
) -> None:
    """A prefix two calls share: exit 1 and one line saying how many match; nothing is hung up."""
    emulator = _emulator(system)
    first, second = await attached_call(emulator), await attached_call(emulator)
    code, out, err = await _switchboard("hangup", "rtc_", nats_url=nats_server.url)
    assert code == 1 and out == ""
    assert err.startswith("switchboard: 'rtc_' matches 2 calls (") and err.endswith("give more of the id")
    assert emulator.calls[first].state != "ended" and emulator.calls[second].state != "ended"


async def test_an_unknown_call_and_a_bad_target_are_one_line_each(system: LocalSystem, nats_server: NatsServer) -> None:
    """No such call: exit 1 naming it. A transfer target no SIP trunk takes: exit 2 naming the problem."""
    call_id = await attached_call(_emulator(system))
    assert await _switchboard("hangup", "rtc_nope", nats_url=nats_server.url) == (
        1, "", "switchboard: no call 'rtc_nope' in the log"
    )  # fmt: skip
    code, out, err = await _switchboard("transfer", call_id, "desk", nats_url=nats_server.url)
    assert (code, out) == (2, "")
    assert err == "switchboard: TARGET must start with tel:, sip: or sips: (e.g. tel:+14155550123)"


async def test_replay_and_transcript_take_the_prefix_tail_shows(system: LocalSystem, nats_server: NatsServer) -> None:
    """`replay --call` and `transcript` with the 16 characters `tail` prints read that call, not "no events"."""
    emulator = _emulator(system)
    call_id = await attached_call(emulator)
    code, out, _ = await _switchboard("replay", "--call", call_id[:16], "--json", nats_url=nats_server.url)
    assert code == 0 and out
    assert {msgspec.json.decode(line)["subject"] for line in out.splitlines()} == {call_id}
    code, out, err = await _switchboard("transcript", call_id[:16], nats_url=nats_server.url)
    assert code == 0 and "no events" not in out + err
