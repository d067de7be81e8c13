"""The emulated OpenAI API: REST call control and the sideband WebSocket, on both SIP surfaces.

    Realtime   POST /v1/realtime/calls/{call_id}/accept|reject|refer|hangup    GET /v1/realtime?call_id=…
    Live       POST /v1/live/sessions/{session_id}/accept|reject|refer|hangup  GET /v1/live/sessions/{id}/attach

Faithful to what OpenAI answers (see the reference docs and the openai SDK): bearer auth first (401
``invalid_api_key``, never echoing the key), then injected faults (the same fault ops on both surfaces),
then the call (404 ``call_id_not_found`` when unknown on that surface or over; 409
``call_already_handled`` when it was answered on the other surface), then the body (400 with ``param``).
Success is 200 ``{}`` (the SDK discards the body). Every request about a known call is recorded on it.
The bodies differ by surface: Realtime's accept is the flat session with ``type: "realtime"`` and its
reject's ``status_code`` is optional (603, 400-699); Live's accept is ``{"session": {"type": "live",
"model", …}}`` and its reject's ``status_code`` is required (300-699). Refer and hangup are shared.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from switchboard.emulator import errors
from switchboard.emulator.calls import Authorization, RestRequest, SidebandConnection, Surface
from switchboard.emulator.errors import ApiError
from switchboard.emulator.faults import CARRIER_SILENT, Fault, FaultOp
from switchboard.emulator.live import LiveCall
from switchboard.emulator.live_config import check_status_code, session_resource, validate_accept
from switchboard.emulator.ports import OpenAIPort
from switchboard.emulator.session_config import DEFAULT_MODEL, session_from_accept, validate_session
from switchboard.shared.sip import target_uri_problem

log = structlog.get_logger(__name__)

_OPS: dict[str, FaultOp] = {"accept": "accept", "reject": "reject", "refer": "refer", "hangup": "hangup"}
_REJECT_KEYS = frozenset({"status_code"})
_REFER_KEYS = frozenset({"target_uri"})
REFER_TEARDOWN_S = 0.5
"""After a refer of an answered call, how long (at pace 1) until its sideband closes."""
WS_CLOSE_TIMEOUT_S = 2.0
WS_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def _json_error(exc: ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


class OpenAIApi:
    """Route handlers for ``/v1``; they act on the emulator's calls."""

    def __init__(self, emulator: OpenAIPort) -> None:
        self._emulator = emulator
        self._expected = f"Bearer {emulator.config.api_key}".encode()

    def register(self, app: web.Application) -> None:
        app.router.add_post("/v1/realtime/calls/{call_id}/{op}", self._realtime_rest)
        app.router.add_post("/v1/live/sessions/{call_id}/{op}", self._live_rest)
        app.router.add_get("/v1/realtime", self._realtime_sideband)
        app.router.add_get("/v1/live/sessions/{call_id}/attach", self._live_sideband)
        app.router.add_get("/v1/models", self._models)

    @staticmethod
    @web.middleware
    async def json_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Unknown ``/v1`` routes answer like OpenAI (a JSON error), not with aiohttp's text page."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if not request.path.startswith("/v1") or exc.status < 400:
                raise
            message = f"Invalid URL ({request.method} {request.path})"
            return _json_error(ApiError(exc.status, message))

    def _authorization(self, request: web.Request) -> Authorization:
        presented = request.headers.get("Authorization")
        if presented is None:
            return "missing"
        return "valid" if hmac.compare_digest(presented.encode(), self._expected) else "invalid"

    async def _fault(self, op: FaultOp, call_id: str) -> Fault | None:
        fault = self._emulator.faults.take(op, call_id)
        if fault is None:
            return None
        log.info("fault_injected", op=op, call_id=call_id, status=fault.status, delay_s=fault.delay_s)
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if fault.status is not None:
            raise errors.injected(fault.status, fault.code)
        return fault

    # REST.

    async def _models(self, request: web.Request) -> web.Response:
        """``GET /v1/models``: the models it emulates (a client checks its base URL and key with it)."""
        if self._authorization(request) != "valid":
            return _json_error(errors.invalid_api_key())
        model = {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "system"}
        return web.json_response({"object": "list", "data": [model]})

    def _call(self, call_id: str, surface: Surface) -> LiveCall | None:
        """The call with this id on this surface (a Live id is unknown to Realtime, and the other way round)."""
        call = self._emulator.live(call_id)
        return call if call is not None and call.record.surface == surface else None

    async def _realtime_rest(self, request: web.Request) -> web.Response:
        return await self._rest(request, "realtime")

    async def _live_rest(self, request: web.Request) -> web.Response:
        return await self._rest(request, "live")

    async def _rest(self, request: web.Request, surface: Surface) -> web.Response:
        call_id = request.match_info["call_id"]
        op = request.match_info["op"]
        if op not in _OPS:
            raise web.HTTPNotFound()
        text = await request.text()
        body: Any
        parse_error = False
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body, parse_error = text, True
        authorization = self._authorization(request)
        call = self._call(call_id, surface)
        try:
            if authorization != "valid":
                raise errors.invalid_api_key()
            fault = await self._fault(_OPS[op], call_id)
            if call is not None and call.record.end_reason == "answered_elsewhere":
                raise errors.call_already_handled(call_id, "answered on the other surface")
            if call is None or call.record.ended:
                raise errors.call_not_found(call_id)
            if parse_error:
                raise ApiError(
                    400,
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was "
                    "not valid JSON.)",
                )
            if surface == "live":
                handler = {"accept": self._live_accept, "reject": self._live_reject}
            else:
                handler = {"accept": self._accept, "reject": self._reject}
            handler |= {"refer": self._refer, "hangup": self._hangup}
            if op == "refer" and fault is not None and fault.code == CARRIER_SILENT:
                # OpenAI relayed the REFER (200) but the carrier never completes it: the call goes on.
                call.record.target_uri = body.get("target_uri") if isinstance(body, dict) else None
            else:
                await handler[op](call, body)
            response = web.json_response({})
        except ApiError as exc:
            log.info("rest_refused", op=op, call_id=call_id, status=exc.status, code=exc.code)
            response = _json_error(exc)
        if call is not None:
            call.record.rest_requests.append(
                RestRequest(op=op, at=time.time(), body=body, authorization=authorization, status=response.status)
            )
        return response

    @staticmethod
    def _require_ringing(call: LiveCall) -> None:
        """Accept and reject answer a ringing call; once it is answered, OpenAI says 409."""
        if call.record.state != "ringing":
            raise errors.call_already_handled(call.record.call_id, call.record.state)

    async def _accept(self, call: LiveCall, body: Any) -> None:
        if body is None:
            raise ApiError(400, "Missing required parameter: 'type'.", code="missing_required_parameter", param="type")
        validate_session(body)
        self._require_ringing(call)
        self._emulator.answer(call, body, session_from_accept(body))

    async def _live_accept(self, call: LiveCall, body: Any) -> None:
        validate_accept(body)
        self._require_ringing(call)
        self._emulator.answer(call, body, session_resource(call.record.call_id, body["session"]))

    async def _live_reject(self, call: LiveCall, body: Any) -> None:
        status_code = check_status_code(body)
        self._require_ringing(call)
        call.record.status_code = status_code
        self._emulator.end_call(call, "rejected", "rejected")

    async def _reject(self, call: LiveCall, body: Any) -> None:
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid body: expected a JSON object.", code="invalid_type")
        for key in body:
            if key not in _REJECT_KEYS:
                raise ApiError(400, f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key)
        status_code = body.get("status_code", 603)
        if isinstance(status_code, bool) or not isinstance(status_code, int) or not 400 <= status_code <= 699:
            raise ApiError(
                400,
                f"Invalid 'status_code': expected a SIP final response code between 400 and 699, got {status_code!r}.",
                code="invalid_value",
                param="status_code",
            )
        self._require_ringing(call)
        call.record.status_code = status_code
        self._emulator.end_call(call, "rejected", "rejected")

    async def _refer(self, call: LiveCall, body: Any) -> None:
        if not isinstance(body, dict) or "target_uri" not in body:
            raise ApiError(
                400, "Missing required parameter: 'target_uri'.", code="missing_required_parameter", param="target_uri"
            )
        for key in body:
            if key not in _REFER_KEYS:
                raise ApiError(400, f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key)
        target = body["target_uri"]
        problem = target_uri_problem(target if isinstance(target, str) else "")
        if problem is not None:
            raise ApiError(
                400,
                f"Invalid 'target_uri': {problem}, got {target!r}.",
                code="invalid_value",
                param="target_uri",
            )
        call.record.target_uri = target
        self._emulator.end_call(call, "referred", "referred", close_delay_s=REFER_TEARDOWN_S)

    async def _hangup(self, call: LiveCall, body: Any) -> None:
        if call.record.state != "accepted":
            raise errors.invalid_call_state(call.record.call_id, call.record.state, "accepted")
        self._emulator.end_call(call, "ended", "hangup")

    # Sideband.

    async def _realtime_sideband(self, request: web.Request) -> web.StreamResponse:
        return await self._sideband(request, request.query.get("call_id", ""), "realtime")

    async def _live_sideband(self, request: web.Request) -> web.StreamResponse:
        return await self._sideband(request, request.match_info["call_id"], "live")

    async def _sideband(self, request: web.Request, call_id: str, surface: Surface) -> web.StreamResponse:
        call = self._call(call_id, surface)
        authorization = self._authorization(request)
        connection: SidebandConnection | None = None
        if call is not None:
            records = call.record.sideband_connections
            connection = SidebandConnection(index=len(records), at=time.time(), authorization=authorization, status=0)
            records.append(connection)
        try:
            if authorization != "valid":
                raise errors.invalid_api_key()
            if not call_id:
                raise ApiError(
                    400, "Missing required parameter: 'call_id'.", code="missing_required_parameter", param="call_id"
                )
            if request.query.get("graceful_close", "true") not in ("true", "false"):
                raise ApiError(
                    400,
                    "Invalid value for 'graceful_close': expected 'true' or 'false'.",
                    code="invalid_value",
                    param="graceful_close",
                )
            await self._fault("sideband_connect", call_id)
            if call is None or call.record.ended:
                raise errors.call_not_found(call_id)
            if call.session is None:
                raise errors.invalid_call_state(call_id, call.record.state, "accepted")
        except ApiError as exc:
            if connection is not None:
                connection.status = exc.status
            log.info("sideband_refused", call_id=call_id, status=exc.status, code=exc.code)
            return _json_error(exc)
        assert connection is not None and call.session is not None
        realtime = call.session
        ws = web.WebSocketResponse(
            timeout=WS_CLOSE_TIMEOUT_S, heartbeat=None, max_msg_size=WS_MAX_MESSAGE_BYTES, compress=False
        )
        await ws.prepare(request)
        connection.status = 101
        if call.record.ended:
            # The call ended while the upgrade was in flight: like the real API, close at once.
            connection.close_code = 1000
            await ws.close(code=1000)
            return ws
        sideband = await realtime.attach(ws, request.transport, connection)
        bound = log.bind(call_id=call_id, index=connection.index)
        bound.info("sideband_attached", open=len(realtime.sidebands))
        self._emulator.sideband_attached(call)
        if call.record.ended:  # it ended while we were attaching: the teardown may have missed us
            await ws.close(code=1000)
        try:
            async for message in ws:
                if message.type == web.WSMsgType.TEXT:
                    await realtime.on_client_text(message.data, sideband)
                elif message.type == web.WSMsgType.BINARY:
                    await realtime.on_client_text(message.data.decode(errors="replace"), sideband)
        finally:
            realtime.detach(sideband)
            bound.info("sideband_detached", close_code=connection.close_code)
        return ws
