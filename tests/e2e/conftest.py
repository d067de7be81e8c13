"""End-to-end fixtures: the whole system (ingress, controller, workers, emulator) on a real nats-server."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.cli.local import LocalSystem, new_webhook_secret
from switchboard.cli.natsserver import NatsServer, free_port
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.server import Emulator
from switchboard.shared.bus import Bus
from switchboard.shared.events import CloudEvent
from tests.fixtures.system import running
from tests.reading import stored
from tests.waiting import eventually


@pytest.fixture
async def system(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """Everything running in this process, OpenAI played by the emulator, callers without pauses."""
    async with running(nats_server, tmp_path) as local:
        yield local


async def attached_call(emulator: Emulator, dialled: str = "+18005550100") -> str:
    """Place a call whose caller holds the line, and return its id once a worker's sideband is attached."""
    call_id = emulator.place_call("+14155550101", dialled, script="hold")
    await eventually(lambda: emulator.calls[call_id].sideband_count == 1, what=f"{call_id} attached")
    return call_id


async def call_events(bus: Bus, call_id: str, *, until: str = "ended", timeout_s: float = 15.0) -> list[CloudEvent]:
    """All events of one call from the log, once an event of kind `until` is there."""

    async def read() -> list[CloudEvent] | None:
        seen = await stored(bus, call_id)
        return seen if any(e.kind == until for e in seen) else None

    result = await eventually(read, timeout=timeout_s, interval=0.1, what=f"{call_id} has {until}")
    return result


@contextlib.asynccontextmanager
async def standalone_emulator(nats_url: str, key: str) -> AsyncIterator[tuple[Emulator, dict[str, str]]]:
    """An emulator for services run as their own processes, and the environment that points them at it,
    at NATS and at a free ingress port: only NATS_URL and the OpenAI variables (and that port)."""
    secret, ingress_port = new_webhook_secret(), free_port()
    emulator = Emulator(
        EmulatorConfig(port=0, pace=0, api_key=key, webhook_secret=secret,
                       webhook_url=f"http://127.0.0.1:{ingress_port}/webhooks/openai")
    )  # fmt: skip
    await emulator.start()
    env = {"NATS_URL": nats_url, "OPENAI_API_KEY": key, "OPENAI_WEBHOOK_SECRET": secret,
           "OPENAI_BASE_URL": emulator.base_url, "INGRESS_PORT": str(ingress_port)}  # fmt: skip
    try:
        yield emulator, env
    finally:
        await emulator.shutdown()
