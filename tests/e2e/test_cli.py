"""The `switchboard` command as users run it: each service alone, the demo, tail and call."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.server import Emulator
from switchboard.local import LocalSystem, new_webhook_secret
from switchboard.shared.bus import Bus
from switchboard.shared.events import SessionLease
from switchboard.shared.natsserver import NatsServer, free_port
from tests.e2e.conftest import call_events

CLI = [sys.executable, "-m", "switchboard"]


class Proc:
    """A `switchboard` subprocess whose stdout lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    async def wait_for_line(self, fragment: str, timeout_s: float = 15.0) -> str:
        async with asyncio.timeout(timeout_s):
            while True:
                found = next((line for line in self.lines if fragment in line), None)
                if found is not None:
                    return found
                await asyncio.sleep(0.02)

    async def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            await self._reader
        return code


async def spawn(*args: str, env: dict[str, str]) -> Proc:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**os.environ, "LOG_LEVEL": "warning", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return Proc(proc)


@pytest.fixture
async def procs() -> AsyncIterator[list[Proc]]:
    """Subprocesses started by a test; any still running are killed afterwards."""
    started: list[Proc] = []
    yield started
    for p in started:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()


@pytest.mark.timeout(90)
async def test_each_service_runs_alone_and_workers_run_side_by_side(
    nats_server: NatsServer, bus: Bus, procs: list[Proc]
) -> None:
    """ingress, controller and two session workers as separate processes serve calls; SIGTERM exits 0."""
    secret, key, ingress_port = new_webhook_secret(), "sk-test-cli", free_port()
    emulator = Emulator(
        EmulatorConfig(port=0, pace=0, api_key=key, webhook_secret=secret,
                       webhook_url=f"http://127.0.0.1:{ingress_port}/webhooks/openai")
    )  # fmt: skip
    await emulator.start()
    env = {"NATS_URL": nats_server.url, "OPENAI_API_KEY": key, "OPENAI_WEBHOOK_SECRET": secret,
           "OPENAI_BASE_URL": emulator.base_url, "INGRESS_PORT": str(ingress_port)}  # fmt: skip
    try:
        procs.append(await spawn("ingress", env=env))
        procs.append(await spawn("controller", env=env))
        for name in ("worker-a", "worker-b"):
            procs.append(await spawn("session", env={**env, "SWITCHBOARD_WORKER": name}))
        call_ids = [emulator.place_call(f"+1415555010{i}", "+18005550100", script="short") for i in range(4)]
        for call_id in call_ids:
            events = await call_events(bus, call_id, timeout_s=30)
            claimed = [msgspec.convert(e.data, SessionLease) for e in events if e.kind == "session.claimed"]
            assert [c.worker in ("worker-a", "worker-b") for c in claimed] == [True]
            assert emulator.calls[call_id].state == "ended"
        assert [await p.stop() for p in procs] == [0, 0, 0, 0]
    finally:
        await emulator.shutdown()


@pytest.mark.timeout(120)
async def test_demo_exits_zero_with_calls_accepted_rejected_and_referred(procs: list[Proc]) -> None:
    """`switchboard demo` on embedded defaults places three calls and summarises all three outcomes."""
    env = {"EMULATOR_PORT": str(free_port()), "INGRESS_PORT": str(free_port())}
    env.pop("NATS_URL", None)
    demo = await spawn("demo", "--pace", "0", env={**env, "OPENAI_API_KEY": "", "NATS_URL": ""})
    procs.append(demo)
    async with asyncio.timeout(100):
        code = await demo.proc.wait()
        await demo._reader
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
