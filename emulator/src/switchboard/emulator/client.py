"""A client for a running emulator's control API (``switchboard call``, demos, out-of-process tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, Self

import httpx
import msgspec

from switchboard.emulator.calls import CallRecord, SipHeaderLike, sip_header
from switchboard.emulator.errors import EmulatorError

DEFAULT_URL = "http://127.0.0.1:8100"
POLL_INTERVAL_S = 0.05


class EmulatorClient:
    """Places and inspects calls through ``/_emulator``; every request has a timeout."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=httpx.Timeout(timeout_s))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        try:
            response = await self._http.request(method, f"/_emulator{path}", json=json)
        except httpx.HTTPError as exc:
            raise EmulatorError(f"emulator unreachable at {self._http.base_url}: {exc!r}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise EmulatorError(f"emulator answered {response.status_code}: {message}")
        return response

    async def place_call(
        self,
        from_number: str,
        to_number: str,
        *,
        sip_headers: Sequence[SipHeaderLike] | None = None,
        script: str | None = None,
        surface: Literal["realtime", "live", "both"] = "realtime",
    ) -> str:
        """Place a call (the emulator sends its webhook) on `surface` (realtime, live or both); returns its id.

        For ``both`` that is the Realtime id; the record's ``twin_id`` names the Live one.
        """
        try:
            headers = [sip_header(h) for h in sip_headers or ()]
        except ValueError as exc:
            raise EmulatorError(str(exc)) from None
        body: dict[str, Any] = {
            "from": from_number,
            "to": to_number,
            "sip_headers": [{"name": h.name, "value": h.value} for h in headers],
        }
        if script is not None:
            body["script"] = script
        if surface != "realtime":
            body["surface"] = surface
        response = await self._request("POST", "/calls", body)
        return str(response.json()["call_id"])

    async def get_call(self, call_id: str) -> CallRecord:
        response = await self._request("GET", f"/calls/{call_id}")
        return msgspec.json.decode(response.content, type=CallRecord)

    async def list_calls(self) -> list[CallRecord]:
        response = await self._request("GET", "/calls")
        return msgspec.json.decode(response.content, type=list[CallRecord])

    async def hangup(self, call_id: str) -> CallRecord:
        """The caller hangs up now."""
        response = await self._request("POST", f"/calls/{call_id}/hangup")
        return msgspec.json.decode(response.content, type=CallRecord)

    async def drop_sideband(self, call_id: str, code: int = 1006) -> int:
        response = await self._request("POST", f"/calls/{call_id}/drop_sideband", {"code": code})
        return int(response.json()["dropped"])

    async def add_fault(
        self,
        op: str,
        *,
        status: int | None = None,
        times: int = 1,
        delay_s: float = 0.0,
        code: str | None = None,
        call_id: str | None = None,
    ) -> None:
        body = {"op": op, "status": status, "times": times, "delay_s": delay_s, "code": code, "call_id": call_id}
        await self._request("POST", "/faults", body)

    async def clear_faults(self) -> None:
        await self._request("DELETE", "/faults")

    async def wait_ended(self, call_id: str, timeout_s: float) -> CallRecord:
        """Poll until the call is over; `TimeoutError` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = await self.get_call(call_id)
            if record.ended:
                return record
            if time.monotonic() >= deadline:
                raise TimeoutError(f"call {call_id} still {record.state} after {timeout_s}s")
            await asyncio.sleep(POLL_INTERVAL_S)
