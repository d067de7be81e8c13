"""The ingress: the only door the internet knocks on.

``POST /webhooks/openai`` verifies the Standard Webhooks signature, validates the event, and stores it
on ``calls.<call_id>.incoming`` with ``Nats-Msg-Id = webhook-id``; it answers 200 only after JetStream
acknowledged the publish, 400 for a bad signature or body (nothing published), 503 with Retry-After
when the bus cannot take it (OpenAI retries). ``/healthz`` is liveness, ``/readyz`` readiness.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import msgspec
from aiohttp import web

from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.config import Settings
from switchboard.shared.errors import BusUnavailable, InvalidEvent, SignatureError
from switchboard.shared.logging import get_logger
from switchboard.shared.webhooks import verify

log = get_logger(__name__)

WEBHOOK_PATH = "/webhooks/openai"
INCOMING_TYPE = "realtime.call.incoming"
MAX_BODY_BYTES = 1024 * 1024
PUBLISH_DEADLINE_S = 3.0
RETRY_AFTER_S = 2
_UNROUTED = "_unrouted"

_webhook_decoder = msgspec.json.Decoder(events.IncomingWebhook)


def _problem(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def route(event: events.IncomingWebhook) -> tuple[str, str]:
    """(call_id, kind) a verified webhook is stored under; raises `InvalidEvent`."""
    call_id = event.data.get("call_id")
    safe_id = call_id if isinstance(call_id, str) and events.is_safe_call_id(call_id) else None
    if event.type == INCOMING_TYPE:
        if call_id is None:
            raise InvalidEvent("data.call_id is required for realtime.call.incoming")
        if safe_id is None:
            raise InvalidEvent("data.call_id must match ^[A-Za-z0-9_-]{1,128}$")
        return safe_id, "incoming"
    # Validly signed events of other types are kept too, under the call they name (if it is safe).
    return safe_id or _UNROUTED, "webhook"


class Ingress:
    """The webhook HTTP service. `run()` serves until `shutdown()`."""

    name = "ingress"

    def __init__(self, settings: Settings, *, bus: Bus | None = None, port: int | None = None) -> None:
        self._settings = settings
        self._secrets = tuple(s.reveal() for s in settings.require_webhook_secrets())
        self._bus = bus
        self._owns_bus = bus is None
        self._port = settings.ingress_port if port is None else port
        self._runner: web.AppRunner | None = None
        self._stopped = asyncio.Event()
        self.bound_port: int | None = None

    # --- HTTP handlers -------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        webhook_id = request.headers.get("webhook-id", "")
        if request.content_type != "application/json":
            return _problem(415, "content-type must be application/json")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            raw = await request.read()  # aiohttp stops reading past client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _problem(400, "body is not UTF-8")
        try:
            verify(request.headers, body, self._secrets, now=time.time())
        except SignatureError as exc:
            log.warning("webhook_refused", webhook_id=webhook_id, reason=exc.reason)
            return _problem(400, f"signature verification failed: {exc}")
        try:
            event = _webhook_decoder.decode(raw)
            call_id, kind = route(event)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("webhook_invalid", webhook_id=webhook_id, error=str(exc))
            return _problem(400, f"not an OpenAI webhook event: {exc}")
        except InvalidEvent as exc:
            log.warning("webhook_invalid", webhook_id=webhook_id, error=str(exc))
            return _problem(400, str(exc))

        data: dict[str, Any] = msgspec.json.decode(raw)
        data["webhook_id"] = webhook_id
        data["received_at"] = events.utc_now()
        bus = self._bus
        if bus is None or not bus.connected:
            return _problem(503, "event bus unavailable", **{"Retry-After": str(RETRY_AFTER_S)})
        try:
            result = await bus.publish(
                bus.event(call_id, kind, data, event_id=webhook_id),
                msg_id=webhook_id,
                timeout_s=PUBLISH_DEADLINE_S,
            )
        except BusUnavailable as exc:
            log.warning("webhook_not_stored", webhook_id=webhook_id, call_id=call_id, error=str(exc))
            return _problem(503, "event bus unavailable", **{"Retry-After": str(RETRY_AFTER_S)})
        log.info(
            "webhook_stored", webhook_id=webhook_id, call_id=call_id, type=event.type, duplicate=result.duplicate
        )
        return web.json_response({"ok": True, "duplicate": result.duplicate})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready = self._bus is not None and self._bus.connected and self._bus.stream_ready
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(WEBHOOK_PATH, self._webhook)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the HTTP port and connect the bus; returns once both are up."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.ingress_host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("ingress_listening", port=self.bound_port, path=WEBHOOK_PATH)
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "ingress")
        await self._bus.ensure_stream()

    async def run(self) -> None:
        if self._runner is None:
            await self.start()
        await self._stopped.wait()

    async def shutdown(self, grace: timedelta = timedelta(seconds=5)) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
        if self._owns_bus and self._bus is not None:
            await self._bus.close()
