"""The emulator's own HTTP API under ``/_emulator``, for `switchboard call`, demos and out-of-process tests.

    POST   /_emulator/calls                      {"from", "to", "sip_headers"?: [{"name", "value"}], "script"?,
                                                   "surface"?: "realtime" | "live" | "both"}
                                                  → 201 {"call_id", "twin_id"} (twin_id: the Live id for "both")
    GET    /_emulator/calls                      → [CallRecord, …] (oldest first)
    GET    /_emulator/calls/{id}                 → CallRecord
    POST   /_emulator/calls/{id}/hangup          the caller hangs up now → the record
    POST   /_emulator/calls/{id}/drop_sideband   {"code"?: 1006} → {"dropped": n}
    POST   /_emulator/faults                     {"op", "status"?, "times"?, "delay_s"?, "code"?, "call_id"?} → 201
    DELETE /_emulator/faults                     disarm all faults
    GET    /_emulator/healthz                    → {"ok": true}

Errors are ``{"error": "<what is wrong>"}`` with 400 (bad input), 404 (unknown call) or 409 (not possible
now, e.g. no webhook_url configured). No authentication: it listens on loopback, like the emulator.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import msgspec
from aiohttp import web

from switchboard.emulator.calls import SipHeader
from switchboard.emulator.errors import EmulatorError
from switchboard.emulator.faults import FaultOp
from switchboard.emulator.ports import ControlPort
from switchboard.emulator.scripts import SCRIPTS

PREFIX = "/_emulator"
T = TypeVar("T")


class PlaceCall(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /_emulator/calls``."""

    from_number: str = msgspec.field(name="from")
    to_number: str = msgspec.field(name="to")
    sip_headers: list[SipHeader] = msgspec.field(default_factory=list)
    script: str | None = None
    surface: Literal["realtime", "live", "both"] = "realtime"


class AddFault(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /_emulator/faults``."""

    op: FaultOp
    status: int | None = None
    times: int = 1
    delay_s: float = 0.0
    code: str | None = None
    call_id: str | None = None


class DropSideband(msgspec.Struct, forbid_unknown_fields=True):
    code: int = 1006


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


async def _decode(request: web.Request, kind: type[T], *, empty_ok: bool = False) -> T:
    raw = await request.read()
    if not raw.strip() and empty_ok:
        raw = b"{}"
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise web.HTTPBadRequest(
            text=msgspec.json.encode({"error": f"invalid body: {exc}"}).decode(), content_type="application/json"
        ) from None


class ControlApi:
    """Route handlers for ``/_emulator``."""

    def __init__(self, emulator: ControlPort) -> None:
        self._emulator = emulator

    def register(self, app: web.Application) -> None:
        app.router.add_post(f"{PREFIX}/calls", self._place)
        app.router.add_get(f"{PREFIX}/calls", self._list)
        app.router.add_get(f"{PREFIX}/calls/{{call_id}}", self._get)
        app.router.add_post(f"{PREFIX}/calls/{{call_id}}/hangup", self._hangup)
        app.router.add_post(f"{PREFIX}/calls/{{call_id}}/drop_sideband", self._drop)
        app.router.add_post(f"{PREFIX}/faults", self._add_fault)
        app.router.add_delete(f"{PREFIX}/faults", self._clear_faults)
        app.router.add_get(f"{PREFIX}/healthz", self._healthz)

    async def _place(self, request: web.Request) -> web.Response:
        body = await _decode(request, PlaceCall)
        if not body.from_number.strip() or not body.to_number.strip():
            return _error(400, "'from' and 'to' must be non-empty phone numbers, e.g. \"+14155550100\"")
        if body.script is not None and body.script not in SCRIPTS:
            return _error(400, f"unknown script {body.script!r}; known: {', '.join(sorted(SCRIPTS))}")
        try:
            call_id = self._emulator.place_call(
                body.from_number, body.to_number, sip_headers=body.sip_headers, script=body.script, surface=body.surface
            )
        except EmulatorError as exc:
            return _error(409, str(exc))
        return _json({"call_id": call_id, "twin_id": self._emulator.twin(call_id)}, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        return _json(sorted(self._emulator.calls.values(), key=lambda record: record.created_at))

    async def _get(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        record = self._emulator.calls.get(call_id)
        if record is None:
            return _error(404, f"unknown call {call_id!r}")
        return _json(record)

    async def _hangup(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        if call_id not in self._emulator.calls:
            return _error(404, f"unknown call {call_id!r}")
        return _json(await self._emulator.caller_hangup(call_id))

    async def _drop(self, request: web.Request) -> web.Response:
        call_id = request.match_info["call_id"]
        body = await _decode(request, DropSideband, empty_ok=True)
        if call_id not in self._emulator.calls:
            return _error(404, f"unknown call {call_id!r}")
        if not (body.code == 1006 or 1000 <= body.code <= 4999):
            return _error(400, "code must be 1006 (abort) or a WebSocket close code between 1000 and 4999")
        return _json({"dropped": self._emulator.drop_sideband(call_id, body.code)})

    async def _add_fault(self, request: web.Request) -> web.Response:
        body = await _decode(request, AddFault)
        try:
            fault = self._emulator.faults.add(
                body.op,
                status=body.status,
                times=body.times,
                delay_s=body.delay_s,
                code=body.code,
                call_id=body.call_id,
            )
        except ValueError as exc:
            return _error(400, str(exc))
        return _json(fault, status=201)

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self._emulator.faults.clear()
        return _json({"ok": True})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json({"ok": True})
