"""The console's fixtures: the whole system (the console included) on a real nats-server, and a signed-in
HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer
from switchboard.emulator.server import Emulator
from switchboard.shared.config import Secret
from tests.fixtures.system import running

TOKEN = "console-test-token"


POLICY: str | None = None
"""The routing policy's YAML the console's system runs (None: the built-in); a test module may set its own
by defining ``POLICY`` and a ``policy`` fixture returning it."""


@pytest.fixture
def policy() -> str | None:
    """The policy the system runs: the built-in."""
    return POLICY


@pytest.fixture
def trace_url() -> str | None:
    """The console's trace link template: none."""
    return None


@pytest.fixture
async def system(
    nats_server: NatsServer, tmp_path: Path, policy: str | None, trace_url: str | None
) -> AsyncIterator[LocalSystem]:
    """Everything running in this process, the console on a free port signed in to with `TOKEN`."""
    async with running(nats_server, tmp_path, workers=1, policy=policy, console_port=0,
                       console_token=Secret(TOKEN), trace_url=trace_url) as local:  # fmt: skip
        yield local


def console_url(system: LocalSystem) -> str:
    """The console's base URL, without the token (``http://127.0.0.1:PORT``)."""
    assert system.console is not None
    return system.console.url.rstrip("/")


def emulator(system: LocalSystem) -> Emulator:
    assert system.emulator is not None
    return system.emulator


@pytest.fixture
async def anonymous() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client that has not signed in (it keeps cookies, even a loopback address's)."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout) as session:
        yield session


@pytest.fixture
async def operator(system: LocalSystem, anonymous: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """An HTTP client signed in as ``alice`` by the token URL."""
    async with anonymous.get(f"{console_url(system)}/?token={TOKEN}&name=alice", allow_redirects=False) as r:
        assert r.status == 303
    return anonymous
