"""The OpenAI SIP emulator: one aiohttp server on loopback standing in for OpenAI, on both SIP surfaces.

It places simulated calls (a signed ``realtime.call.incoming`` or ``live.transport.incoming`` webhook,
retried), answers the REST calls Switchboard makes (``/v1/realtime/calls/{id}/…`` and
``/v1/live/sessions/{id}/accept|reject|refer|hangup``), serves the sidebands (``/v1/realtime?call_id=…``,
``/v1/live/sessions/{id}/attach``) with a scripted caller and a canned model, and exposes a control API
under ``/_emulator`` for other processes.

A call rung on both surfaces (``surface="both"``) is one SIP call with two ids and two records, twins
sharing the SIP headers (one ``Call-ID``). The first successful accept on either selects its surface:
the twin then ends ``answered_elsewhere`` and its accept, reject and refer answer 409
``call_already_handled`` (the emulator's choice; the SDK leaves it open). A reject, refer or the caller
giving up while both ring ends both. Tests drive it in-process through `Emulator`; ``switchboard emulator``
runs it through `serve`.

Lifecycle: `start()` binds and starts serving; `shutdown()` (idempotent) closes every sideband, cancels
every task the emulator started (per-call tasks live in the call's `TaskSet`, the rest in the
emulator's) and closes the listening socket and the webhook client.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp
import structlog
from aiohttp import web

from switchboard.emulator.caller import run_script
from switchboard.emulator.calls import (
    CallRecord,
    CallState,
    EndReason,
    SipHeader,
    SipHeaderLike,
    Surface,
    sip_header,
)
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.control_api import ControlApi
from switchboard.emulator.errors import EmulatorError
from switchboard.emulator.faults import Faults
from switchboard.emulator.ids import new_call_id, new_session_id
from switchboard.emulator.live import LiveCall
from switchboard.emulator.live_session import LiveSession
from switchboard.emulator.openai_api import OpenAIApi
from switchboard.emulator.realtime import RealtimeSession
from switchboard.emulator.scripts import Script, resolve
from switchboard.emulator.tasks import TaskSet
from switchboard.emulator.webhook_sender import WebhookSender, invite_headers

log = structlog.get_logger(__name__)

PlaceSurface = Literal["realtime", "live", "both"]

SHUTDOWN_TIMEOUT_S = 3.0
SIDEBAND_WAIT_S = 10.0
"""How long (at pace 1) the caller of an answered call waits for a sideband before talking anyway."""
MIN_SIDEBAND_WAIT_S = 5.0
"""The floor of that wait, so that at pace 0 a worker still has time to claim the call and attach."""


class Emulator:
    """An in-process OpenAI stand-in (see the module docstring)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.calls: dict[str, CallRecord] = {}
        self.faults = Faults()
        self._live: dict[str, LiveCall] = {}
        self._twins: dict[str, str] = {}
        self._tasks = TaskSet("emulator")
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._sender: WebhookSender | None = None
        self._port: int | None = None
        self._shutdown: asyncio.Task[None] | None = None

    # Lifecycle.

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmulatorError("the emulator is not started")
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL (the control API lives under ``/_emulator``)."""
        host = "127.0.0.1" if self.config.host in ("", "0.0.0.0", "::") else self.config.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to use as ``OPENAI_BASE_URL`` (the sideband is at ``ws://…/v1/realtime``)."""
        return f"{self.url}/v1"

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[OpenAIApi.json_errors])
        OpenAIApi(self).register(app)
        ControlApi(self).register(app)
        return app

    async def start(self) -> None:
        """Bind (port 0 picks a free one) and start serving."""
        if self._runner is not None:
            raise EmulatorError("the emulator is already started")
        sock = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._runner = web.AppRunner(
            self._app(), access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        self._http = aiohttp.ClientSession()
        self._sender = WebhookSender(self._http, self.config, self.faults)
        log.info("emulator_started", url=self.url, pace=self.config.pace)

    async def shutdown(self) -> None:
        """Close sidebands, cancel every task, stop serving. Safe to call more than once."""
        if self._shutdown is None:
            self._shutdown = asyncio.get_running_loop().create_task(self._do_shutdown())
        await asyncio.shield(self._shutdown)

    async def _do_shutdown(self) -> None:
        for call in self._live.values():
            call.tasks.cancel()
            if call.session is not None:
                await call.session.close(1001)
        for call in self._live.values():
            await call.tasks.cancel_and_wait(SHUTDOWN_TIMEOUT_S)
        await self._tasks.cancel_and_wait(SHUTDOWN_TIMEOUT_S)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()
        log.info("emulator_stopped")

    # Calls.

    def place_call(
        self,
        from_number: str,
        to_number: str,
        *,
        sip_headers: Sequence[SipHeaderLike] | None = None,
        script: str | Script | None = None,
        surface: PlaceSurface = "realtime",
    ) -> str:
        """Start a call ringing: send its signed webhook (with retries) and start the ring timer.

        Extra `sip_headers` follow From, To and Call-ID in the webhook. `surface` says which webhook:
        ``realtime`` (id ``rtc_<hex32>``), ``live`` (``live_<hex32>``) or ``both`` (one SIP call, two
        webhooks with their own ids and the same headers; returns the Realtime id, `twin` gives the
        other). Raises `EmulatorError` when no webhook_url is configured, the emulator is not running, or
        the script, a header or the surface is invalid.
        """
        if self.config.webhook_url is None:
            raise EmulatorError("cannot place a call: the emulator has no webhook_url configured")
        if self._sender is None or self._shutdown is not None:
            raise EmulatorError("cannot place a call: the emulator is not running")
        if not from_number or not to_number:
            raise EmulatorError("from_number and to_number are required")
        if surface not in ("realtime", "live", "both"):
            raise EmulatorError(f"unknown surface {surface!r}; expected 'realtime', 'live' or 'both'")
        try:
            resolved = resolve(script)
        except KeyError as exc:
            raise EmulatorError(str(exc.args[0])) from None
        try:
            extras = [sip_header(h) for h in sip_headers or ()]
        except ValueError as exc:
            raise EmulatorError(str(exc)) from None
        headers = [SipHeader(n, v) for n, v in invite_headers(from_number, to_number)] + extras
        surfaces: list[Surface] = ["realtime", "live"] if surface == "both" else [surface]
        ids = [new_call_id() if s == "realtime" else new_session_id() for s in surfaces]
        for index, (call_surface, call_id) in enumerate(zip(surfaces, ids, strict=True)):
            twin_id = ids[1 - index] if len(ids) == 2 else None
            record = CallRecord(
                call_id=call_id,
                from_number=from_number,
                to_number=to_number,
                sip_headers=list(headers),
                script=resolved.name,
                surface=call_surface,
                twin_id=twin_id,
            )
            if twin_id is not None:
                self._twins[call_id] = twin_id
            self._ring(LiveCall(record=record, script=resolved, tasks=TaskSet(call_id)))
        log.info(
            "call_placed",
            call_id=ids[0],
            twin_id=ids[1] if len(ids) == 2 else None,
            to=to_number,
            script=resolved.name,
            surface=surface,
        )
        return ids[0]

    def _ring(self, call: LiveCall) -> None:
        record = call.record
        assert self._sender is not None
        self.calls[record.call_id] = record
        self._live[record.call_id] = call
        sender = self._sender
        call.ringing_tasks = [
            call.tasks.spawn(sender.deliver(record, lambda: record.state == "ringing"), "webhook"),
            call.tasks.spawn(self._ring_timer(call), "ring_timer"),
        ]

    def twin(self, call_id: str) -> str | None:
        """The other surface's id of a call rung on both surfaces (None otherwise)."""
        return self._twins.get(call_id)

    async def _ring_timer(self, call: LiveCall) -> None:
        await asyncio.sleep(self.config.ring_timeout_s)
        if call.record.state == "ringing":
            log.info("call_abandoned", call_id=call.record.call_id, ring_timeout_s=self.config.ring_timeout_s)
            self.end_call(call, "ended", "caller_abandoned")

    def live(self, call_id: str) -> LiveCall | None:
        """The live side of a call, if the emulator knows it."""
        return self._live.get(call_id)

    async def wait_ended(self, call_id: str, timeout_s: float) -> CallRecord:
        """Wait until the call is over (rejected, referred or ended); `TimeoutError` after `timeout_s`."""
        call = self._live.get(call_id)
        if call is None:
            raise EmulatorError(f"unknown call {call_id!r}")
        async with asyncio.timeout(timeout_s):
            await call.ended.wait()
        return call.record

    def answer(self, call: LiveCall, body: dict[str, Any], session: dict[str, Any]) -> None:
        """The call was accepted with `body`: it stops ringing and gets its model session on its surface.

        `session` is the Realtime session or the Live `SessionResource` it starts with. A twin still
        ringing on the other surface ends ``answered_elsewhere``.
        """
        record = call.record
        record.state = "accepted"
        record.accept_body = body
        record.answered_at = time.time()
        for task in call.ringing_tasks:
            task.cancel()
        if record.surface == "live":
            call.session = LiveSession(
                record=record,
                resource=session,
                pace=self.config.pace,
                spawn=call.tasks.spawn,
                close_requested=lambda: self._close_requested(call),
            )
        else:
            call.session = RealtimeSession(
                record=record, session=session, pace=self.config.pace, spawn=call.tasks.spawn
            )
        call.tasks.spawn(self._caller_without_sideband(call), "attach_watchdog")
        log.info("call_accepted", call_id=record.call_id, surface=record.surface, model=session.get("model"))
        if (twin := self._twin_call(call)) is not None:
            self.end_call(twin, "ended", "answered_elsewhere")

    def _twin_call(self, call: LiveCall) -> LiveCall | None:
        twin_id = self._twins.get(call.record.call_id)
        return self._live.get(twin_id) if twin_id is not None else None

    def _close_requested(self, call: LiveCall) -> None:
        # A Live client's session.close ends the call as a REST hangup does.
        self.end_call(call, "ended", "hangup")

    async def _caller_without_sideband(self, call: LiveCall) -> None:
        # An answered call goes on whether or not anyone watches it: if no sideband attaches in time, the
        # caller starts talking anyway (and eventually hangs up), so an unattended call never lingers.
        await asyncio.sleep(max(SIDEBAND_WAIT_S * self.config.pace, MIN_SIDEBAND_WAIT_S))
        if not call.caller_started:
            log.info("caller_started_unattended", call_id=call.record.call_id)
            self.sideband_attached(call)

    def sideband_attached(self, call: LiveCall) -> None:
        """Start the scripted caller the first time a sideband attaches (or when none came in time)."""
        if call.caller_started or call.session is None or call.record.ended:
            return
        call.caller_started = True
        model = call.session

        async def hang_up() -> None:
            self.end_call(call, "ended", "caller_hangup")

        call.tasks.spawn(run_script(call.script, model, hang_up), "caller")

    def end_call(self, call: LiveCall, state: CallState, reason: EndReason, *, close_delay_s: float = 0.0) -> bool:
        """Move a call to a terminal state and tear it down; False if it was already over.

        Its tasks are cancelled (except the one calling, which may be the caller hanging up) and its
        sidebands closed with 1000 in the background (after `close_delay_s` at pace 1, for a refer; a
        Live sideband gets ``session.closed`` first), so a REST answer never waits on a client's close
        handshake. A twin still ringing on the other surface ends the same way (one SIP call).
        """
        record = call.record
        if record.ended:
            return False
        record.state = state
        record.end_reason = reason
        record.ended_at = time.time()
        call.tasks.cancel()
        call.ended.set()
        log.info("call_ended", call_id=record.call_id, state=state, end_reason=reason)
        if call.session is not None:
            self._tasks.spawn(call.session.finish(reason, close_delay_s * self.config.pace), "teardown")
        twin = self._twin_call(call)
        if twin is not None and twin.record.state == "ringing" and reason != "answered_elsewhere":
            twin.record.status_code = record.status_code
            twin.record.target_uri = record.target_uri
            self.end_call(twin, state, reason)
        return True

    async def caller_hangup(self, call_id: str) -> CallRecord:
        """The caller hangs up now (ringing or answered)."""
        call = self._live.get(call_id)
        if call is None:
            raise EmulatorError(f"unknown call {call_id!r}")
        self.end_call(call, "ended", "caller_hangup")
        return call.record

    def drop_sideband(self, call_id: str, code: int = 1006) -> int:
        """Drop the call's live sideband connection(s) without ending the call; returns how many.

        1006 aborts the TCP connection (no close frame, as when a network path dies); any other code
        closes with that code (e.g. 1011). The caller and the model carry on; a client may re-attach.
        """
        call = self._live.get(call_id)
        if call is None:
            raise EmulatorError(f"unknown call {call_id!r}")
        if call.session is None:
            return 0
        log.info("sideband_dropped", call_id=call_id, code=code, count=len(call.session.sidebands))
        if code == 1006:
            return call.session.abort()
        count = len(call.session.sidebands)
        self._tasks.spawn(call.session.close(code), "drop_sideband")
        return count


async def serve(config: EmulatorConfig, stop: asyncio.Event) -> None:
    """Run an emulator until `stop` is set (what ``switchboard emulator`` does)."""
    emulator = Emulator(config)
    await emulator.start()
    log.info("emulator_listening", url=emulator.url, base_url=emulator.base_url, webhook_url=config.webhook_url)
    try:
        await stop.wait()
    finally:
        await emulator.shutdown()
