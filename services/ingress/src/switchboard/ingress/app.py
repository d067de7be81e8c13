"""The ingress: the only door the internet knocks on, and nothing is lost through it.

``POST /webhooks/openai`` checks, in this order, and answers with the first thing wrong (nothing is
published unless every check passes; the log line names the ``webhook-id``)::

    415  not application/json in UTF-8, or a compressed body            (before reading the body)
    413  Content-Length over INGRESS_MAX_BODY_BYTES                    (before reading the body)
    413  a chunked body growing past the limit                         (reading stops there)
    408  the body did not arrive within 10 s
    400  signature or timestamp (shared/webhooks.py, the openai SDK's verdict)
    400  not an OpenAI event, bad webhook-id or call_id, no data       (validation.py)
    413  an event larger than the bus's max_payload
    503  NATS disconnected, or no acknowledgement within the publish deadline (with Retry-After)
    200  {"ok": true, "duplicate": …} once JetStream acknowledged the event

Durability: the event goes to ``calls.<call_id>.incoming`` (other types: ``….webhook``) with
``Nats-Msg-Id = webhook-id``, so every retry of one webhook — to any replica, before or after a
restart — is stored once while the stream's duplicate window (``SWITCHBOARD_DUPLICATE_WINDOW_S``) lasts.
While NATS is disconnected nothing is handed to nats-py (whose reconnect buffer would send it later,
unseen): the answer is an immediate 503. A publish that times out may still land; the sender's retry
then comes back ``duplicate: true``. Replicas share nothing but the stream, so any number can serve
one address.

``/healthz`` is liveness, ``/readyz`` readiness (connected, stream exists), ``/metrics`` Prometheus
(telemetry.py), ``/openapi.yaml`` and ``/openapi.json`` this surface's OpenAPI document.
The bus reconnects forever; a background task re-creates the stream if NATS comes back without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import timedelta
from pathlib import Path

import msgspec
import nats.errors
import nats.js.errors
import yaml
from aiohttp import web

from switchboard.ingress import validation
from switchboard.ingress.telemetry import IngressMetrics
from switchboard.shared import events, tracing
from switchboard.shared.bus import Bus
from switchboard.shared.config import Settings
from switchboard.shared.errors import BusUnavailable, ConfigError, SignatureError
from switchboard.shared.health import start_site
from switchboard.shared.lifecycle import cancel_and_wait
from switchboard.shared.logging import get_logger
from switchboard.shared.webhooks import Verifier

log = get_logger(__name__)

WEBHOOK_PATH = "/webhooks/openai"
OPENAPI_FILE = Path(__file__).with_name("openapi.yaml")
DEFAULT_PUBLISH_DEADLINE = timedelta(seconds=3)
BODY_READ_TIMEOUT = timedelta(seconds=10)
RETRY_AFTER_S = 2
_STREAM_CHECK_TIMEOUT_S = 1.0
_STREAM_CREATE_TIMEOUT_S = 5.0
_STREAM_WATCH_INTERVAL_S = 5.0
_BACKOFF_MAX_S = 5.0
_SHUTDOWN_TIMEOUT_S = 5.0
# After an early 413/415 the unread rest of a body is discarded for at most this long, then the
# connection is closed (closing at once could reset it before the client reads the answer).
_LINGER_S = 2.0
_LOGGED_ID_CHARS = 128  # the id of an unverified request is the sender's to choose: bound what we log

_STORED = b'{"ok":true,"duplicate":false}'
_DUPLICATE = b'{"ok":true,"duplicate":true}'


class Ingress:
    """The webhook HTTP service. `start()` binds and connects; `run()` serves until `shutdown()`."""

    name = "ingress"

    def __init__(
        self,
        settings: Settings,
        *,
        bus: Bus | None = None,
        port: int | None = None,
        publish_deadline: timedelta = DEFAULT_PUBLISH_DEADLINE,
        body_timeout: timedelta = BODY_READ_TIMEOUT,
        stream_watch_interval: timedelta = timedelta(seconds=_STREAM_WATCH_INTERVAL_S),
    ) -> None:
        self._settings = settings
        try:
            self._verifier = Verifier([s.reveal() for s in settings.require_webhook_secrets()])
        except ValueError as exc:
            raise ConfigError(f"OPENAI_WEBHOOK_SECRET: {exc}") from None
        self._bus = bus
        self._owns_bus = bus is None
        self._port = settings.ingress_port if port is None else port
        self._max_body = settings.ingress_max_body_bytes
        self._deadline_s = publish_deadline.total_seconds()
        self._read_timeout_s = body_timeout.total_seconds()
        self._watch_interval_s = stream_watch_interval.total_seconds()
        self._retry_after = {"Retry-After": str(RETRY_AFTER_S)}
        self._m = IngressMetrics()
        self._runner: web.AppRunner | None = None
        self._starting: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._check_stream = asyncio.Event()
        self._stopped = asyncio.Event()
        self.bound_port: int | None = None

    # --- POST /webhooks/openai -----------------------------------------------------------------------

    def _refuse(
        self,
        status: int,
        outcome: str,
        reason: str,
        message: str,
        webhook_id: str,
        *,
        close: bool = False,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        self._m.outcome[outcome].inc()
        log.warning("webhook_refused", webhook_id=webhook_id[:_LOGGED_ID_CHARS], status=status, reason=reason)
        response = web.json_response({"error": message, "reason": reason}, status=status, headers=headers)
        if close:
            # The rest of the body is never read: the connection ends after the answer (see _LINGER_S).
            response.force_close()
        return response

    async def _webhook(self, request: web.Request) -> web.Response:
        if not tracing.enabled():
            return await self._take(request)
        attributes = {"http.request.method": "POST", "http.route": WEBHOOK_PATH}
        with tracing.span(f"POST {WEBHOOK_PATH}", kind=tracing.SpanKind.SERVER, attributes=attributes) as span:
            response = await self._take(request)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
            return response

    async def _take(self, request: web.Request) -> web.Response:
        headers = request.headers
        webhook_id = headers.get("webhook-id", "")
        if request.content_type != "application/json" or (request.charset or "utf-8").lower() != "utf-8":
            return self._refuse(
                415, "unsupported_media_type", "content_type", "content-type must be application/json (UTF-8)",
                webhook_id, close=True,
            )  # fmt: skip
        if headers.get("Content-Encoding", "identity").lower() != "identity":
            return self._refuse(
                415, "unsupported_media_type", "content_encoding", "compressed bodies are not accepted",
                webhook_id, close=True,
            )  # fmt: skip
        if (request.content_length or 0) > self._max_body:
            return self._refuse(
                413, "too_large", "too_large", f"body larger than {self._max_body} bytes", webhook_id, close=True
            )
        try:
            # read() stops past client_max_size (= the limit) for chunked bodies. A body that came with
            # its headers (the usual case) is already here: no timer needed to wait for it.
            if request.content.is_eof():
                raw = await request.read()
            else:
                async with asyncio.timeout(self._read_timeout_s):
                    raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(
                413, "too_large", "too_large", f"body larger than {self._max_body} bytes", webhook_id, close=True
            )
        except TimeoutError:
            return self._refuse(
                408, "timeout", "body_timeout", "the body did not arrive in time", webhook_id, close=True
            )

        try:
            self._verifier.verify_values(
                headers.get("webhook-id"),
                headers.get("webhook-timestamp"),
                headers.get("webhook-signature"),
                raw,
                now=time.time(),
            )
        except SignatureError as exc:
            self._m.verification_failure[exc.reason].inc()
            return self._refuse(400, "bad_signature", exc.reason, f"signature verification failed: {exc}", webhook_id)
        try:
            validation.check_webhook_id(webhook_id)
            webhook = validation.parse(raw)
        except validation.InvalidWebhook as exc:
            self._m.invalid_event[exc.reason].inc()
            return self._refuse(400, "invalid", exc.reason, str(exc), webhook_id)

        bus = self._bus
        if bus is None or not bus.connected:
            # Not handed to nats-py at all: its reconnect buffer would publish it later, unseen.
            return self._refuse(
                503, "unavailable", "bus_unavailable", "event bus unavailable", webhook_id, headers=self._retry_after
            )
        received_at = events.utc_now()
        event = webhook.event
        event["webhook_id"] = webhook_id
        event["received_at"] = received_at
        envelope = bus.event(webhook.call_id, webhook.kind, event, event_id=webhook_id)  # the one way to make one
        started = time.perf_counter()
        publishing: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if tracing.enabled():
            publishing = tracing.producer_span(webhook.call_id, webhook.kind, webhook_id)
        try:
            with publishing:
                if tracing.enabled():  # the call's first event names its trace (CloudEvents distributed tracing)
                    envelope = msgspec.structs.replace(envelope, traceparent=tracing.traceparent())
                # The outer deadline also bounds what nats-py does before its own request timeout starts.
                async with asyncio.timeout(self._deadline_s):
                    result = await bus.publish(envelope, msg_id=webhook_id, timeout_s=self._deadline_s)
        except (BusUnavailable, TimeoutError) as exc:
            self._m.publish_seconds.observe(time.perf_counter() - started)
            cause = exc.__cause__
            if isinstance(cause, nats.errors.MaxPayloadError):
                return self._refuse(
                    413, "too_large", "too_large_for_bus", "the event is larger than the bus accepts", webhook_id
                )
            if isinstance(cause, nats.errors.NoRespondersError):
                self._check_stream.set()  # the stream may be gone: let the keeper look now
            return self._refuse(
                503, "unavailable", "bus_unavailable", "event bus did not acknowledge in time", webhook_id,
                headers=self._retry_after,
            )  # fmt: skip
        self._m.publish_seconds.observe(time.perf_counter() - started)
        if result.duplicate:
            self._m.outcome["duplicate"].inc()
            self._m.duplicates.inc()
        else:
            self._m.outcome["stored"].inc()
        # Debug, not info: the stored event is the record (`switchboard tail`), and at thousands of
        # webhooks a second a rendered line each would be one of the handler's larger costs.
        log.debug(
            "webhook_stored",
            webhook_id=webhook_id,
            call_id=webhook.call_id,
            type=webhook.type,
            seq=result.seq,
            duplicate=result.duplicate,
        )
        return web.Response(body=_DUPLICATE if result.duplicate else _STORED, content_type="application/json")

    # --- health --------------------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = await self._not_ready()
        if reason is None:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": reason}, status=503)

    async def not_ready(self) -> str | None:
        """Why the ingress cannot store webhooks right now (None when it can): what /readyz reports."""
        return await self._not_ready()

    async def _not_ready(self) -> str | None:
        """Why the ingress cannot store webhooks now, or None when it can."""
        if self._stopped.is_set():
            return "shutting down"
        bus = self._bus
        if bus is None:
            return "connecting to NATS"
        if not bus.connected:
            return "NATS disconnected"
        state = await self._stream_state(bus)
        if state == "missing":
            self._check_stream.set()
            return f"stream {events.STREAM} does not exist"
        if state == "unknown":
            return f"stream {events.STREAM} did not answer"
        return None

    async def _stream_state(self, bus: Bus) -> str:
        """'ok', 'missing' or 'unknown' (no answer in time)."""
        try:
            await asyncio.wait_for(bus.js.stream_info(events.STREAM), _STREAM_CHECK_TIMEOUT_S)
        except nats.js.errors.NotFoundError:
            return "missing"
        except (nats.errors.Error, TimeoutError, OSError):
            return "unknown"
        return "ok"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body)
        openapi_yaml = OPENAPI_FILE.read_bytes()
        openapi_json = json.dumps(yaml.safe_load(openapi_yaml)).encode()

        async def openapi_as_yaml(request: web.Request) -> web.Response:
            return web.Response(body=openapi_yaml, content_type="application/yaml")

        async def openapi_as_json(request: web.Request) -> web.Response:
            return web.Response(body=openapi_json, content_type="application/json")

        app.router.add_post(WEBHOOK_PATH, self._webhook)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._m.metrics.handle)
        app.router.add_get("/openapi.yaml", openapi_as_yaml)
        app.router.add_get("/openapi.json", openapi_as_json)
        return app

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the HTTP port, then connect the bus and ensure the stream; returns once all are up.

        HTTP answers from the first moment (503 for webhooks until the bus is up). If NATS is not there
        yet this waits, retrying with backoff, until it is or `shutdown()` is called.
        """
        if self._runner is not None:
            return
        self._runner = web.AppRunner(
            self.app(), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S, lingering_time=_LINGER_S
        )
        await self._runner.setup()
        try:
            self.bound_port = await start_site(
                self._runner, self._settings.ingress_host, self._port, variable="INGRESS_PORT"
            )
        except ConfigError:
            self._runner = None
            raise
        log.info("ingress_listening", port=self.bound_port, path=WEBHOOK_PATH, max_body_bytes=self._max_body)
        self._starting = asyncio.create_task(self._connect(), name="ingress-connect")
        try:
            await self._starting
        except asyncio.CancelledError:
            if not self._stopped.is_set():
                raise  # our caller was cancelled, not us stopped
            return
        self._keeper = asyncio.create_task(self._keep_stream(), name="ingress-stream-keeper")

    async def _connect(self) -> None:
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "ingress")
        delay = 0.1
        while True:
            try:
                await asyncio.wait_for(self._bus.ensure_stream(), _STREAM_CREATE_TIMEOUT_S)
                return
            except ConfigError:  # NATS without JetStream: waiting will not help
                raise
            except Exception as exc:  # NATS blinked, or JetStream is not ready yet: never give up
                log.warning("stream_not_ready", error=str(exc) or type(exc).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _keep_stream(self) -> None:
        """Owned background task: re-create the stream when NATS comes back without it."""
        while not self._stopped.is_set():
            bus = self._bus
            if bus is not None and bus.connected and await self._stream_state(bus) == "missing":
                try:
                    await asyncio.wait_for(bus.ensure_stream(), _STREAM_CREATE_TIMEOUT_S)
                    log.warning("stream_recreated", stream=events.STREAM)
                except Exception as exc:  # retried on the next round; the ingress answers 503 meanwhile
                    log.warning("stream_not_ready", error=str(exc) or type(exc).__name__)
            self._check_stream.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_stream.wait(), self._watch_interval_s)

    async def run(self) -> None:
        if self._runner is None:
            await self.start()
        stopped = asyncio.ensure_future(self._stopped.wait())
        starting = self._starting
        try:
            await asyncio.wait(
                {stopped} | ({starting} if starting is not None else set()), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
        if starting is not None and starting.done() and not starting.cancelled() and starting.exception() is not None:
            raise starting.exception()  # type: ignore[misc]
        await self._stopped.wait()

    async def shutdown(self, grace: timedelta = timedelta(seconds=5)) -> None:
        """Stop taking webhooks (readiness goes 503 at once), let in-flight ones finish, close the bus."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for task in (self._starting, self._keeper):
            if task is not None:
                await cancel_and_wait(task)
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
        if self._owns_bus and self._bus is not None:
            await self._bus.close()
