"""`Bus`: a service's NATS connection with JetStream, speaking in `CloudEvent`s.

Connecting (with backoff, reconnecting forever once connected), the CALLS stream, publishing one event
(optionally conditional on an empty subject), pipelined batches (`pipeline`), request/reply and plain
subscriptions for commands and tools, KV buckets, reading the newest event of a subject, and binding the
durable consumers that `consume.WorkQueue` runs.

Every network await here has a timeout; a publish that is not acknowledged in time raises
`BusUnavailable`, so callers can answer 503 or retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
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

from switchboard.shared import events, tracing
from switchboard.shared.bus.consume import WorkQueue
from switchboard.shared.bus.pipeline import Batch, Pipeline, SentBatch, message_headers
from switchboard.shared.bus.urls import split_credentials
from switchboard.shared.config import Settings
from switchboard.shared.errors import AlreadyRecorded, BusUnavailable, ConfigError, NoResponder
from switchboard.shared.logging import get_logger

log = get_logger(__name__)

_WRONG_LAST_SEQUENCE = 10071
_STREAM_NAME_IN_USE = 10058
_CONNECT_BACKOFF_MAX_S = 5.0
ONE_SHOT_CONNECT_S = 3.0
"""How long a one-shot command (`switchboard calls`, `tail`, `policy push`…) tries to reach NATS."""
_NO_JETSTREAM_S = 3.0
_BIND_FOR_S = 30.0
"""How long binding a work queue is tried again while JetStream cannot answer (a cluster's new consumer
electing its leader can time the first request out): then one `BusUnavailable`."""
_BIND_DELAY_MAX_S = 2.0


class StreamSettings(msgspec.Struct, frozen=True, kw_only=True):
    replicas: int = 1
    max_age_s: float = 7 * 24 * 3600.0
    duplicate_window_s: float = 120.0


class PublishResult(msgspec.Struct, frozen=True):
    seq: int
    duplicate: bool


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

    def __init__(self, nc: NATS, *, source: str, stream: StreamSettings, fast_path: bool = True) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.source = source
        self.stream_settings = stream
        self.stream_ready = False
        self._closing = asyncio.Event()
        self.credentials: dict[str, str] = {}  # from the URL, for readers that open their own connection
        self.fast_path = fast_path
        """Pipelined publishing and log reading by their fast paths (`pipeline`, `pullreader`), or by
        nats-py's public API only (``SWITCHBOARD_NATS_FAST_PATH=off``)."""
        self.pipeline = Pipeline(nc, self.js, fast=fast_path)
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
        fast_path: bool = True,
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
                bus = cls(
                    nc, source=source or f"switchboard/{name}", stream=stream or StreamSettings(), fast_path=fast_path
                )
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
        return await cls.connect(
            settings.require_nats_url(), name=name, stream=stream, fast_path=settings.nats_fast_path
        )

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
        """Create the CALLS stream, or bring an existing one to this configuration. Idempotent.

        A server that keeps answering JetStream requests with "no responders" for `_NO_JETSTREAM_S` has
        JetStream off: that is a `ConfigError` saying to start it with ``-js`` (a cluster still electing
        its leader answers otherwise, and briefly)."""
        config = self._stream_config()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _NO_JETSTREAM_S
        while True:
            try:
                await self.js.add_stream(config)
                break
            except nats.js.errors.ServiceUnavailableError:
                if loop.time() > deadline:
                    url = self.nc.connected_url.geturl() if self.nc.connected_url else "the server"
                    raise ConfigError(
                        f"NATS at {url} has no JetStream: start nats-server with -js (or enable JetStream in its "
                        f"configuration)"
                    ) from None
                await asyncio.sleep(0.5)
                continue
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _STREAM_NAME_IN_USE:
                    raise
                await self.js.update_stream(config)
                break
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
        traceparent: str | None = None,
    ) -> PublishResult:
        """Store `event` on ``calls.<subject>.<kind>`` and wait for the stream's acknowledgement.

        `msg_id` deduplicates within the stream's window. `expect_empty_subject` makes the publish
        conditional on the subject holding no event yet (raises `AlreadyRecorded` otherwise). While
        tracing is on, the message carries a ``traceparent`` header: `traceparent`, else the current span's.
        """
        subj = events.subject(event.call_id, event.kind)
        await self._until_connected(timeout_s)
        if traceparent is None:
            traceparent = tracing.traceparent()
        if self.fast_path:
            return await self._publish_fast(subj, event, msg_id, expect_empty_subject, timeout_s, traceparent)
        expect_last = 0 if expect_empty_subject else None
        headers = message_headers(msg_id, expect_last=expect_last, traceparent=traceparent)
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

    async def _publish_fast(
        self,
        subj: str,
        event: events.CloudEvent,
        msg_id: str | None,
        expect_empty: bool,
        timeout_s: float,
        traceparent: str | None,
    ) -> PublishResult:
        try:
            ack = await self.pipeline.publish_one(
                subj, events.encode(event), msg_id, expect_last=0 if expect_empty else None, timeout_s=timeout_s,
                traceparent=traceparent,
            )  # fmt: skip
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"publish to {subj} not acknowledged: {type(exc).__name__}") from exc
        if ack.error is not None:
            if ack.error.err_code == _WRONG_LAST_SEQUENCE:
                raise AlreadyRecorded(f"{subj} already holds an event")
            raise BusUnavailable(f"publish to {subj} refused: {ack.error.description}")
        return PublishResult(seq=ack.seq, duplicate=ack.duplicate)

    async def send_many(self, batch: Batch) -> SentBatch:
        """Store several events in order, pipelined: write them all out now, back to back on this
        connection (so the stream stores them in order), without waiting; `confirm` then waits once for
        all of their acknowledgements."""
        return await self.pipeline.send(batch)

    async def confirm(self, sent: SentBatch, *, timeout_s: float = 5.0) -> None:
        """Wait for a sent batch's acknowledgements, then publish again, one by one and in order, whatever
        was not stored (its ``Nats-Msg-Id`` makes that safe); `BusUnavailable` if one of those fails too."""
        await self.pipeline.wait(sent, timeout_s)
        for i, event, msg_id, traceparent in sent.unconfirmed():
            await self.publish(event, msg_id=msg_id, timeout_s=timeout_s, traceparent=traceparent)
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
        """Build and publish one event; `msg_id` defaults to ``<call_id>:<kind>`` (one per call). While
        tracing is on, in a ``publish calls.{call_id}.<kind>`` PRODUCER span of the current trace."""
        event = self.event(call_id, kind, data, lease=lease)
        msg_id = msg_id or f"{call_id}:{kind}"
        with tracing.producer_span(call_id, kind, msg_id):
            return await self.publish(event, msg_id=msg_id, timeout_s=timeout_s)

    # --- request/reply and plain subscriptions (commands, tools) -------------------------------------

    async def request(self, subject: str, payload: bytes, *, timeout_s: float) -> bytes:
        """A NATS request; raises `NoResponder` when nobody serves `subject`, `BusUnavailable` on timeout."""
        headers: dict[str, str] = {}
        tracing.inject(headers)
        try:
            reply = await self.nc.request(subject, payload, timeout=timeout_s, headers=headers or None)
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

        template = _subject_template(subject)  # span names from the template, never a call id
        attributes = {"messaging.system": "nats", "messaging.destination.name": template}

        async def on_msg(msg: Msg) -> None:
            try:
                parent = tracing.extract(msg.headers)
                if parent is None:  # not part of a trace: the handler may put it in its call's
                    reply = await handler(msg.subject, msg.data)
                else:
                    with tracing.span(f"serve {template}", kind=tracing.SpanKind.SERVER, parent=parent,
                                      attributes=attributes):  # fmt: skip
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

    async def key_value(
        self,
        bucket: str,
        *,
        ttl_s: float | None = None,
        history: int = 1,
        max_value_size: int | None = None,
        description: str | None = None,
        timeout_s: float = 5.0,
    ) -> KeyValue:
        """The KV bucket `bucket`, created (with this bus's replicas) if it does not exist yet.

        The one way to get a bucket: two processes creating it at once both end up with it, and a server
        that does not answer within `timeout_s` raises `BusUnavailable`."""
        config = KeyValueConfig(
            bucket=bucket,
            description=description,
            ttl=ttl_s,
            history=history,
            max_value_size=max_value_size,
            replicas=self.stream_settings.replicas,
        )
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    return await self.js.key_value(bucket)
                except nats.js.errors.BucketNotFoundError:
                    pass
                try:
                    return await self.js.create_key_value(config)
                except nats.js.errors.BadRequestError:  # created by another process meanwhile
                    return await self.js.key_value(bucket)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable(f"KV bucket {bucket} unavailable: {str(exc) or type(exc).__name__}") from exc

    async def kv_write(self, kv: KeyValue, key: str, value: bytes, *, last: int, timeout_s: float = 2.0) -> int:
        """Write `key` of the bucket `kv` only if its revision is still `last` (0: only if the key was never
        written, or has expired): its new revision. nats-py's `KeyWrongLastSequenceError` when another
        write came first, `TimeoutError` or a `nats.errors.Error` when the server did not answer.

        On the fast path this is one frame and its acknowledgement on the shared inbox (as `publish`);
        nats-py's ``create``/``update`` cost a NUID, a future and a JSON parse each."""
        if not self.fast_path:
            return await asyncio.wait_for(kv.create(key, value) if last == 0 else kv.update(key, value, last=last),
                                          timeout_s)  # fmt: skip
        ack = await self.pipeline.publish_one(f"{kv._pre}{key}", value, None, expect_last=last, timeout_s=timeout_s)
        if ack.error is not None:
            if ack.error.err_code == _WRONG_LAST_SEQUENCE:
                raise nats.js.errors.KeyWrongLastSequenceError(description=ack.error.description)
            raise nats.js.errors.APIError(code=ack.error.code, err_code=ack.error.err_code,
                                          description=ack.error.description)  # fmt: skip
        return ack.seq

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
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + _BIND_FOR_S
        delay = 0.2
        while True:
            try:
                # Create it, or bring an existing one to this configuration (an upgrade may shorten its ack wait).
                await self.js.add_consumer(events.STREAM, config)
                sub = await self.js.pull_subscribe(filter_subject, durable=durable, stream=events.STREAM,
                                                   config=config)  # fmt: skip
                return WorkQueue(sub, durable)
            except (TimeoutError, nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError) as exc:
                if loop.time() + delay > give_up_at:
                    raise BusUnavailable(
                        f"could not bind the consumer {durable} within {_BIND_FOR_S:g} s: {type(exc).__name__}"
                    ) from None
                log.warning("consumer_bind_retry", consumer=durable, error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BIND_DELAY_MAX_S)


def _subject_template(subject: str) -> str:
    """A subscription's subject as a low-cardinality name: ``cmd.rtc_1.*`` → ``cmd.{call_id}.{verb}``."""
    tokens = subject.split(".")
    if tokens[0] == "cmd" and len(tokens) == 3:
        tokens[1:] = ["{call_id}", "{verb}" if tokens[2] == "*" else tokens[2]]
    return ".".join(tokens)
