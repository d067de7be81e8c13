"""The seams to OpenAI: the REST client for calls (accept/reject/refer/hangup) and the sideband socket.

`CallsClient` makes its requests with timeouts and bounded retries (exponential backoff with jitter) on
transport errors, 429 and 5xx; other 4xx are final. They travel on aiohttp's keep-alive pool and C
parser: httpx's own connection pool cost about 3 ms of CPU per request at 64 concurrent (it scans every
pooled connection on each request), and even over aiohttp (`AiohttpTransport`) httpx's request and
response building was half of what an accept cost the controller, so the calls' POSTs go to aiohttp
directly; the start-up check (``GET models``) still goes through httpx over the same pool. Errors
become `UpstreamError` carrying the HTTP status and OpenAI's error code (``call_id_not_found`` means
the caller is gone). The API key is sent as a bearer header and never appears in errors or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
import httpx
import msgspec

from switchboard.shared import tracing
from switchboard.shared.config import Secret
from switchboard.shared.errors import UpstreamError
from switchboard.shared.events import Surface
from switchboard.shared.logging import get_logger

log = get_logger(__name__)


class CallResult(msgspec.Struct, frozen=True):
    http_status: int
    latency_ms: float


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0

    def delay_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the retry after `attempt` (1-based)."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """OpenAI's ``error.code`` and ``error.message`` in a JSON error body (None for what is missing)."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None, None
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else None)


def _error_from(status: int, content: bytes, method: str, url: str) -> UpstreamError:
    code, detail = _error_fields(content)
    message = f"OpenAI answered {status} to {method} {url}" + (f": {detail}" if detail is not None else "")
    return UpstreamError(status, code, message)


class _TransportError(Exception):
    """A request that got no HTTP answer; its text names what failed (``ConnectError: …``), as httpx does."""


@functools.cache
def http_proxy(scheme: str, host: str) -> str | None:
    """The proxy the environment names for `host` (``https_proxy``, ``no_proxy``…), as httpx would use
    it, looked up once per host rather than by scanning the environment on every request."""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(scheme) or proxies.get("all")


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over an aiohttp client session (its keep-alive pool and C parser).

    Timeouts come from the httpx request (connect, read) and a proxy from the environment as httpx's
    default would (`http_proxy`); aiohttp's errors become the matching httpx ones, so callers see only
    httpx. The session is created on first use, inside the running loop.
    """

    def __init__(self, *, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The aiohttp session (created on first use, inside the running loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=False, trace_configs=tracing.http_client_tracing(route_of)
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self.session()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.get("pool"), sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )  # fmt: skip
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                proxy=http_proxy(request.url.scheme, request.url.host),
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                body = await response.read()
                return httpx.Response(response.status, headers=response.raw_headers, content=body, request=request)
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


_PATHS: dict[str, str] = {"realtime": "realtime/calls", "live": "live/sessions"}
"""Where each surface's call controls live, under the base URL: ``…/{id}/accept`` and so on."""


class CallsClient:
    """REST ``/realtime/calls/{call_id}/…`` or ``/live/sessions/{session_id}/…``, as the call's surface
    says, with the project's bearer key. The bodies are the surface's: an accept body is built for its
    surface by the controller; a Live reject always carries its (required) ``status_code``."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._transport = transport or AiohttpTransport()
        self._base_url = base_url.rstrip("/") + "/"
        self._headers = {"Authorization": f"Bearer {api_key.reveal()}", "User-Agent": "switchboard/0.1",
                         "Content-Type": "application/json"}  # fmt: skip
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers={k: v for k, v in self._headers.items() if k != "Content-Type"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=self._transport,
        )
        connect_s = min(timeout_s, 5.0)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=connect_s, sock_read=timeout_s
        )
        base = urlsplit(self._base_url)
        self._proxy = http_proxy(base.scheme, base.hostname or "")
        self._retry = retry or RetryPolicy()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, url: str, payload: bytes) -> tuple[int, bytes]:
        """One POST over aiohttp: (status, body); `_TransportError` naming what failed as httpx would."""
        if not isinstance(self._transport, AiohttpTransport):  # another transport given: httpx's way
            try:
                answer = await self._http.post(url, content=payload, headers={"Content-Type": "application/json"})
            except httpx.HTTPError as exc:
                raise _TransportError(f"{type(exc).__name__}" + (f": {exc}" if str(exc) else "")) from exc
            return answer.status_code, answer.content
        session = self._transport.session()
        try:
            async with session.post(
                url, data=payload, headers=self._headers, proxy=self._proxy, allow_redirects=False,
                timeout=self._timeout,
            ) as response:  # fmt: skip
                return response.status, await response.read()
        except aiohttp.ClientConnectorError as exc:
            raise _TransportError(f"ConnectError: {exc}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise _TransportError("ReadTimeout" + (f": {exc}" if str(exc) else "")) from exc
        except aiohttp.ClientError as exc:
            raise _TransportError(f"ReadError: {str(exc) or type(exc).__name__}") from exc

    async def _post(self, call_id: str, op: str, body: dict[str, Any] | None, surface: Surface) -> CallResult:
        url = f"{self._base_url}{_PATHS[surface]}/{quote(call_id, safe='')}/{op}"
        payload = msgspec.json.encode(body if body is not None else {})
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                status, content = await self._send(url, payload)
            except _TransportError as exc:
                error = UpstreamError(None, None, f"OpenAI {op} failed: POST {url}: {exc}")
            else:
                if 200 <= status < 300:
                    return CallResult(status, round((time.perf_counter() - started) * 1000, 2))
                error = _error_from(status, content, "POST", url)
            if not error.retryable or attempt >= self._retry.attempts:
                raise error
            await asyncio.sleep(self._retry.delay_s(attempt))

    async def check(self, timeout_s: float = 3.0) -> str | None:
        """Why OpenAI's base URL is no good (unreachable, not OpenAI's API, the key refused), or None.

        One ``GET models`` (it lists the key's models, and changes nothing), without retries."""
        url = self._http.base_url.join("models")
        try:
            response = await self._http.get(url, timeout=httpx.Timeout(timeout_s))
        except httpx.HTTPError as exc:
            return f"cannot reach OpenAI: GET {url}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        if response.status_code in (401, 403):
            return f"OpenAI refused OPENAI_API_KEY: GET {url} answered {response.status_code}"
        if response.status_code == 404:
            return f"GET {url} answered 404: is OPENAI_BASE_URL OpenAI's API (it ends in /v1)?"
        return None

    async def accept(self, call_id: str, session: dict[str, Any], *, surface: Surface = "realtime") -> CallResult:
        return await self._post(call_id, "accept", session, surface)

    async def reject(
        self, call_id: str, status_code: int | None = None, *, surface: Surface = "realtime"
    ) -> CallResult:
        if surface == "live":
            status_code = status_code or 603  # required on Live; Realtime's default
        return await self._post(call_id, "reject", {"status_code": status_code} if status_code else None, surface)

    async def refer(self, call_id: str, target_uri: str, *, surface: Surface = "realtime") -> CallResult:
        return await self._post(call_id, "refer", {"target_uri": target_uri}, surface)

    async def hangup(self, call_id: str, *, surface: Surface = "realtime") -> CallResult:
        return await self._post(call_id, "hangup", None, surface)


async def warn_if_unusable(calls: CallsClient, *, service: str) -> None:
    """At start: one warning line if OpenAI cannot be used as configured (`CallsClient.check`)."""
    problem = await calls.check()
    if problem is not None:
        log.warning(
            "openai_unusable", service=service, problem=problem, hint="check OPENAI_BASE_URL and OPENAI_API_KEY"
        )


_ROUTE = re.compile(r"/(realtime/calls|live/sessions)/([^/]+)(/[^/]*)?$")


def route_of(path: str) -> tuple[str, str | None]:
    """A request path to OpenAI as a low-cardinality route (under the base URL), and the call id in it:
    ``/v1/realtime/calls/rtc_1/accept`` → (``/realtime/calls/{id}/accept``, ``rtc_1``); the Realtime
    sideband ``/v1/realtime`` → (``/realtime``, None); anything else → its last segment."""
    found = _ROUTE.search(path)
    if found is not None:
        return f"/{found[1]}/{{id}}{found[3] or ''}", unquote(found[2])
    return "/" + path.rstrip("/").rsplit("/", 1)[-1], None


def sideband_url(base_url: str, call_id: str, surface: Surface = "realtime") -> str:
    """``https://host/v1`` → ``wss://host/v1/realtime?call_id=…``, or on Live
    ``wss://host/v1/live/sessions/…/attach`` (http → ws)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    if surface == "live":
        return urlunsplit(
            (scheme, parts.netloc, f"{parts.path}/live/sessions/{quote(call_id, safe='')}/attach", "", "")
        )
    return urlunsplit((scheme, parts.netloc, parts.path + "/realtime", f"call_id={quote(call_id, safe='')}", ""))


class _Head(msgspec.Struct):
    type: Any = None
    event_id: Any = None


_head = msgspec.json.Decoder(_Head)


class ServerEvent:
    """One server event as it came off the sideband: its JSON text, untouched, and its two routing fields.

    A worker relays thousands of these a second and reads the body of only a few (``response.done`` for
    function calls), so the frame is parsed for ``type`` and ``event_id`` alone and relayed as the bytes
    OpenAI sent; `data` decodes the whole object on demand.
    """

    __slots__ = ("_data", "event_id", "raw", "type")

    def __init__(self, raw: bytes, type_: object, event_id: object) -> None:
        self.raw = raw
        self.type = type_ if isinstance(type_, str) else None
        self.event_id = event_id if isinstance(event_id, str) else None
        self._data: dict[str, Any] | None = None

    @classmethod
    def parse(cls, raw: bytes) -> ServerEvent | None:
        """The event in a text frame, or None when the frame is not a JSON object."""
        try:
            head = _head.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return cls(raw, head.type, head.event_id)

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = msgspec.json.decode(self.raw, type=dict[str, Any])
        return self._data


class SidebandClosed(msgspec.Struct, frozen=True):
    """How the sideband ended: the WebSocket close code and reason (None when aborted)."""

    code: int | None
    reason: str


class Sideband:
    """One sideband WebSocket for a call: receive server events, send client events.

    It runs on aiohttp's WebSocket client, whose frame reader is compiled: a worker holding a thousand
    calls reads thousands of frames a second, one per socket read, and websockets' pure-Python reader
    cost it about half again as much CPU per frame. Pass the worker's `sideband_session` as `http` so
    all its sidebands share one connector; without it the sideband opens (and closes) its own.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, own_session: aiohttp.ClientSession | None) -> None:
        self._ws = ws
        self._own_session = own_session
        self.closed: SidebandClosed | None = None
        self._close_frame: SidebandClosed | None = None

    @classmethod
    async def open(
        cls,
        base_url: str,
        call_id: str,
        api_key: Secret,
        *,
        http: aiohttp.ClientSession | None = None,
        open_timeout_s: float = 10.0,
        surface: Surface = "realtime",
    ) -> Sideband:
        """Connect; raises `UpstreamError` (with the HTTP status when the upgrade was refused)."""
        base = urlsplit(base_url)
        url = sideband_url(base_url, call_id, surface)
        session = http if http is not None else sideband_session()
        refusal: list[bytes] = []
        token = _refusal_body.set(refusal)
        try:
            async with asyncio.timeout(open_timeout_s):
                ws = await session.ws_connect(
                    url,
                    headers={"Authorization": f"Bearer {api_key.reveal()}"},
                    proxy=http_proxy(base.scheme, base.hostname or ""),
                    heartbeat=_HEARTBEAT_S,
                    max_msg_size=16 * 1024 * 1024,
                    timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                )
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            if http is None:
                await session.close()
            if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status >= 400:
                code = _error_fields(refusal[0])[0] if refusal else None
                raise UpstreamError(exc.status, code, f"sideband {url} refused with {exc.status}") from None
            why = f"{type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            raise UpstreamError(None, None, f"sideband connect to {url} failed: {why}") from None
        finally:
            _refusal_body.reset(token)
        return cls(ws, None if http is not None else session)

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Each server event until the socket closes (frames that are not JSON objects are skipped)."""
        ws = self._ws
        try:
            while True:
                message = await ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    event = ServerEvent.parse(message.data.encode())
                elif message.type is aiohttp.WSMsgType.BINARY:
                    event = ServerEvent.parse(message.data)
                else:
                    if message.type is aiohttp.WSMsgType.CLOSE:
                        self._close_frame = SidebandClosed(message.data, message.extra or "")
                    break  # closed, closing or failed
                if event is not None:
                    yield event
        finally:
            # Only a close frame is a close: without one (a reset, an end of stream, no pong) the
            # connection was lost, whatever code the client library settles on.
            self.closed = self._close_frame or SidebandClosed(None, "connection lost")

    async def send(self, event: dict[str, Any]) -> None:
        """Send one client event; `UpstreamError` (no status) if the connection is closing or gone."""
        try:
            async with asyncio.timeout(5.0):
                await self._ws.send_str(msgspec.json.encode(event).decode())
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            raise UpstreamError(None, None, f"sideband send failed: {str(exc) or type(exc).__name__}") from exc

    async def close(self) -> None:
        try:
            await self._ws.close()
        finally:
            if self._own_session is not None:
                await self._own_session.close()


_HEARTBEAT_S = 20.0
"""Ping the peer this often; no pong within half of it and the connection counts as lost."""


_refusal_body: contextvars.ContextVar[list[bytes] | None] = contextvars.ContextVar("refusal_body", default=None)
"""Where `Sideband.open` wants the body of a refused upgrade (aiohttp's handshake error carries none)."""
_REFUSAL_MAX_BYTES = 64 * 1024


async def _keep_refusal_body(
    session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestEndParams
) -> None:
    """Read a refused upgrade's body (OpenAI's JSON error, with its code) before aiohttp drops it."""
    box = _refusal_body.get()
    if box is not None and params.response.status >= 400:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with asyncio.timeout(2.0):
                box.append(await params.response.content.read(_REFUSAL_MAX_BYTES))


def sideband_session() -> aiohttp.ClientSession:
    """A client session for sidebands: no cap on connections (each held sideband keeps one), and the
    body of a refused upgrade kept so the error can carry OpenAI's error code."""
    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(_keep_refusal_body)
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), trace_configs=[trace, *tracing.http_client_tracing(route_of)]
    )
