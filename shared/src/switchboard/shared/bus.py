"""The seam to NATS JetStream: connect, the CALLS stream, publishing, and the consumption modes.

Consumption modes are named things, each written once and reused by every service:

- `WorkQueue` — a durable pull consumer whose messages are claimed by one replica at a time; a handler
  returns an `Outcome` (`Ack`, `Retry`, `Drop`) and `settle` turns it into ack / nak(delay) / term.
  A message can also be held for a long time (a live call) with `Delivery.in_progress()` heartbeats.
- `Bus.follow` — an ordered consumer that replays and/or follows the log from a chosen point.

Every network await here has a timeout; a publish that is not acknowledged in time raises
`BusUnavailable`, so callers can answer 503 or retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from switchboard.shared import events
from switchboard.shared.config import Settings
from switchboard.shared.errors import AlreadyRecorded, BusUnavailable, NoResponder
from switchboard.shared.logging import get_logger

log = get_logger(__name__)

_WRONG_LAST_SEQUENCE = 10071
_STREAM_NAME_IN_USE = 10058
_CONNECT_BACKOFF_MAX_S = 5.0
ONE_SHOT_CONNECT_S = 3.0
"""How long a one-shot command (`switchboard calls`, `tail`, `policy push`…) tries to reach NATS."""
_FETCH_BATCH_MAX = 64


def split_credentials(url: str) -> tuple[list[str], dict[str, str]]:
    """``nats://user:pass@host:4222,nats://host2:4222`` → (URLs without credentials, connect options).

    Credentials go to the client as options so that every server of a cluster gets them (nats-py sends
    the ones in a URL only to that URL's server), and so that no log line or error ever shows them.
    """
    servers: list[str] = []
    credentials: dict[str, str] = {}
    for raw in url.split(","):
        parts = urlsplit(raw.strip())
        if parts.username is not None:
            if parts.password is not None:
                credentials.update(user=unquote(parts.username), password=unquote(parts.password))
            else:
                credentials.update(token=unquote(parts.username))
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        servers.append(urlunsplit((parts.scheme or "nats", netloc, parts.path, parts.query, "")))
    return servers, credentials


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    replicas: int = 1
    max_age_s: float = 7 * 24 * 3600.0
    duplicate_window_s: float = 120.0


class PublishResult(msgspec.Struct, frozen=True):
    seq: int
    duplicate: bool


class _PubAck(msgspec.Struct):
    """A JetStream publish acknowledgement: stored (``seq``), or an ``error``."""

    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_pub_ack = msgspec.json.Decoder(_PubAck)


class SentBatch:
    """A pipelined batch written out (`Bus.send_many`) and the acknowledgements it still waits for."""

    __slots__ = ("batch", "confirmed", "done", "remaining", "replies")

    def __init__(self, batch: Sequence[tuple[events.CloudEvent, str | None]], done: asyncio.Future[None]) -> None:
        self.batch = batch
        self.confirmed = [False] * len(batch)
        self.remaining = len(batch)
        self.done = done
        self.replies: list[str] = []


_NO_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


def _publish_frame(subject: str, reply: str, msg_id: str | None, payload: bytes) -> bytes:
    """One NATS protocol publish: ``HPUB`` with a ``Nats-Msg-Id`` header, or plain ``PUB`` without one.

    `subject` and `reply` are checked tokens (`events.subject`, the ack inbox); a message id comes
    partly from OpenAI's ``event_id``, so line breaks in it are blanked as nats-py does for headers.
    """
    if msg_id is None:
        return b"PUB %b %b %d\r\n%b\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
    header = b"NATS/1.0\r\nNats-Msg-Id: %b\r\n\r\n" % msg_id.translate(_NO_NEWLINES).strip().encode()
    size = len(header) + len(payload)
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject.encode(), reply.encode(), len(header), size, header, payload)


class _AckInbox:
    """One wildcard inbox on the connection that routes every pipelined publish's acknowledgement.

    nats-py's ``publish_async`` costs a future, a NUID and a stdlib JSON parse per message; a relaying
    worker publishes thousands of events a second, so `Bus.send_many` numbers its messages on this
    inbox instead, decodes acknowledgements with msgspec and wakes each batch once, when its last
    acknowledgement is in.
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.prefix = nc.new_inbox() + "."
        self._waiting: dict[str, tuple[SentBatch, int]] = {}
        self._next = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self.prefix + "*", cb=self._on_ack)

    def reply_to(self, pending: SentBatch, index: int) -> str:
        self._next += 1
        token = str(self._next)
        self._waiting[token] = (pending, index)
        return self.prefix + token

    def forget(self, replies: list[str]) -> None:
        start = len(self.prefix)
        for reply in replies:
            self._waiting.pop(reply[start:], None)

    async def _on_ack(self, msg: Msg) -> None:
        waiting = self._waiting.pop(msg.subject[len(self.prefix) :], None)
        if waiting is None:
            return  # late: its batch already timed out and published it again
        pending, index = waiting
        try:
            stored = _pub_ack.decode(msg.data).error is None if msg.data else False  # empty: a 503 status
        except (msgspec.DecodeError, msgspec.ValidationError):
            stored = False
        pending.confirmed[index] = stored
        pending.remaining -= 1
        if pending.remaining == 0 and not pending.done.done():
            pending.done.set_result(None)


# --- outcomes as data --------------------------------------------------------------------------------


class Ack(msgspec.Struct, frozen=True):
    """Done: remove the message from the consumer."""


class Retry(msgspec.Struct, frozen=True):
    """Not now: deliver it again after `delay_s` (bounded by the consumer's max_deliver)."""

    delay_s: float
    reason: str = ""


class Drop(msgspec.Struct, frozen=True):
    """Never: the message cannot be handled (poison); do not deliver it again."""

    reason: str


Outcome = Ack | Retry | Drop


class Delivery:
    """One message claimed from a `WorkQueue`: its decoded event, attempt number and settle actions."""

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.attempt: int = msg.metadata.num_delivered
        self.stream_seq: int = msg.metadata.sequence.stream
        self.subject: str = msg.subject

    def event(self) -> events.CloudEvent:
        return events.decode(self._msg.data)

    async def ack(self) -> None:
        await self._msg.ack()

    async def nak(self, delay_s: float | None = None) -> None:
        await self._msg.nak(delay=delay_s)

    async def term(self) -> None:
        await self._msg.term()

    async def in_progress(self) -> None:
        """Extend the claim by another ack-wait period (the lease heartbeat)."""
        await self._msg.in_progress()

    async def settle(self, outcome: Outcome) -> None:
        """Turn a handler's outcome into the matching JetStream acknowledgement."""
        if isinstance(outcome, Ack):
            await self.ack()
        elif isinstance(outcome, Retry):
            await self.nak(outcome.delay_s)
        else:
            await self.term()


Handler = Callable[[Delivery], Awaitable[Outcome]]


_TOP_UP_S = 0.05  # only asked for when messages are waiting: normally answered at once


async def fetch_ready(sub: JetStreamContext.PullSubscription, batch: int, timeout_s: float) -> list[Msg]:
    """Up to `batch` messages from a pull consumer, handed over as soon as there is one: the first is
    awaited (at most `timeout_s`, then a timeout error), the rest are only those already waiting.

    nats-py's own ``fetch(batch)`` can hold a message that arrives while it waits until `batch` have
    arrived or the request expires: with calls trickling in, a lone call waited up to the whole fetch
    timeout to be decided or claimed. So the first message is fetched alone; when the server says more
    are pending behind it, they follow in one more round trip (a burst still comes in two).
    """
    msgs = await sub.fetch(1, timeout=timeout_s)
    pending = msgs[-1].metadata.num_pending or 0
    if batch > 1 and pending > 0:
        with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
            msgs += await sub.fetch(min(batch - 1, pending), timeout=_TOP_UP_S)
    return msgs


class WorkQueue:
    """A durable pull consumer shared by all replicas of a service: each message goes to one of them."""

    def __init__(self, sub: JetStreamContext.PullSubscription, name: str) -> None:
        self._sub = sub
        self.name = name

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        """Up to `batch` messages, waiting at most `timeout_s` for the first; [] when none came."""
        try:
            msgs = await fetch_ready(self._sub, batch, timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        return [Delivery(m) for m in msgs]

    async def pending(self) -> int:
        """Messages not yet delivered to anyone (the backlog waiting to be claimed)."""
        info = await asyncio.wait_for(self._sub.consumer_info(), 2.0)
        return int(info.num_pending or 0)

    async def run(
        self, handler: Handler, stop: asyncio.Event, *, concurrency: int = 16, heartbeat_s: float | None = None
    ) -> None:
        """Feed messages to `handler` (at most `concurrency` at once) until `stop` is set.

        With `heartbeat_s`, a message whose handler is still working after that long is marked in
        progress every `heartbeat_s` (one timer for all of them): the consumer's ack wait can then be
        short, so a replica that dies mid-work has its messages redelivered to another within one ack
        wait, while a slow but living handler (OpenAI taking seconds) keeps its message.
        """
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        working: dict[Delivery, float] = {}  # delivery → when its handler started
        loop = asyncio.get_running_loop()

        async def handle(delivery: Delivery) -> None:
            working[delivery] = loop.time()
            try:
                outcome = await handler(delivery)
            except Exception:
                log.exception("handler_crashed", consumer=self.name, subject=delivery.subject)
                outcome = Retry(delay_s=min(2.0**delivery.attempt, 30.0), reason="handler crashed")
            finally:
                working.pop(delivery, None)
            try:
                await delivery.settle(outcome)
            except Exception as exc:  # the server redelivers after ack_wait; nothing is lost
                log.warning("settle_failed", consumer=self.name, subject=delivery.subject, error=str(exc))
            finally:
                slots.release()

        async def beat(every_s: float) -> None:
            while True:
                await asyncio.sleep(every_s)
                due = loop.time() - every_s
                for delivery, started in list(working.items()):
                    if started <= due:
                        with contextlib.suppress(Exception):  # a missed beat is survivable; the next may land
                            await delivery.in_progress()

        beats = asyncio.create_task(beat(heartbeat_s)) if heartbeat_s else None
        try:
            while not stop.is_set():
                await slots.acquire()
                # Ask for as many as there are free slots (one round trip for a burst, not one per message).
                free = 1
                while free < _FETCH_BATCH_MAX and not slots.locked():
                    await slots.acquire()
                    free += 1
                try:
                    deliveries = await self.fetch(free, timeout_s=0.5)
                except (nats.errors.Error, nats.js.errors.Error) as exc:
                    for _ in range(free):
                        slots.release()
                    log.warning("fetch_failed", consumer=self.name, error=str(exc))
                    await sleep_or_stop(stop, 1.0)
                    continue
                for _ in range(free - len(deliveries)):
                    slots.release()
                for delivery in deliveries:
                    task = asyncio.create_task(handle(delivery))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if beats is not None:
                beats.cancel()
                await asyncio.gather(beats, return_exceptions=True)


async def sleep_or_stop(stop: asyncio.Event, delay_s: float) -> None:
    """Wait `delay_s`, or less if `stop` is set meanwhile (a backoff that shutdown can cut short)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay_s)


class _Link:
    """The connection's history that callbacks update: whether it ever connected, how often it dropped."""

    __slots__ = ("connected_once", "disconnects")

    def __init__(self) -> None:
        self.disconnects = 0
        self.connected_once = False


def connected(bus: Bus | None) -> bool:
    """True when `bus` exists and is connected right now (what a service's readiness rests on)."""
    return bus is not None and bus.connected


class Bus:
    """A NATS connection with JetStream, speaking in `CloudEvent`s."""

    def __init__(self, nc: NATS, *, source: str, stream: StreamSettings) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.source = source
        self.stream_settings = stream
        self.stream_ready = False
        self._closing = asyncio.Event()
        self.credentials: dict[str, str] = {}  # from the URL, for readers that open their own connection
        self._acks: _AckInbox | None = None
        self._reconnected = asyncio.Event()  # set while connected (`connect` keeps it current)
        self._reconnected.set()
        self._link = _Link()

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str,
        source: str | None = None,
        stream: StreamSettings | None = None,
        give_up_after_s: float | None = None,
    ) -> Bus:
        """Connect, retrying with backoff until connected (or `give_up_after_s`); reconnect forever after.

        Until the first connection only one line is logged, by a service (one warning that it keeps
        trying); a one-shot caller (`give_up_after_s`) logs nothing and gets one `BusUnavailable` naming
        the URL, to print as its one line."""
        delay = 0.1
        loop = asyncio.get_running_loop()
        closing = asyncio.Event()  # set by close(): our own disconnect is not worth a warning
        link = _Link()
        connected = asyncio.Event()
        started = loop.time()

        async def on_error(exc: Exception) -> None:
            if link.connected_once:  # before that, the connect loop below says what is wrong, once
                log.warning("nats_error", error=str(exc) or type(exc).__name__)

        async def on_disconnected() -> None:
            connected.clear()
            link.disconnects += 1
            if not closing.is_set():
                log.warning("nats_disconnected")

        async def on_reconnected() -> None:
            connected.set()
            log.info("nats_reconnected")

        servers, credentials = split_credentials(url)
        while True:
            try:
                nc = await nats.connect(
                    servers=servers,
                    **credentials,
                    name=name,
                    connect_timeout=2,
                    allow_reconnect=True,
                    # Few tries here, so this loop's backoff and `give_up_after_s` stay in charge of the
                    # first connection; once connected, reconnect forever (set below).
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.5,
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                )
                nc.options["max_reconnect_attempts"] = -1  # never give up on a cluster we have reached
                link.connected_once = True
                bus = cls(nc, source=source or f"switchboard/{name}", stream=stream or StreamSettings())
                bus._closing = closing
                bus._reconnected = connected
                bus._link = link
                connected.set()
                bus.credentials = credentials
                return bus
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                if give_up_after_s is not None:
                    if loop.time() - started + delay > give_up_after_s:
                        raise BusUnavailable(f"could not connect to NATS at {','.join(servers)}: {exc}") from exc
                elif delay == 0.1:  # the first failure; the rest are the same until it connects
                    log.warning("nats_connect_failed", url=",".join(servers), error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _CONNECT_BACKOFF_MAX_S)

    @classmethod
    async def for_service(cls, settings: Settings, name: str) -> Bus:
        """Connect a service to ``NATS_URL`` with the stream settings from its configuration."""
        stream = StreamSettings(
            replicas=settings.stream_replicas,
            max_age_s=settings.stream_max_age_s,
            duplicate_window_s=settings.duplicate_window_s,
        )
        return await cls.connect(settings.require_nats_url(), name=name, stream=stream)

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    @property
    def disconnects(self) -> int:
        """How many times the connection has dropped: what a holder of leases compares to know that it
        may have missed messages (a claim of its call) while it was away."""
        return self._link.disconnects

    async def _until_connected(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for the connection to be up: nothing is handed to nats-py while it
        reconnects, whose buffer would write it after the reconnect, out of order with what is retried."""
        if self.nc.is_connected:
            return
        try:
            await asyncio.wait_for(self._reconnected.wait(), timeout_s)
        except TimeoutError:
            raise BusUnavailable(f"NATS not connected within {timeout_s:g}s") from None
        if not self.nc.is_connected:
            raise BusUnavailable("NATS not connected")

    async def close(self) -> None:
        """Close the connection. Not drain(): every publish here is already acknowledged, and nats-py's
        drain waits forever on pull subscriptions whose fetched messages it never marks done."""
        self._closing.set()
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5.0)

    # --- the stream ----------------------------------------------------------------------------------

    def _stream_config(self) -> StreamConfig:
        s = self.stream_settings
        return StreamConfig(
            name=events.STREAM,
            subjects=[f"{events.SUBJECT_ROOT}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=s.replicas,
            max_age=s.max_age_s,
            duplicate_window=s.duplicate_window_s,
            allow_direct=True,
        )

    async def ensure_stream(self) -> None:
        """Create the CALLS stream, or bring an existing one to this configuration. Idempotent."""
        config = self._stream_config()
        try:
            await self.js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != _STREAM_NAME_IN_USE:
                raise
            await self.js.update_stream(config)
        self.stream_ready = True

    async def stream_exists(self) -> bool:
        try:
            await self.js.stream_info(events.STREAM)
        except (nats.js.errors.NotFoundError, nats.errors.Error, TimeoutError):
            return False
        return True

    # --- writing -------------------------------------------------------------------------------------

    def event(
        self, call_id: str, kind: str, data: Any, *, event_id: str | None = None, lease: int | None = None
    ) -> events.CloudEvent:
        return events.make_event(call_id, kind, data, source=self.source, event_id=event_id, lease=lease)

    async def publish(
        self,
        event: events.CloudEvent,
        *,
        msg_id: str | None = None,
        expect_empty_subject: bool = False,
        timeout_s: float = 5.0,
    ) -> PublishResult:
        """Store `event` on ``calls.<subject>.<kind>`` and wait for the stream's acknowledgement.

        `msg_id` deduplicates within the stream's window. `expect_empty_subject` makes the publish
        conditional on the subject holding no event yet (raises `AlreadyRecorded` otherwise).
        """
        headers: dict[str, str] = {}
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        if expect_empty_subject:
            headers["Nats-Expected-Last-Subject-Sequence"] = "0"
        subj = events.subject(event.call_id, event.kind)
        await self._until_connected(timeout_s)
        try:
            ack = await self.js.publish(
                subj, events.encode(event), timeout=timeout_s, stream=events.STREAM, headers=headers or None
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise AlreadyRecorded(f"{subj} already holds an event") from exc
            raise BusUnavailable(f"publish to {subj} refused: {exc.description}") from exc
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"publish to {subj} not acknowledged: {type(exc).__name__}") from exc
        return PublishResult(seq=ack.seq, duplicate=bool(ack.duplicate))

    async def send_many(self, batch: Sequence[tuple[events.CloudEvent, str | None]]) -> SentBatch:
        """Store several events in order, pipelined: write them all out now, back to back on this
        connection (so the stream stores them in order), without waiting; `confirm` then waits once for
        all of their acknowledgements."""
        if self._acks is None:
            acks = _AckInbox(self.nc)
            await acks.start()
            self._acks = acks
        sent = SentBatch(batch, asyncio.get_running_loop().create_future())
        nc = self.nc
        frames: list[bytes] = []
        for i, (event, msg_id) in enumerate(batch):
            reply = self._acks.reply_to(sent, i)
            sent.replies.append(reply)
            payload = events.encode(event)
            if len(payload) <= nc.max_payload:
                frames.append(_publish_frame(events.subject(event.call_id, event.kind), reply, msg_id, payload))
            else:  # the server would drop the connection for it: left unconfirmed, `confirm` reports it
                sent.remaining -= 1
        if sent.remaining == 0:
            sent.done.set_result(None)
        try:
            if not nc.is_connected or nc.is_draining_pubs:  # never into the reconnect buffer
                raise nats.errors.ConnectionClosedError
            # The batch goes to the connection as one write: nats-py's publish() costs more per message
            # (header checks, a bytes join, a queue wake-up) than the relay does for the rest of it.
            await nc._send_command(b"".join(frames))
            await nc._flush_pending()
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("pipelined_publish_failed", error=str(exc) or type(exc).__name__)
            if not sent.done.done():
                sent.done.set_result(None)  # no acknowledgement will come: `confirm` publishes one by one
        return sent

    async def confirm(self, sent: SentBatch, *, timeout_s: float = 5.0) -> None:
        """Wait for a sent batch's acknowledgements, then publish again, one by one and in order, whatever
        was not stored (its ``Nats-Msg-Id`` makes that safe); `BusUnavailable` if one of those fails too."""
        if not sent.done.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sent.done, timeout_s)
        if self._acks is not None:
            self._acks.forget(sent.replies)
        for i, (event, msg_id) in enumerate(sent.batch):
            if not sent.confirmed[i]:
                await self.publish(event, msg_id=msg_id, timeout_s=timeout_s)
                sent.confirmed[i] = True

    async def record(
        self,
        call_id: str,
        kind: str,
        data: Any,
        *,
        msg_id: str | None = None,
        lease: int | None = None,
        timeout_s: float = 5.0,
    ) -> PublishResult:
        """Build and publish one event; `msg_id` defaults to ``<call_id>:<kind>`` (one per call)."""
        event = self.event(call_id, kind, data, lease=lease)
        return await self.publish(event, msg_id=msg_id or f"{call_id}:{kind}", timeout_s=timeout_s)

    # --- request/reply and plain subscriptions (commands, tools) -------------------------------------

    async def request(self, subject: str, payload: bytes, *, timeout_s: float) -> bytes:
        """A NATS request; raises `NoResponder` when nobody serves `subject`, `BusUnavailable` on timeout."""
        try:
            reply = await self.nc.request(subject, payload, timeout=timeout_s)
        except nats.errors.NoRespondersError:
            raise NoResponder(f"nobody serves {subject}") from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise BusUnavailable(f"no reply on {subject} within {timeout_s}s") from None
        except nats.errors.Error as exc:
            raise BusUnavailable(f"request on {subject} failed: {type(exc).__name__}") from exc
        return bytes(reply.data)

    async def serve(
        self, subject: str, handler: Callable[[str, bytes], Awaitable[bytes | None]], *, queue: str = ""
    ) -> Subscription:
        """Answer requests on `subject` (wildcards allowed) with `handler(subject, payload) -> reply`; a
        handler that returns None leaves the answer to another service serving the same subject."""

        async def on_msg(msg: Msg) -> None:
            try:
                reply = await handler(msg.subject, msg.data)
            except Exception as exc:
                log.exception("request_handler_crashed", subject=msg.subject)
                reply = msgspec.json.encode({"ok": False, "error": f"internal error: {type(exc).__name__}"})
            if msg.reply and reply is not None:
                with contextlib.suppress(nats.errors.Error):
                    await msg.respond(reply)

        return await self.nc.subscribe(subject, queue=queue, cb=on_msg)

    async def watch(self, subject: str, handler: Callable[[str, bytes], Awaitable[None]]) -> Subscription:
        """Receive every message published on `subject` from now on (core NATS, not replayed)."""

        async def on_msg(msg: Msg) -> None:
            await handler(msg.subject, msg.data)

        return await self.nc.subscribe(subject, cb=on_msg)

    async def key_value(self, bucket: str, *, ttl_s: float | None = None) -> KeyValue:
        """The KV bucket `bucket`, created (with this bus's replicas) if it does not exist yet."""
        try:
            return await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            config = KeyValueConfig(bucket=bucket, ttl=ttl_s, replicas=self.stream_settings.replicas)
            return await self.js.create_key_value(config)

    # --- reading -------------------------------------------------------------------------------------

    async def last_event(self, call_id: str, kind: str, timeout_s: float = 2.0) -> events.CloudEvent | None:
        """The newest event on ``calls.<call_id>.<kind>``, or None."""
        try:
            raw = await asyncio.wait_for(self.js.get_last_msg(events.STREAM, events.subject(call_id, kind)), timeout_s)
        except nats.js.errors.NotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"could not read {call_id}.{kind}: {type(exc).__name__}") from exc
        if raw.data is None:
            return None
        return events.decode(raw.data)

    async def work_queue(
        self, durable: str, filter_subject: str, *, ack_wait_s: float, max_deliver: int = -1
    ) -> WorkQueue:
        """Bind (creating if needed) the durable pull consumer `durable` on `filter_subject`."""
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=10_000,
        )
        # Create it, or bring an existing one to this configuration (an upgrade may shorten its ack wait).
        await self.js.add_consumer(events.STREAM, config)
        sub = await self.js.pull_subscribe(filter_subject, durable=durable, stream=events.STREAM, config=config)
        return WorkQueue(sub, durable)

    async def follow(
        self,
        filter_subject: str = f"{events.SUBJECT_ROOT}.>",
        *,
        since: datetime | None = None,
        from_start: bool = False,
    ) -> AsyncIterator[events.CloudEvent]:
        """Events on `filter_subject` in stream order: new ones, or from `since`, or from the start."""
        if from_start:
            policy, start = DeliverPolicy.ALL, None
        elif since is not None:
            policy, start = DeliverPolicy.BY_START_TIME, since
        else:
            policy, start = DeliverPolicy.NEW, None
        config = ConsumerConfig(deliver_policy=policy, opt_start_time=start)
        sub = await self.js.subscribe(
            filter_subject, stream=events.STREAM, ordered_consumer=True, config=config, idle_heartbeat=5.0
        )
        try:
            async for msg in sub.messages:
                try:
                    yield events.decode(msg.data)
                except msgspec.ValidationError as exc:
                    log.warning("undecodable_event", subject=msg.subject, error=str(exc))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
