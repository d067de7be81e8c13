"""The fast path of log reading: a NATS connection that only pulls messages and parses them in bulk.

nats-py handles each message in roughly 40 µs (a regex parse, a `Msg`, a queue hop and a task per
message); replaying the log has to go at 100k events/s and more. So this connection does one thing: it
subscribes to one inbox, publishes JetStream pull requests and parses what comes back with
`protocol.parse`, a few µs per message. It speaks the NATS client protocol itself: ``nats://`` and
``tls://`` URLs, user/password or token (the credentials the bus connected with), TLS when the URL or
the server asks for it. ``SWITCHBOARD_NATS_FAST_PATH=off`` reads through nats-py's public API instead
(`public`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import ParseResult, unquote

import msgspec

from switchboard.shared.errors import BusUnavailable
from switchboard.shared.pullreader.protocol import Status, Stored, parse

CONNECT_TIMEOUT_S = 5.0
_READ_SIZE = 1 << 20


class LeanConnection:
    """A NATS client connection that only subscribes to one inbox, publishes pull requests and parses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buf = b""

    @classmethod
    async def open(cls, url: ParseResult, *, name: str, credentials: Mapping[str, str]) -> LeanConnection:
        host, port = url.hostname or "127.0.0.1", url.port or 4222
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port, limit=_READ_SIZE * 4)
                line = await reader.readline()
                if not line.startswith(b"INFO "):
                    raise BusUnavailable(f"{host}:{port} is not a NATS server")
                info = msgspec.json.decode(line[5:])
                if url.scheme == "tls" or info.get("tls_required"):
                    await writer.start_tls(ssl.create_default_context(), server_hostname=host)
                options: dict[str, object] = {
                    "verbose": False, "pedantic": False, "lang": "python3", "version": "switchboard-pullreader",
                    "protocol": 1, "headers": True, "no_responders": True, "name": name,
                }  # fmt: skip
                # The bus's own credentials (from NATS_URL): nats-py's connected URL no longer carries them.
                if "user" in credentials:
                    options.update(user=credentials["user"], **{"pass": credentials.get("password", "")})
                elif "token" in credentials:
                    options["auth_token"] = credentials["token"]
                elif url.username and url.password is not None:
                    options.update(user=unquote(url.username), **{"pass": unquote(url.password)})
                elif url.username:
                    options["auth_token"] = unquote(url.username)
                writer.write(b"CONNECT " + msgspec.json.encode(options) + b"\r\nPING\r\n")
                await writer.drain()
                while True:
                    reply = await reader.readline()
                    if not reply:
                        raise BusUnavailable(f"{host}:{port} closed the connection")
                    if reply.startswith(b"-ERR"):
                        raise BusUnavailable(f"{host}:{port} refused the connection: {reply[5:].decode().strip()}")
                    if reply.startswith(b"PONG"):
                        break
        except TimeoutError:
            raise BusUnavailable(f"could not connect to NATS at {host}:{port} in {CONNECT_TIMEOUT_S}s") from None
        except (OSError, ssl.SSLError, msgspec.DecodeError) as exc:
            raise BusUnavailable(f"could not connect to NATS at {host}:{port}: {exc}") from exc
        return cls(reader, writer)

    def subscribe(self, subject: str, sid: int) -> None:
        self._writer.write(f"SUB {subject} {sid}\r\n".encode())

    def publish(self, subject: str, reply: str, payload: bytes) -> None:
        self._writer.write(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")

    async def flush(self) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):  # not wait_for: see `receive`
            await self._writer.drain()

    async def receive(self, timeout_s: float, out: list[Stored], statuses: list[Status]) -> int:
        """Read what has arrived (waiting at most `timeout_s`), appending messages and pull statuses.

        Returns the last message's pending count (-1 when none came). Raises `TimeoutError` if nothing
        at all arrived, `BusUnavailable` if the connection is gone or the server reports an error.
        """
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation (Ctrl-C on `tail`)
            # that lands as the read completes, and the reader would go on forever.
            async with asyncio.timeout(timeout_s):
                chunk = await self._reader.read(_READ_SIZE)
        except (OSError, ssl.SSLError) as exc:
            raise BusUnavailable(f"connection lost: {exc}") from exc
        if not chunk:
            raise BusUnavailable("the server closed the connection")
        buf = self._buf + chunk if self._buf else chunk
        found = parse(buf, out, statuses)
        if found.pings:
            self._writer.write(b"PONG\r\n" * found.pings)
        self._buf = buf[found.consumed :]
        return found.pending

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._writer.wait_closed()
