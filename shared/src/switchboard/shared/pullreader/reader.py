"""Reading the log in order: an ephemeral pull consumer per read, resumed after the last message.

How a read goes: an ephemeral consumer (acks off, in memory, removed by the server a minute after we
vanish) is created on the CALLS stream with the reader's subject filters and start point, so JetStream
filters server-side and a one-call replay never scans the other calls. In replay mode (``follow=False``)
the read ends when the consumer has nothing pending, or at `stop_seq`. In follow mode requests wait
(with idle heartbeats); if the heartbeats stop, the server ends the consumer, the connection drops or
the server sends something malformed, the reader makes a new consumer that starts after the last
sequence it delivered — the ordered-consumer guarantee: in order, no gaps, no repeats. A replay tries
that three times, then fails with one `BusUnavailable` naming the cause.

The messages come over the lean connection (`lean`, the fast path) or nats-py's public pull API
(``SWITCHBOARD_NATS_FAST_PATH=off``); both deliver the same batches of `Stored` messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import datetime

import msgspec
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger
from switchboard.shared.pullreader.lean import CONNECT_TIMEOUT_S, LeanConnection
from switchboard.shared.pullreader.protocol import Status, Stored, ack_fields

log = get_logger(__name__)

_HEARTBEAT_S = 2.0
_EXPIRES_S = 20.0
_REPLAY_EXPIRES_S = 5.0
_REPLAY_HEARTBEAT_S = 1.0
_RESUME_BACKOFF_MAX_S = 5.0
_CONSUMER_IDLE_S = 60.0


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
        info = await self._bus.js.add_consumer(events.STREAM, config, timeout=CONNECT_TIMEOUT_S)
        self._consumer = info.name
        pending = int(info.num_pending or 0)
        if self.pending_at_start is None:
            self.pending_at_start = pending
        return pending

    async def _delete_consumer(self) -> None:
        name, self._consumer = self._consumer, None
        if name is not None and self._bus.connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):  # not wait_for, which can swallow a cancellation on 3.11
                    await self._bus.js.delete_consumer(events.STREAM, name)

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
        info = await self._bus.js.consumer_info(events.STREAM, self._consumer, timeout=CONNECT_TIMEOUT_S)
        return int(info.num_pending or 0) == 0

    def _take(self, out: list[Stored], last_pending: int) -> tuple[list[Stored], bool]:
        """The messages of a read to deliver, and whether the read is over (`stop_seq`, or caught up)."""
        done = False
        if self._stop_seq is not None and out and out[-1].seq >= self._stop_seq:
            out = [m for m in out if m.seq <= self._stop_seq]
            done = True
        if out:
            self.last_seq = out[-1].seq
        return out, done or (not self._follow and last_pending == 0)

    async def _read_once(self) -> AsyncGenerator[list[Stored], None]:
        pending = await self._create_consumer()
        if not self._follow and pending == 0:
            return
        reading = self._read_lean() if self._bus.fast_path else self._read_public()
        async with contextlib.aclosing(reading):
            async for batch in reading:
                yield batch

    async def _read_lean(self) -> AsyncGenerator[list[Stored], None]:
        url = self._bus.nc.connected_url
        if url is None:
            raise BusUnavailable("the bus is not connected")
        conn = await LeanConnection.open(url, name=self._name, credentials=self._bus.credentials)
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
                statuses: list[Status] = []
                try:
                    last_pending = await conn.receive(self._heartbeat_s * 3, out, statuses)
                except TimeoutError:
                    silent_s = self._heartbeat_s * 3
                    raise BusUnavailable(f"no message or heartbeat from the server in {silent_s}s") from None
                done = False
                if out:
                    idle_since_status = False
                    outstanding -= len(out)
                    out, done = self._take(out, last_pending)
                    if out:
                        yield out
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

    async def _read_public(self) -> AsyncGenerator[list[Stored], None]:
        """The same read through nats-py's public API only (``SWITCHBOARD_NATS_FAST_PATH=off``)."""
        js = self._bus.js
        sub = await js.pull_subscribe_bind(consumer=self._consumer, stream=events.STREAM)
        wait_s = _EXPIRES_S if self._follow else self._heartbeat_s * 3
        try:
            while True:
                try:
                    msgs = await sub.fetch(self._batch, timeout=wait_s, heartbeat=self._heartbeat_s)
                except (TimeoutError, nats.errors.TimeoutError):
                    if not self._follow and await self._nothing_pending():
                        return
                    continue
                # The store time from the reply subject, to the nanosecond (nats-py's metadata rounds it).
                out = [_stored(m.reply, m.subject, m.data) for m in msgs if m.reply]
                if not out:
                    continue
                out, done = self._take(out, msgs[-1].metadata.num_pending)
                if out:
                    yield out
                if done:
                    return
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await sub.unsubscribe()


def _stored(reply: str, subject: str, data: bytes) -> Stored:
    seq, time_ns, _ = ack_fields(reply.encode())
    return Stored(seq, subject, time_ns, data)
