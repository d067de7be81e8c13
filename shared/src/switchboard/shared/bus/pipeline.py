"""Pipelined publishing: many events written out back to back, their acknowledgements awaited once.

A relaying session worker stores thousands of events a second. `Pipeline.send` writes a batch out at
once, in order, without waiting; `Pipeline.confirm` then waits for all of its acknowledgements and
publishes again, one by one and in order, whatever was not stored (its ``Nats-Msg-Id`` makes that safe).

Two ways to write a batch, chosen by ``SWITCHBOARD_NATS_FAST_PATH`` (`Settings.nats_fast_path`):

- **fast** (the default): the batch goes to the connection as one write of ready-made ``HPUB`` frames,
  through two private nats-py calls (``Client._send_command``, ``Client._flush_pending``); their
  acknowledgements come back on one wildcard inbox and are decoded with msgspec. nats-py's
  ``publish_async`` costs a future, a NUID and a stdlib JSON parse per message, more than the relay
  does for the rest of it. nats-py is pinned by the lock, and `tests/unit/test_fast_paths.py` fails if
  the private signatures used here change.
- **public**: nats-py's ``JetStreamContext.publish_async``, one future per message. Slower, and only
  public API: the switch to turn to if a nats-py upgrade breaks the fast path.

One event on its own (`Bus.publish`: a decision, an outcome, a webhook) takes the fast path too,
`Pipeline.publish_one`: one frame, its acknowledgement on the same inbox, decoded with msgspec, where
nats-py's ``publish`` costs a NUID, a future in its request map and a stdlib JSON parse into a dataclass.

Both store the same messages (the tests run the golden logs through each).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from switchboard.shared import events
from switchboard.shared.logging import get_logger

log = get_logger(__name__)

Batch = Sequence[tuple[events.CloudEvent, str | None, str | None]]
"""Events to store, in order, each with its ``Nats-Msg-Id`` and its W3C ``traceparent`` header (or None)."""


class SentBatch:
    """A batch written out (`Pipeline.send`) and the acknowledgements it still waits for."""

    __slots__ = ("batch", "confirmed", "done", "futures", "remaining", "replies")

    def __init__(self, batch: Batch, done: asyncio.Future[None]) -> None:
        self.batch = batch
        self.confirmed = [False] * len(batch)
        self.remaining = len(batch)
        self.done = done
        self.replies: list[str] = []  # fast path: the inbox subjects its acknowledgements come to
        self.futures: list[asyncio.Future[Any]] = []  # public path: nats-py's acknowledgement futures

    def acknowledged(self, index: int, stored: bool) -> None:
        self.confirmed[index] = stored
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)

    def unconfirmed(self) -> list[tuple[int, events.CloudEvent, str | None, str | None]]:
        return [(i, *item) for i, item in enumerate(self.batch) if not self.confirmed[i]]


def _acknowledged(sent: SentBatch, index: int, future: asyncio.Future[Any]) -> None:
    sent.acknowledged(index, not future.cancelled() and future.exception() is None)


class PubError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct):
    """A JetStream publish acknowledgement (or its refusal, `error`)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: PubError | None = None


_pub_ack = msgspec.json.Decoder(PubAck)
_NO_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


def publish_frame(
    subject: str,
    reply: str,
    msg_id: str | None,
    payload: bytes,
    *,
    expect_last: int | None = None,
    traceparent: str | None = None,
) -> bytes:
    """One NATS protocol publish: ``HPUB`` with its headers, or plain ``PUB`` without any.

    `subject` and `reply` are checked tokens (`events.subject`, the ack inbox); a message id comes
    partly from OpenAI's ``event_id``, so line breaks in it are blanked as nats-py does for headers.
    `expect_last` adds ``Nats-Expected-Last-Subject-Sequence`` (stored only if the subject's last message
    is that one; 0: only if the subject is empty, as a KV create);
    `traceparent` (the W3C trace context, made by `tracing`) carries the message's trace.
    """
    if msg_id is None and expect_last is None and traceparent is None:
        return b"PUB %b %b %d\r\n%b\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
    header = b"NATS/1.0\r\n"
    if msg_id is not None:
        header += b"Nats-Msg-Id: %b\r\n" % msg_id.translate(_NO_NEWLINES).strip().encode()
    if expect_last is not None:
        header += b"Nats-Expected-Last-Subject-Sequence: %d\r\n" % expect_last
    if traceparent is not None:
        header += b"traceparent: %b\r\n" % traceparent.translate(_NO_NEWLINES).strip().encode()
    header += b"\r\n"
    size = len(header) + len(payload)
    return b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject.encode(), reply.encode(), len(header), size, header, payload)


def message_headers(
    msg_id: str | None, *, expect_last: int | None = None, traceparent: str | None = None
) -> dict[str, str]:
    """The headers `publish_frame` writes, for nats-py's own publish (the public path)."""
    headers: dict[str, str] = {}
    if msg_id is not None:
        headers["Nats-Msg-Id"] = msg_id.translate(_NO_NEWLINES).strip()
    if expect_last is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(expect_last)
    if traceparent is not None:
        headers["traceparent"] = traceparent
    return headers


class _AckInbox:
    """One wildcard inbox on the connection that routes every pipelined publish's acknowledgement."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self.prefix = nc.new_inbox() + "."
        self._waiting: dict[str, tuple[SentBatch, int]] = {}
        self._singles: dict[str, asyncio.Future[bytes]] = {}
        self._next = 0
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self.prefix + "*", cb=self._on_ack)

    def reply_to(self, pending: SentBatch, index: int) -> str:
        self._next += 1
        token = str(self._next)
        self._waiting[token] = (pending, index)
        return self.prefix + token

    def reply_for(self, future: asyncio.Future[bytes]) -> str:
        """An inbox subject whose acknowledgement (its raw payload) resolves `future`."""
        self._next += 1
        token = str(self._next)
        self._singles[token] = future
        return self.prefix + token

    def forget_single(self, reply: str) -> None:
        self._singles.pop(reply[len(self.prefix) :], None)

    def forget(self, replies: list[str]) -> None:
        start = len(self.prefix)
        for reply in replies:
            self._waiting.pop(reply[start:], None)

    async def _on_ack(self, msg: Msg) -> None:
        token = msg.subject[len(self.prefix) :]
        single = self._singles.pop(token, None)
        if single is not None:
            if not single.done():
                single.set_result(msg.data)
            return
        waiting = self._waiting.pop(token, None)
        if waiting is None:
            return  # late: its batch already timed out and published it again
        pending, index = waiting
        try:
            stored = _pub_ack.decode(msg.data).error is None if msg.data else False  # empty: a 503 status
        except (msgspec.DecodeError, msgspec.ValidationError):
            stored = False
        pending.acknowledged(index, stored)


class Pipeline:
    """Pipelined publishing on one connection, by the fast or the public path."""

    def __init__(self, nc: NATS, js: JetStreamContext, *, fast: bool) -> None:
        self._nc = nc
        self._js = js
        self.fast = fast
        self._acks: _AckInbox | None = None

    async def send(self, batch: Batch) -> SentBatch:
        """Write `batch` out now, in order, without waiting for acknowledgements."""
        sent = SentBatch(batch, asyncio.get_running_loop().create_future())
        try:
            if not self._nc.is_connected or self._nc.is_draining_pubs:  # never into the reconnect buffer
                raise nats.errors.ConnectionClosedError
            if self.fast:
                await self._send_frames(sent)
            else:
                await self._send_public(sent)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            log.warning("pipelined_publish_failed", error=str(exc) or type(exc).__name__)
            if not sent.done.done():
                sent.done.set_result(None)  # no acknowledgement will come: `confirm` publishes one by one
        if sent.remaining == 0 and not sent.done.done():
            sent.done.set_result(None)
        return sent

    async def _inbox(self) -> _AckInbox:
        if self._acks is None:
            acks = _AckInbox(self._nc)
            await acks.start()
            self._acks = acks
        return self._acks

    async def publish_one(
        self,
        subject: str,
        payload: bytes,
        msg_id: str | None,
        *,
        expect_last: int | None,
        timeout_s: float,
        traceparent: str | None = None,
    ) -> PubAck:
        """Store one message (fast path only): its acknowledgement, whatever it says; `TimeoutError` when
        none came in time; a `nats.errors.Error` when it could not be written."""
        nc = self._nc
        if len(payload) > nc.max_payload:
            raise nats.errors.MaxPayloadError
        if not nc.is_connected or nc.is_draining_pubs:  # never into the reconnect buffer
            raise nats.errors.ConnectionClosedError
        acks = await self._inbox()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        reply = acks.reply_for(future)
        try:
            frame = publish_frame(subject, reply, msg_id, payload, expect_last=expect_last, traceparent=traceparent)
            await nc._send_command(frame)
            await nc._flush_pending()
            data = await asyncio.wait_for(future, timeout_s)
        finally:
            acks.forget_single(reply)
        if not data:  # a status without a body: no stream answered (503)
            raise nats.errors.NoRespondersError
        try:
            return _pub_ack.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return PubAck(error=PubError(description="unreadable acknowledgement"))

    async def _send_frames(self, sent: SentBatch) -> None:
        acks = await self._inbox()
        nc = self._nc
        frames: list[bytes] = []
        for i, (event, msg_id, traceparent) in enumerate(sent.batch):
            reply = acks.reply_to(sent, i)
            sent.replies.append(reply)
            payload = events.encode(event)
            if len(payload) <= nc.max_payload:
                subject = events.subject(event.call_id, event.kind)
                frames.append(publish_frame(subject, reply, msg_id, payload, traceparent=traceparent))
            else:  # the server would drop the connection for it: left unconfirmed, `confirm` reports it
                sent.remaining -= 1
        await nc._send_command(b"".join(frames))
        await nc._flush_pending()

    async def _send_public(self, sent: SentBatch) -> None:
        for i, (event, msg_id, traceparent) in enumerate(sent.batch):
            payload = events.encode(event)
            if len(payload) > self._nc.max_payload:
                sent.remaining -= 1
                continue
            headers = message_headers(msg_id, traceparent=traceparent)
            future = await self._js.publish_async(
                events.subject(event.call_id, event.kind), payload, headers=headers or None
            )
            sent.futures.append(future)
            future.add_done_callback(functools.partial(_acknowledged, sent, i))

    async def wait(self, sent: SentBatch, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for a sent batch's acknowledgements, then stop waiting for the rest."""
        if not sent.done.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(sent.done), timeout_s)
        if self._acks is not None:
            self._acks.forget(sent.replies)
        for future in sent.futures:
            future.cancel()  # frees nats-py's slot for it; what it did not confirm is published again
