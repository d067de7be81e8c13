"""The "read the log in order" consumption mode: an ephemeral pull consumer, read over a lean connection.

Replaying the log has to be fast (≥ 100k events/s): nats-py handles each message in roughly 40 µs (a
regex parse, a `Msg`, a queue hop and a task per message), a quarter of that budget. So the data path
here is a dedicated NATS connection that does one thing: it sends JetStream pull requests for a consumer
and parses the messages that come back in bulk, in a few µs each. Everything else — creating and deleting
the consumer, stream info — goes through the service's ordinary `Bus`.

How a read goes: an ephemeral consumer (acks off, in memory, removed by the server a minute after we
vanish) is created on the CALLS stream with the reader's subject filters and start point, so JetStream
filters server-side and a one-call replay never scans the other calls. One pull request of `batch`
messages is in flight at a time. In replay mode (``follow=False``) requests use ``no_wait`` and the read
ends when the consumer has nothing pending (a message's pending count reaches 0, or the server answers
404/408), or at `stop_seq`. In follow mode requests wait (``expires``, with idle heartbeats); if the
heartbeats stop or the connection drops, the reader reconnects and makes a new consumer that starts after
the last sequence it delivered — the ordered-consumer guarantee: in order, no gaps, no repeats.

The connection speaks the NATS client protocol: ``nats://`` and ``tls://`` URLs, user/password or token
in the URL (the same credentials the bus connected with), TLS when the URL or the server asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from datetime import datetime
from urllib.parse import ParseResult, unquote

import msgspec
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger

log = get_logger(__name__)

_CONNECT_TIMEOUT_S = 5.0
_HEARTBEAT_S = 2.0
_EXPIRES_S = 20.0
_REPLAY_EXPIRES_S = 5.0
_REPLAY_HEARTBEAT_S = 1.0
_RESUME_BACKOFF_MAX_S = 5.0
_READ_SIZE = 1 << 20
_CONSUMER_IDLE_S = 60.0


class Stored(msgspec.Struct, frozen=True, gc=False):
    """One stored message as read: stream sequence, subject, store time (ns since the epoch) and payload."""

    seq: int
    subject: str
    time_ns: int
    data: bytes


class Start(msgspec.Struct, frozen=True, kw_only=True):
    """Where a read begins: the first event, a stream sequence, a time, or only events stored from now."""

    from_start: bool = False
    seq: int | None = None
    time: datetime | None = None

    def consumer_fields(self) -> dict[str, object]:
        if self.seq is not None:
            return {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": self.seq}
        if self.time is not None:
            return {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": self.time}
        if self.from_start:
            return {"deliver_policy": DeliverPolicy.ALL}
        return {"deliver_policy": DeliverPolicy.NEW}


class ConsumerGone(BusUnavailable):
    """The server ended our consumer (deleted, leader change): resume on a new one."""


class _Connection:
    """A NATS client connection that only subscribes to one inbox, publishes pull requests and parses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buf = b""

    @classmethod
    async def open(cls, url: ParseResult, *, name: str, credentials: Mapping[str, str]) -> _Connection:
        host, port = url.hostname or "127.0.0.1", url.port or 4222
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
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
            raise BusUnavailable(f"could not connect to NATS at {host}:{port} in {_CONNECT_TIMEOUT_S}s") from None
        except (OSError, ssl.SSLError, msgspec.DecodeError) as exc:
            raise BusUnavailable(f"could not connect to NATS at {host}:{port}: {exc}") from exc
        return cls(reader, writer)

    def subscribe(self, subject: str, sid: int) -> None:
        self._writer.write(f"SUB {subject} {sid}\r\n".encode())

    def publish(self, subject: str, reply: str, payload: bytes) -> None:
        self._writer.write(f"PUB {subject} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n")

    async def flush(self) -> None:
        await asyncio.wait_for(self._writer.drain(), _CONNECT_TIMEOUT_S)

    async def receive(self, timeout_s: float, out: list[Stored], statuses: list[tuple[int, str, int | None]]) -> int:
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
        pending = -1
        pos, size = 0, len(buf)
        find = buf.find
        while pos < size:
            eol = find(b"\r\n", pos)
            if eol < 0:
                break
            if buf.startswith(b"MSG ", pos):
                args = buf[pos + 4 : eol].split(b" ")
                end = eol + 2 + int(args[-1])
                if end + 2 > size:
                    break
                if len(args) == 4:
                    seq, time_ns, pending = _ack_fields(args[2])
                    out.append(Stored(seq, args[0].decode(), time_ns, buf[eol + 2 : end]))
                pos = end + 2
            elif buf.startswith(b"HMSG ", pos):
                args = buf[pos + 5 : eol].split(b" ")
                header_len, end = int(args[-2]), eol + 2 + int(args[-1])
                if end + 2 > size:
                    break
                headers = buf[eol + 2 : eol + 2 + header_len]
                if len(args) == 5 and args[2].startswith(b"$JS.ACK."):  # a stored message with headers
                    seq, time_ns, pending = _ack_fields(args[2])
                    out.append(Stored(seq, args[0].decode(), time_ns, buf[eol + 2 + header_len : end]))
                else:
                    statuses.append(_status(headers))
                pos = end + 2
            else:
                line = buf[pos:eol]
                pos = eol + 2
                if line == b"PING":
                    self._writer.write(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    raise BusUnavailable(f"NATS error: {line[5:].decode(errors='replace').strip()}")
                # PONG, +OK and INFO (cluster changes) need nothing from a reader.
        self._buf = buf[pos:]
        return pending

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)


def _ack_fields(reply: bytes) -> tuple[int, int, int]:
    """(stream seq, store time ns, pending) from a ``$JS.ACK.…`` reply subject (v1 or v2 layout)."""
    if reply.count(b".") == 8:  # v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        _, seq, _, time_ns, pending = reply.rsplit(b".", 4)
    else:  # v2 adds the domain and account hash after $JS.ACK, and may end with a random token
        tokens = reply.split(b".")
        seq, time_ns, pending = tokens[7], tokens[9], tokens[10]
    return int(seq), int(time_ns), int(pending)


def _status(headers: bytes) -> tuple[int, str, int | None]:
    """(code, description, pending messages of the ended request) from a status message's headers."""
    first, _, rest = headers.partition(b"\r\n")
    parts = first.decode(errors="replace").split(" ", 2)  # NATS/1.0 408 Request Timeout
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    pending: int | None = None
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"nats-pending-messages" and value.strip().isdigit():
            pending = int(value.strip())
    return code, parts[2] if len(parts) > 2 else "", pending


class PullReader:
    """Reads the stored messages matching `filter_subjects`, in stream order, in batches."""

    def __init__(
        self,
        bus: Bus,
        filter_subjects: Sequence[str],
        *,
        start: Start,
        follow: bool,
        stop_seq: int | None = None,
        batch: int = 5000,
        name: str = "switchboard-reader",
    ) -> None:
        if not filter_subjects:
            raise ValueError("a reader needs at least one subject filter")
        self._bus = bus
        self._filters = list(filter_subjects)
        self._start = start
        self._follow = follow
        self._stop_seq = stop_seq
        self._batch = batch
        self._name = name
        self._consumer: str | None = None
        self.last_seq = 0
        """The sequence of the last message delivered (0 before the first)."""
        self.pending_at_start: int | None = None
        """How many matching messages the first consumer had to deliver when it was made."""

    async def batches(self) -> AsyncIterator[list[Stored]]:
        """Batches of messages in order; ends when caught up (replay) or never (follow)."""
        failures = 0
        while True:
            try:
                async with contextlib.aclosing(self._read_once()) as reading:
                    async for batch in reading:
                        failures = 0
                        yield batch
                return
            except (BusUnavailable, nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                failures += 1
                if not self._follow and failures > 3:
                    raise BusUnavailable(f"replay failed after {failures} attempts: {exc}") from exc
                delay = min(0.2 * 2**failures, _RESUME_BACKOFF_MAX_S)
                log.warning("reader_resuming", after_seq=self.last_seq, error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
            finally:
                await self._delete_consumer()

    async def _create_consumer(self) -> int:
        start = Start(seq=self.last_seq + 1) if self.last_seq else self._start
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            inactive_threshold=_CONSUMER_IDLE_S,
            mem_storage=True,
            num_replicas=1,
            **start.consumer_fields(),  # type: ignore[arg-type]
        )
        if len(self._filters) == 1:
            config.filter_subject = self._filters[0]
        else:
            config.filter_subjects = self._filters
        info = await self._bus.js.add_consumer(events.STREAM, config, timeout=_CONNECT_TIMEOUT_S)
        self._consumer = info.name
        pending = int(info.num_pending or 0)
        if self.pending_at_start is None:
            self.pending_at_start = pending
        return pending

    async def _delete_consumer(self) -> None:
        name, self._consumer = self._consumer, None
        if name is not None and self._bus.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._bus.js.delete_consumer(events.STREAM, name), 2.0)

    def _request(self) -> bytes:
        expires_s = _EXPIRES_S if self._follow else _REPLAY_EXPIRES_S
        return msgspec.json.encode(
            {"batch": self._batch, "expires": int(expires_s * 1e9), "idle_heartbeat": int(self._heartbeat_s * 1e9)}
        )

    @property
    def _heartbeat_s(self) -> float:
        return _HEARTBEAT_S if self._follow else _REPLAY_HEARTBEAT_S

    async def _nothing_pending(self) -> bool:
        assert self._consumer is not None
        info = await self._bus.js.consumer_info(events.STREAM, self._consumer, timeout=_CONNECT_TIMEOUT_S)
        return int(info.num_pending or 0) == 0

    async def _read_once(self) -> AsyncGenerator[list[Stored], None]:
        url = self._bus.nc.connected_url
        if url is None:
            raise BusUnavailable("the bus is not connected")
        pending = await self._create_consumer()
        if not self._follow and pending == 0:
            return
        conn = await _Connection.open(url, name=self._name, credentials=self._bus.credentials)
        try:
            inbox = f"_INBOX.{uuid.uuid4().hex}"
            conn.subscribe(inbox, 1)
            next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{events.STREAM}.{self._consumer}"
            request = self._request()
            # Two requests in flight: the server fills the next while we parse this one. How much is still
            # asked for is tracked by count; an ended request's statuses say how much of it went unused.
            outstanding = 0
            idle_since_status = True
            while True:
                while outstanding < self._batch:
                    conn.publish(next_subject, inbox, request)
                    outstanding += self._batch
                await conn.flush()
                out: list[Stored] = []
                statuses: list[tuple[int, str, int | None]] = []
                try:
                    last_pending = await conn.receive(self._heartbeat_s * 3, out, statuses)
                except TimeoutError:
                    silent_s = self._heartbeat_s * 3
                    raise BusUnavailable(f"no message or heartbeat from the server in {silent_s}s") from None
                done = False
                if out:
                    idle_since_status = False
                    outstanding -= len(out)
                    if self._stop_seq is not None and out[-1].seq >= self._stop_seq:
                        out = [m for m in out if m.seq <= self._stop_seq]
                        done = True
                    if out:
                        self.last_seq = out[-1].seq
                        yield out
                    if not self._follow and last_pending == 0:
                        done = True
                for code, description, unused in statuses:
                    if code == 100:  # idle heartbeat: the consumer is alive
                        continue
                    if code in (404, 408):  # a request ended (expired) before it was filled
                        outstanding = max(0, outstanding - unused) if unused is not None else 0
                        if not self._follow and idle_since_status and await self._nothing_pending():
                            done = True  # replay: a whole request went by empty and nothing is pending
                        idle_since_status = True
                    elif code == 409:  # consumer deleted, leadership change, …: resume on a new one
                        raise ConsumerGone(f"consumer ended by the server: {code} {description}")
                    else:
                        raise BusUnavailable(f"pull request failed: {code} {description}")
                if done:
                    return
        finally:
            await conn.close()
