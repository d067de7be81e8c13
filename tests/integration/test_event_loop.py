"""The services' event loop (`lifecycle.Loop`): uvloop, connecting to IP addresses without a lookup."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from switchboard.shared.lifecycle import Loop
from tests.fixtures.http import serving


def _on_loop(main: Callable[[list[tuple[Any, ...]]], Awaitable[Any]]) -> tuple[Any, list[tuple[Any, ...]]]:
    """Run `main` on a fresh `Loop` whose ``getaddrinfo`` records its calls; (its result, the lookups)."""
    lookups: list[tuple[Any, ...]] = []

    async def wrapped() -> Any:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, Loop)
        lookup = loop.getaddrinfo

        async def recording(*args: Any, **kwargs: Any) -> Any:
            lookups.append(args)
            return await lookup(*args, **kwargs)

        loop.getaddrinfo = recording  # type: ignore[method-assign]
        return await main(lookups)

    with asyncio.Runner(loop_factory=Loop) as runner:
        return runner.run(wrapped()), lookups


async def _hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    return app


def _get(host: str) -> Callable[[list[tuple[Any, ...]]], Awaitable[str]]:
    """A `main` for `_on_loop`: GET / from a loopback server by `host`, its body."""

    async def main(_lookups: list[tuple[Any, ...]]) -> str:
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            serving(_app()) as port,
            aiohttp.ClientSession() as http,
            http.get(f"http://{host}:{port}/", timeout=timeout) as response,
        ):
            return await response.text()

    return main


def test_a_connection_to_an_ip_address_makes_no_lookup() -> None:
    """An HTTP request to 127.0.0.1 is answered, and the loop never called getaddrinfo for it."""
    text, lookups = _on_loop(_get("127.0.0.1"))
    assert text == "hello"
    assert lookups == []


def test_a_host_name_is_still_looked_up() -> None:
    """A request to ``localhost`` is answered too, its name resolved as before."""
    text, lookups = _on_loop(_get("localhost"))
    assert text == "hello"
    assert any(args[0] == "localhost" for args in lookups)


def test_a_refused_connection_is_an_error() -> None:
    """Connecting to a loopback port nobody listens on fails with the connector's error, not a hang."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the request: nothing listens there

    async def main(_lookups: list[tuple[Any, ...]]) -> None:
        async with aiohttp.ClientSession() as http:
            await http.get(f"http://127.0.0.1:{port}/", timeout=aiohttp.ClientTimeout(total=5))

    with pytest.raises(aiohttp.ClientConnectorError):
        _on_loop(main)
