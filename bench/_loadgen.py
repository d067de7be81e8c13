"""A lean HTTP/1.1 load generator: pre-serialised requests over keep-alive connections, one asyncio
Protocol per connection, no client library in the way.

On a 2-core box the load generator competes with what it measures, so it must cost as little as possible
per request: aiohttp's client spends several times more CPU per request than this. Responses are parsed
just enough to get the status and skip the body (Content-Length; a server that closes the connection is
reconnected for the next request). Closed loop (`drive`, at most C in flight), open loop (`drive_rate`,
request i sent at start + i/rate whatever the answers), or concurrent calls (`drive_held`, N callers each
holding a call for a while, then calling again).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench._common import Latency

REQUEST_TIMEOUT_S = 30.0


@dataclass
class Request:
    """One POST, serialised once; `key` names it in `LoadResult.sent_at` (e.g. its call id)."""

    key: str
    url: str
    headers: dict[str, str]
    body: bytes
    raw: bytes = b""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        head = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(self.body)}"]
        head += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in ("host", "content-length")]
        self.raw = ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


@dataclass
class LoadResult:
    latency: Latency = field(default_factory=Latency)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    sent_at: dict[str, float] = field(default_factory=dict)
    """Wall-clock time (``time.time()``) each request started being sent, by key."""
    seconds: float = 0.0
    """First send to last answer."""

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def rate(self) -> float:
        return round(sum(self.statuses.values()) / self.seconds, 1) if self.seconds else 0.0


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._need: int | None = None  # bytes of the current response still to come (head parsed)
        self._status = 0
        self.closed = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._advance()

    def _advance(self) -> None:
        if self._need is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).lower()
            self._status = int(head[9:12])
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop > 0 else len(head)])
            self.close_after = b"\r\nconnection: close" in head
            del self._buf[: end + 4]
            self._need = length
        if len(self._buf) >= self._need:
            del self._buf[: self._need]
            self._need = None
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(self._status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("server closed the connection"))

    async def send(self, raw: bytes) -> int:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter


class _Pool:
    """Keep-alive connections per host:port, opened on demand, reopened when the server closes one."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._all: list[_Connection] = []

    async def send(self, request: Request) -> int:
        parts = urlsplit(request.url)
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        idle = self._idle.setdefault(key, [])
        conn = idle.pop() if idle else None
        if conn is None or conn.closed:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, *key)
            self._all.append(conn)
        status = await asyncio.wait_for(conn.send(request.raw), REQUEST_TIMEOUT_S)
        if conn.close_after:
            assert conn.transport is not None
            conn.transport.close()
        else:
            idle.append(conn)
        return status

    def close(self) -> None:
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()


async def _one(pool: _Pool, request: Request, result: LoadResult) -> None:
    result.sent_at[request.key] = time.time()
    started = time.perf_counter()
    try:
        status = await pool.send(request)
    except (OSError, TimeoutError, ValueError) as exc:
        result.errors[type(exc).__name__] += 1
        return
    result.latency.record_s(time.perf_counter() - started)
    result.statuses[status] += 1


async def drive(requests: Sequence[Request], concurrency: int) -> LoadResult:
    """Closed loop: every request once, at most `concurrency` in flight."""
    result = LoadResult()
    pool = _Pool()
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(requests):
            request = requests[next_index]
            next_index += 1
            await _one(pool, request, result)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
    finally:
        pool.close()
    result.seconds = time.perf_counter() - started
    return result


async def drive_rate(requests: Sequence[Request], rate_per_s: float) -> LoadResult:
    """Open loop: request i is sent at start + i / rate, whether or not earlier ones were answered."""
    result = LoadResult()
    pool = _Pool()
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    started = time.perf_counter()
    try:
        for index, request in enumerate(requests):
            delay = started_at + index / rate_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(pool, request, result)))
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    result.seconds = time.perf_counter() - started
    return result


async def drive_held(
    requests: Sequence[Request], lines: int, hold_s: float, hang_up: Callable[[str], Awaitable[object]]
) -> LoadResult:
    """Concurrent calls, as a SIP load tester counts them: `lines` callers, each sends a call's webhook,
    holds the call `hold_s`, hangs up (`hang_up(key)`) and calls again with the next request. Line i
    starts i * hold_s / lines in, so calls arrive evenly, lines / hold_s per second."""
    result = LoadResult()
    pool = _Pool()
    next_index = 0
    hangups: list[asyncio.Task[object]] = []

    async def line(index: int) -> None:
        nonlocal next_index
        await asyncio.sleep(index * hold_s / lines)
        while next_index < len(requests):
            request = requests[next_index]
            next_index += 1
            await _one(pool, request, result)
            await asyncio.sleep(hold_s)
            hangups.append(asyncio.ensure_future(hang_up(request.key)))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(line(i) for i in range(min(lines, len(requests)))))
        await asyncio.gather(*hangups, return_exceptions=True)
    finally:
        pool.close()
    result.seconds = time.perf_counter() - started
    return result
