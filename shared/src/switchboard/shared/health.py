"""The small HTTP side door of the controller and session workers: liveness, readiness and metrics.

``GET /healthz`` answers 200 while the process runs, ``GET /readyz`` 200 only while the service says
it is ready (connected, taking work; false while draining), ``GET /metrics`` the service's Prometheus
metrics. It listens on ``HEALTH_PORT``: unset, on any free port (logged at start, so several services
run side by side on one host); ``off`` (or 0) turns it off, as `switchboard up` does for the services it
runs in one process; the manifests set 8081. The ingress serves the same three paths on its own port.

`start_site` binds any of the services' HTTP sites: a port already taken is one `ConfigError` naming the
variable to change, not a traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from aiohttp import web

from switchboard.shared.errors import ConfigError
from switchboard.shared.logging import get_logger
from switchboard.shared.metrics import Metrics

log = get_logger(__name__)


async def start_site(runner: web.AppRunner, host: str, port: int, *, variable: str) -> int:
    """Listen on `host`:`port` (0: any free port) and return the port bound; `ConfigError` if it is taken."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror or exc})"
        raise ConfigError(f"port {port} ({variable}) {why}: set {variable} to a free port") from None
    addresses = runner.addresses
    return int(addresses[0][1]) if addresses else port


class HealthServer:
    def __init__(self, metrics: Metrics, ready: Callable[[], bool], *, port: int, host: str = "0.0.0.0") -> None:
        self._metrics = metrics
        self._ready = ready
        self._port = port
        self._host = host
        self._runner: web.AppRunner | None = None
        self.bound_port: int | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = self._ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            self.bound_port = await start_site(self._runner, self._host, self._port, variable="HEALTH_PORT")
        except ConfigError:
            self._runner = None
            raise
        log.info("health_listening", service=self._metrics.service, port=self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
