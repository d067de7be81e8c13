"""Behind oauth2-proxy (SWITCHBOARD_CONSOLE_AUTH=proxy): the proxy's X-Auth-Request-Email is the operator,
and a request without it is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest

from switchboard.cli.local import LocalSystem
from switchboard.console.service import Console
from switchboard.shared.bus import Bus
from tests.console.conftest import emulator
from tests.e2e.conftest import attached_call, call_events
from tests.waiting import eventually

EMAIL = "bob@example.com"


@pytest.fixture
async def proxied(system: LocalSystem) -> AsyncIterator[str]:
    """A second console on the same log, configured to sit behind the proxy; its base URL."""
    settings = msgspec.structs.replace(system.settings, console_auth="proxy", console_token=None, console_port=0)
    console = Console(settings)
    await console.start()
    task = asyncio.create_task(console.run())
    try:
        await eventually(lambda: console.ready, what="the proxied console is ready")
        yield console_url_of(console)
    finally:
        await console.shutdown()
        await asyncio.wait_for(task, 15)


def console_url_of(console: Console) -> str:
    return console.url.rstrip("/")


async def test_the_proxys_header_names_the_operator_in_the_command_event(
    system: LocalSystem, proxied: str, anonymous: aiohttp.ClientSession, bus: Bus
) -> None:
    """With X-Auth-Request-Email the pages open and Hang up records that address as the operator."""
    call_id = await attached_call(emulator(system))
    who = {"X-Auth-Request-Email": EMAIL}
    async with anonymous.get(proxied + "/", headers=who) as r:
        assert r.status == 200
        assert EMAIL in await r.text()
    async with anonymous.post(f"{proxied}/calls/{call_id}/hangup", headers={**who, "Origin": proxied}) as r:
        assert r.status == 200
    logged = await call_events(bus, call_id)
    assert [e.data["operator"] for e in logged if e.kind == "command.hangup"] == [EMAIL]


async def test_without_the_proxys_header_nothing_is_shown_and_the_token_does_not_help(
    system: LocalSystem, proxied: str, anonymous: aiohttp.ClientSession
) -> None:
    """No X-Auth-Request-Email: 401 for pages and streams, and `?token=` is no way in."""
    async with anonymous.get(proxied + "/") as r:
        assert r.status == 401
    async with anonymous.get(proxied + "/events?after=0") as r:
        assert r.status == 401
    async with anonymous.get(proxied + "/?token=anything", allow_redirects=False) as r:
        assert r.status == 401
