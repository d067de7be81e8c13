"""The `switchboard` command as users run it: each service alone, the demo, tail and call."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgspec
import pytest

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer, free_port
from switchboard.shared.bus import Bus
from switchboard.shared.events import SessionLease
from tests.e2e.conftest import call_events, standalone_emulator
from tests.processes import CLI, Proc, spawn


@pytest.mark.timeout(90)
async def test_each_service_runs_alone_and_workers_run_side_by_side(
    nats_server: NatsServer, bus: Bus, procs: list[Proc]
) -> None:
    """ingress, controller, two session workers and the projector, each its own process on one host with
    only NATS_URL and the OpenAI variables set (no ports but the ingress's), serve calls; SIGTERM exits 0."""
    async with standalone_emulator(nats_server.url, "sk-test-cli") as (emulator, env):
        procs.append(await spawn("ingress", env=env))
        procs.append(await spawn("controller", env=env))
        for name in ("worker-a", "worker-b"):
            procs.append(await spawn("session", env={**env, "SWITCHBOARD_WORKER": name}))
        procs.append(await spawn("projector", env=env))
        call_ids = [emulator.place_call(f"+1415555010{i}", "+18005550100", script="short") for i in range(4)]
        for call_id in call_ids:
            events = await call_events(bus, call_id, timeout_s=30)
            claimed = [msgspec.convert(e.data, SessionLease) for e in events if e.kind == "session.claimed"]
            assert [c.worker in ("worker-a", "worker-b") for c in claimed] == [True]
            assert emulator.calls[call_id].state == "ended"
        assert all(p.proc.returncode is None for p in procs)  # none died on a taken port
        assert [await p.stop() for p in procs] == [0, 0, 0, 0, 0]


@pytest.mark.timeout(120)
async def test_demo_exits_zero_with_calls_accepted_rejected_and_referred(procs: list[Proc]) -> None:
    """`switchboard demo` on embedded defaults places three calls and summarises all three outcomes."""
    env = {"EMULATOR_PORT": str(free_port()), "INGRESS_PORT": str(free_port())}
    env.pop("NATS_URL", None)
    demo = await spawn("demo", "--pace", "0", env={**env, "OPENAI_API_KEY": "", "NATS_URL": ""})
    procs.append(demo)
    code = await demo.wait(100)
    output = "\n".join(demo.lines)
    assert code == 0, output
    for outcome in ("accepted (concierge)", "rejected 603", "referred tel:+14155550123", "all as expected"):
        assert outcome in output


async def test_tail_follows_events_filtered_by_kind_and_call(
    nats_server: NatsServer, tmp_path: Path, procs: list[Proc]
) -> None:
    """`tail --kind ended --since 5m` prints each call's end; `tail --call ID --from-start` only that call's."""
    from switchboard.shared.config import Settings

    settings = Settings(nats_url=nats_server.url, emulator_port=0, ingress_port=0, ingress_host="127.0.0.1")
    system = LocalSystem(settings, data_dir=tmp_path, workers=1, pace=0)
    await system.start()
    assert system.emulator is not None
    try:
        env = {"NATS_URL": nats_server.url}
        live = await spawn("tail", "--kind", "ended", "--since", "5m", env=env)
        procs.append(live)
        first = system.emulator.place_call("+14155550101", "+18005550100", script="silent")
        second = system.emulator.place_call("+19005550000", "+18005550100")
        await live.wait_for_line(first[:16])
        await live.wait_for_line(second[:16])
        assert all("ended" in line for line in live.lines)
        one = await spawn("tail", "--call", second, "--from-start", env=env)
        procs.append(one)
        await one.wait_for_line("ended")
        assert all(second[:16] in line for line in one.lines)
        assert any("rejected" in line for line in one.lines)
    finally:
        await system.stop()


async def test_call_places_a_call_through_the_running_emulator(
    nats_server: NatsServer, tmp_path: Path, procs: list[Proc]
) -> None:
    """`switchboard call --wait` rings the emulator at EMULATOR_PORT, prints the call id, then how it ended."""
    from switchboard.shared.config import Settings

    settings = Settings(nats_url=nats_server.url, emulator_port=free_port(), ingress_port=0, ingress_host="127.0.0.1")
    system = LocalSystem(settings, data_dir=tmp_path, workers=1, pace=0)
    await system.start()
    try:
        call = await spawn("call", "--from", "+14155550101", "--to", "+18005550100", "--script", "short", "--wait",
                           env={"EMULATOR_PORT": str(settings.emulator_port)})  # fmt: skip
        procs.append(call)
        assert await call.wait(30) == 0
        call_id = call.lines[0]
        assert call.lines[1] == f"{call_id}: ended (caller_hangup)"
        assert system.emulator is not None and system.emulator.calls[call_id].state == "ended"
    finally:
        await system.stop()


@pytest.mark.timeout(90)
async def test_up_stays_up_serves_calls_and_stops_cleanly(tmp_path: Path, procs: list[Proc]) -> None:
    """`switchboard up` starts everything, takes a call placed with `switchboard call`, and exits 0 on SIGTERM."""
    env = {"EMULATOR_PORT": str(free_port()), "INGRESS_PORT": str(free_port()), "OPENAI_API_KEY": "", "NATS_URL": ""}
    up = await spawn("up", "--pace", "0", "--data-dir", str(tmp_path / "data"), env=env)
    procs.append(up)
    ready = await up.wait_for_line("Switchboard is up", timeout_s=60)
    nats_url = ready.split("NATS_URL=", 1)[1].strip()
    call = await spawn("call", "--from", "+14155550101", "--to", "+18005550100", "--script", "silent", "--wait",
                       env=env)  # fmt: skip
    procs.append(call)
    assert await call.wait(30) == 0
    assert call.lines[1].endswith("ended (caller_hangup)")
    replayed = await spawn(
        "tail", "--call", call.lines[0], "--from-start", "--kind", "ended", env={"NATS_URL": nats_url}
    )
    procs.append(replayed)
    await replayed.wait_for_line("call ended (caller_hangup)")
    assert await up.stop(30) == 0


@pytest.mark.timeout(90)
async def test_commands_run_from_ups_folder_find_it_without_nats_url(tmp_path: Path, procs: list[Proc]) -> None:
    """With `up` running in a folder, `call` and `calls` run there (or below) need neither NATS_URL nor
    EMULATOR_PORT; the banner says what to export elsewhere; stopping `up` removes its record."""
    unset = {"NATS_URL": "", "EMULATOR_PORT": "", "OPENAI_API_KEY": "", "SWITCHBOARD_POLICY": ""}
    up_env = {**unset, "EMULATOR_PORT": str(free_port()), "INGRESS_PORT": str(free_port())}
    up = await spawn("up", "--pace", "0", env=up_env, cwd=tmp_path)
    procs.append(up)
    ready = await up.wait_for_line("Switchboard is up", timeout_s=60)
    nats_url = ready.split("NATS_URL=", 1)[1].strip()
    await up.wait_for_line("Follow events with `switchboard tail`")
    assert f"  Commands run from {tmp_path} find this system; elsewhere, export NATS_URL={nats_url}" in up.lines
    assert any(line.startswith(f"  Data folder: {tmp_path / '.switchboard'} ") for line in up.lines)
    below = tmp_path / "notes"
    below.mkdir()
    call = await spawn("call", "--from", "+14155550101", "--to", "+18005550100", "--script", "silent", "--wait",
                       env=unset, cwd=below)  # fmt: skip
    procs.append(call)
    assert await call.wait(30) == 0
    calls = await spawn("calls", env=unset, cwd=below)
    procs.append(calls)
    assert await calls.wait(30) == 0
    assert any(line.startswith(call.lines[0]) for line in calls.lines)
    assert await up.stop(30) == 0
    assert not (tmp_path / ".switchboard" / "running.json").exists()


async def test_a_command_run_elsewhere_without_nats_url_says_what_to_set(tmp_path: Path) -> None:
    """`switchboard calls` with no NATS_URL and no `up` in this folder: one line naming NATS_URL, exit 2."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, "calls", env={**os.environ, "NATS_URL": ""}, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 2
    assert (out + err).decode().splitlines() == [
        "switchboard: NATS_URL is not set: export NATS_URL=nats://HOST:4222 (the switchboard command also finds "
        "a `switchboard up` running from this folder)"
    ]


async def test_a_one_shot_command_without_nats_fails_fast_in_one_line_naming_the_url() -> None:
    """`switchboard calls` with NATS unreachable exits 1 within a few seconds, with one line and the URL."""
    url = f"nats://127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "calls", env={**os.environ, "NATS_URL": url}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    started = time.monotonic()
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1
    assert time.monotonic() - started < 6
    lines = (out + err).decode().splitlines()
    assert lines == [f"switchboard: could not connect to NATS at {url}: nats: no servers available for connection"]
