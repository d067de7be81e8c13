"""The ingress when NATS goes away, stalls or comes late: 503 so OpenAI retries, and every retry lands once."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from switchboard.cli.natsserver import NatsServer
from switchboard.ingress.app import Ingress
from switchboard.shared.bus import Bus
from tests.integration.test_ingress import Client, incoming, settings_for, stored
from tests.waiting import eventually


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def _readiness(client: Client) -> int:
    return (await client.get("/readyz"))[0]


async def _publishes(client: Client) -> float:
    _, metrics = await client.get("/metrics")
    line = next(x for x in metrics.splitlines() if x.startswith("switchboard_ingress_publish_seconds_count "))
    return float(line.split()[-1])


async def test_nats_down_gives_503_and_after_a_restart_the_retry_lands_once(
    nats_server: NatsServer, http: aiohttp.ClientSession, bus: Bus
) -> None:
    """NATS stops: 503 + Retry-After, nothing handed to nats-py; restarted on its data: the retry lands once."""
    ingress = Ingress(settings_for(nats_server.url))
    await ingress.start()
    running = asyncio.create_task(ingress.run())
    client = Client(http, ingress)
    restarted = NatsServer(nats_server.data_dir, port=nats_server.port)
    try:
        await nats_server.stop()
        await eventually(lambda: _readiness_is(client, 503), timeout=10, what="/readyz 503")
        publishes = await _publishes(client)
        status, answer, headers = await client.deliver(incoming("rtc_out"), "wh_out")
        assert (status, answer["reason"], headers["Retry-After"]) == (503, "bus_unavailable", "2")
        assert await _publishes(client) == publishes  # nothing buffered for later

        await restarted.start()
        await eventually(lambda: _readiness_is(client, 200), timeout=15, what="/readyz 200 after the restart")
        first = await client.deliver(incoming("rtc_out"), "wh_out")
        again = await client.deliver(incoming("rtc_out"), "wh_out")
        assert (first[0], first[1]["duplicate"], again[0], again[1]["duplicate"]) == (200, False, 200, True)
        assert await eventually(lambda: _count_is(bus, 1), timeout=10, what="one event")
        assert not running.done()  # the bus blinked; the ingress did not exit
    finally:
        await ingress.shutdown()
        await running
        await restarted.stop()


async def _readiness_is(client: Client, status: int) -> bool:
    return await _readiness(client) == status


async def _count_is(bus: Bus, n: int) -> bool:
    try:
        return await stored(bus) == n
    except Exception:  # the test's own connection may still be reconnecting
        return False


def _stopped(pid: int) -> bool:
    """Whether the process is in the stopped state (``T`` in /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "T"


async def test_a_stalled_nats_gives_503_at_the_deadline_and_the_retry_is_stored_once(
    nats_server: NatsServer, http: aiohttp.ClientSession, bus: Bus
) -> None:
    """NATS frozen (connected, silent): 503 at the publish deadline; after it thaws the retry makes one event."""
    ingress = Ingress(settings_for(nats_server.url), publish_deadline=timedelta(seconds=0.5))
    await ingress.start()
    client = Client(http, ingress)
    pid = nats_server.pid  # SIGSTOP is the honest "slow server": connected, silent
    assert pid is not None
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            await eventually(lambda: _stopped(pid), what="nats-server stopped")  # the signal lands asynchronously
            status, answer, headers = await client.deliver(incoming("rtc_slow"), "wh_slow")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (status, answer["reason"], headers["Retry-After"]) == (503, "bus_unavailable", "2")
        # The stalled publish was already on the wire and may land now; the retry must not make a second event.
        status, _, _ = await client.deliver(incoming("rtc_slow"), "wh_slow")
        assert status == 200
        assert await stored(bus) == 1
    finally:
        await ingress.shutdown()


async def test_the_ingress_serves_before_nats_is_up_and_stores_once_it_is(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """Started before NATS: alive, not ready, 503 for webhooks; NATS arrives, start() returns, webhooks land."""
    server = NatsServer(tmp_path / "late-nats")
    ingress = Ingress(settings_for(server.url))
    starting = asyncio.create_task(ingress.start())
    try:
        await eventually(lambda: ingress.bound_port, timeout=10, what="HTTP bound")
        client = Client(http, ingress)
        assert (await client.get("/healthz"))[0] == 200
        assert await _readiness(client) == 503
        assert (await client.deliver(incoming("rtc_late"), "wh_late"))[0] == 503
        await server.start()
        await asyncio.wait_for(starting, 30)
        status, answer, _ = await client.deliver(incoming("rtc_late"), "wh_late")
        assert (status, answer["duplicate"]) == (200, False)
    finally:
        await ingress.shutdown()
        starting.cancel()
        await server.stop()


async def test_shutdown_while_waiting_for_nats_returns_promptly(tmp_path: Path) -> None:
    """An ingress still waiting for NATS stops cleanly when asked to."""
    ingress = Ingress(settings_for(NatsServer(tmp_path / "never").url))
    running = asyncio.create_task(ingress.run())
    await eventually(lambda: ingress.bound_port, timeout=10, what="HTTP bound")
    await ingress.shutdown()
    await asyncio.wait_for(running, 10)
