"""The console service: one bus connection, one `Hub` reading the log, one aiohttp site on CONSOLE_PORT.

`start()` connects, loads the projections and binds the port (a taken port is one `ConfigError`);
`run()` serves until `shutdown()`, then closes every open stream, the site and the bus.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web

from switchboard.console.hub import Hub
from switchboard.console.web import ConsoleApp, close_streams
from switchboard.shared import events
from switchboard.shared.bus import Bus, connected
from switchboard.shared.config import Settings
from switchboard.shared.errors import BusUnavailable, ConfigError
from switchboard.shared.health import start_site
from switchboard.shared.logging import get_logger

log = get_logger(__name__)


class Console:
    """The operator console (see the package docstring)."""

    name = "console"

    def __init__(self, settings: Settings, *, bus: Bus | None = None) -> None:
        if settings.console_auth == "token" and settings.console_token is None:
            raise ConfigError(
                "SWITCHBOARD_CONSOLE_TOKEN is required to sign in to the console (or set "
                "SWITCHBOARD_CONSOLE_AUTH=proxy behind oauth2-proxy)"
            )
        self._settings = settings
        self._bus = bus
        self._owns_bus = bus is None
        self._stop = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._app: ConsoleApp | None = None
        self.hub: Hub | None = None
        self.bound_port: int | None = None
        self.ready = False

    @property
    def url(self) -> str:
        host = self._settings.console_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.bound_port}/"

    async def start(self) -> None:
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "console")
        await self._wait_for_stream()
        self.hub = Hub(self._bus, ttl_s=self._settings.stream_max_age_s)
        await self.hub.start()
        token = self._settings.console_token.reveal() if self._settings.console_token is not None else None
        self._app = ConsoleApp(
            self.hub, self._bus, mode=self._settings.console_auth, token=token,
            ready=lambda: self.ready and connected(self._bus), trace_url=self._settings.trace_url,
        )  # fmt: skip
        self._runner = web.AppRunner(self._app.build(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        self.bound_port = await start_site(
            self._runner, self._settings.console_host, self._settings.console_port, variable="CONSOLE_PORT"
        )
        log.info("console_listening", port=self.bound_port, auth=self._settings.console_auth)

    async def _wait_for_stream(self, timeout_s: float = 30.0) -> None:
        """The console only reads (on Kubernetes as the read-only apps user): it waits for the ingress to
        create the CALLS stream instead of creating it."""
        assert self._bus is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not await self._bus.stream_exists():
            if loop.time() > deadline:
                raise BusUnavailable(
                    f"no {events.STREAM} stream after {timeout_s:g} s: start the ingress, which creates it"
                )
            await asyncio.sleep(0.5)

    async def run(self) -> None:
        try:
            if self._runner is None:
                await self.start()
            assert self.hub is not None
            await self.hub.ready.wait()
            self.hub.check()
            self.ready = True
            stop = asyncio.create_task(self._stop.wait())
            try:
                while not stop.done():
                    await asyncio.wait([stop], timeout=1.0)
                    self.hub.check()  # the log reader stopped: so does the service
            finally:
                stop.cancel()
        finally:
            self.ready = False
            await self._close()

    async def shutdown(self, grace: timedelta = timedelta(seconds=5)) -> None:
        self.ready = False
        self._stop.set()

    async def _close(self) -> None:
        if self._app is not None:
            await close_streams(self._app)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._owns_bus and self._bus is not None:
            await self._bus.close()
