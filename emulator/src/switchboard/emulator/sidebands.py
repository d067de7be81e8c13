"""What both surfaces' sessions share: the open sideband WebSockets of a call and the scripted caller's waits.

`SidebandHub` is the base of `realtime.RealtimeSession` and `live_session.LiveSession`. Every sideband
that attaches first gets its own greeting event (`hello`: ``session.created`` on Realtime,
``session.started`` on Live); after that, server events go to all open sidebands of the call (so a
worker that re-attaches for failover sees what happens next, not what it missed). Client events from
any sideband are recorded and dispatched to the subclass's handlers; anything invalid is answered with
an ``error`` event to the sender only (`error_event`, shaped per surface), never a crash.

The scripted caller (`caller.run_script`) waits on the hub's condition (`wait_until`, `wait_idle`);
subclasses call `notify` whenever something it may wait for changed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from aiohttp import web

from switchboard.emulator.calls import CallRecord, EndReason, SidebandConnection
from switchboard.emulator.errors import ApiError

log = structlog.get_logger(__name__)

SEND_TIMEOUT_S = 5.0
_SMALL_FRAME = 16 * 1024
CLOSE_TIMEOUT_S = 2.0

Handler = Callable[[dict[str, Any], "Sideband"], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]]


@dataclass
class Sideband:
    """One open sideband WebSocket of a call."""

    ws: web.WebSocketResponse
    transport: Any
    """The TCP transport, to abort the connection abnormally (no close frame: the client sees 1006)."""
    connection: SidebandConnection
    closing: bool = False


def _cannot_block(sideband: Sideband, text: str) -> bool:
    """True when sending `text` completes without waiting, so it needs no timeout.

    A send waits only while the transport is paused, i.e. holds more than its high-water mark (64 KiB)
    of unsent data. With nothing queued and a frame well under that mark it cannot pause, so the timer
    of a timeout (a sixth of the emulator's CPU with a thousand talking calls) is skipped.
    """
    transport = sideband.transport
    return transport is not None and transport.get_write_buffer_size() == 0 and len(text) < _SMALL_FRAME


class SidebandHub:
    """The sidebands of one accepted call and the model-side state the scripted caller waits on."""

    def __init__(self, *, record: CallRecord, pace: float, spawn: Spawn) -> None:
        self.record = record
        self.pace = pace
        self._spawn = spawn
        self._log = log.bind(call_id=record.call_id)
        self.sidebands: list[Sideband] = []
        self._send_lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self.responses_started = 0
        """How many times the model has started speaking (or calling a tool): the caller waits on it."""
        self.function_outputs: dict[str, str] = {}
        """Tool outputs received from the client, by function ``call_id``."""
        self._handlers: dict[str, Handler] = {}

    # What each surface says differently.

    def hello(self) -> dict[str, Any]:
        """The first event every attaching sideband gets."""
        raise NotImplementedError

    def error_event(self, exc: ApiError, client_event_id: str | None) -> dict[str, Any]:
        """The ``error`` server event answering a refused client event."""
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        """The model is speaking (the caller waits for it to finish before the next step)."""
        raise NotImplementedError

    async def finish(self, reason: EndReason, delay_s: float) -> None:
        """The call is over: after `delay_s`, close every sideband with 1000 (Live says why first)."""
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await self.close(1000)

    # Sending.

    async def sleep(self, seconds_at_pace_1: float) -> None:
        """A scripted delay; at pace 0 it still yields so other tasks interleave."""
        await asyncio.sleep(seconds_at_pace_1 * self.pace)

    async def _send(self, sideband: Sideband, text: str) -> bool:
        if sideband.closing or sideband.ws.closed:
            return False
        try:
            if _cannot_block(sideband, text):
                await sideband.ws.send_str(text)
            else:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await sideband.ws.send_str(text)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            self._log.info("sideband_send_failed", error=repr(exc), index=sideband.connection.index)
            return False
        return True

    async def attach(self, ws: web.WebSocketResponse, transport: Any, connection: SidebandConnection) -> Sideband:
        """Add a sideband: it gets its own `hello`, then every later event of the call."""
        sideband = Sideband(ws, transport, connection)
        async with self._send_lock:
            text = json.dumps(self.hello())
            sent_at = time.time()
            if await self._send(sideband, text):
                self.record.server_events.append(json.loads(text))
                self.record.server_event_times.append(sent_at)
            self.sidebands.append(sideband)
        return sideband

    def detach(self, sideband: Sideband) -> None:
        """Forget a sideband whose connection ended, recording how it closed."""
        if sideband in self.sidebands:
            self.sidebands.remove(sideband)
        conn = sideband.connection
        if conn.closed_at is None:
            conn.closed_at = time.time()
            conn.close_code = sideband.ws.close_code if sideband.ws.close_code is not None else 1006

    async def emit(self, event: dict[str, Any], *, only: Sideband | None = None) -> None:
        """Send a server event to every open sideband (or just `only`); record it if anyone got it.

        The event is serialised once, here: what is recorded is exactly what was sent, whatever happens
        to the dicts it was built from afterwards.
        """
        encoded = msgspec.json.encode(event)
        text = encoded.decode()
        async with self._send_lock:
            targets = [only] if only is not None else list(self.sidebands)
            delivered = False
            sent_at = time.time()
            for sideband in targets:
                delivered = await self._send(sideband, text) or delivered
            if delivered:
                self.record.server_events.append(msgspec.json.decode(encoded))
                self.record.server_event_times.append(sent_at)
            else:
                self._log.debug("server_event_unheard", type=event["type"])

    async def emit_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            await self.emit(event)

    async def close(self, code: int = 1000) -> None:
        """Close every sideband with `code` (1000 when the call is over; others to simulate failures)."""
        closing = list(self.sidebands)
        for sideband in closing:
            sideband.closing = True
            sideband.connection.closed_at = time.time()
            sideband.connection.close_code = code
        results = await asyncio.gather(
            *(asyncio.wait_for(s.ws.close(code=code), CLOSE_TIMEOUT_S + 1) for s in closing), return_exceptions=True
        )
        for sideband, result in zip(closing, results, strict=True):
            if isinstance(result, BaseException):
                sideband.transport.abort()
        self.sidebands.clear()

    def abort(self) -> int:
        """Drop every sideband abnormally (no close frame: clients see 1006); the call itself goes on."""
        dropped = list(self.sidebands)
        for sideband in dropped:
            sideband.closing = True
            sideband.connection.closed_at = time.time()
            sideband.connection.close_code = 1006
            if sideband.transport is not None:
                sideband.transport.abort()
        self.sidebands.clear()
        return len(dropped)

    # Waiting (for the scripted caller).

    async def notify(self) -> None:
        """Wake the caller's waits: something they may be waiting for changed."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `predicate()` holds (re-checked on every state change); False on timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self._changed:
                    await self._changed.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    async def wait_idle(self) -> None:
        """Wait until the model is not speaking."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self.busy)

    # Client events.

    async def on_client_text(self, text: str, sideband: Sideband) -> None:
        """Record and answer one client event; anything invalid becomes an ``error`` event."""
        self.record.client_event_times.append(time.time())
        try:
            event = json.loads(text)
        except ValueError:
            self.record.client_events.append(text)
            await self._error(sideband, ApiError(400, "The event is not valid JSON.", code="invalid_json"), None)
            return
        self.record.client_events.append(event)
        client_event_id = event.get("event_id") if isinstance(event, dict) else None
        try:
            if not isinstance(event, dict):
                raise ApiError(400, "Invalid event: expected a JSON object.", code="invalid_type")
            kind = event.get("type")
            if not isinstance(kind, str):
                raise ApiError(
                    400, "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
                )
            handler = self._handlers.get(kind)
            if handler is None:
                raise ApiError(
                    400,
                    f"Invalid value: '{kind}'. Supported values are: {', '.join(sorted(self._handlers))}.",
                    code="invalid_value",
                    param="type",
                )
            await handler(event, sideband)
        except ApiError as exc:
            await self._error(sideband, exc, client_event_id if isinstance(client_event_id, str) else None)

    async def _error(self, sideband: Sideband, exc: ApiError, client_event_id: str | None) -> None:
        self._log.info("client_event_refused", code=exc.code, param=exc.param)
        await self.emit(self.error_event(exc, client_event_id), only=sideband)
