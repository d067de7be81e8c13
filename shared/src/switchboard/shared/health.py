"""The small HTTP side door of the controller and session workers: liveness, readiness and metrics.

``GET /healthz`` answers 200 while the process runs, ``GET /readyz`` 200 only while the service says
it is ready (connected, taking work; false while draining), ``GET /metrics`` the service's Prometheus
metrics. It listens on ``HEALTH_PORT`` (default 8081; 0 turns it off, as `switchboard up` does for the
services it runs in one process). The ingress serves the same three paths on its own port.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from switchboard.shared.logging import get_logger
from switchboard.shared.metrics import Metrics

log = get_logger(__name__)


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
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("health_listening", service=self._metrics.service, port=self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
