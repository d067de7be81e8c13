"""Publishing the calls' server events to the bus in order, with pipelined acknowledgements.

One `Publisher` per worker publishes for all the calls it holds: the sideband loops hand each event to
their call's `Relay` and go back to reading at once; the publisher writes whatever has queued up, from
every call, as one pipelined batch (`Bus.send_many`) and waits for that batch's acknowledgements
together (`Bus.confirm`) while the next batch is already being written. Batches are written one after
another on one connection, so each call's events are stored in the order they arrived; every event
keeps its ``Nats-Msg-Id`` (so a re-attached worker's copies collapse). An event whose acknowledgement
does not come is published again on its own (for up to `_RETRY_FOR_S`, longer than a clustered stream
takes to elect a new leader), and may then land after later events of its call.
`Relay.flush` waits until everything its call handed over is stored — the call's ``ended`` is recorded
only after that.

With a thousand live calls this costs one task wake-up, one future and one socket write per batch, not
per event; under load, batches are `_LINGER_S` apart (or `_BATCH_FULL` events) so that each carries many
events, of several calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec

from switchboard.session.telemetry import SessionMetrics
from switchboard.shared import events
from switchboard.shared.bus import Bus, SentBatch
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger
from switchboard.shared.openai import ServerEvent

log = get_logger(__name__)

_BATCH_MAX = 512
_IN_FLIGHT = 8  # batches written and still waiting for their acknowledgements
_LINGER_S = 0.020
"""Under load, at most one batch per this long unless `_BATCH_FULL` events are waiting, so that a batch
carries the events of several calls: a relayed event reaches the bus up to this much later (observers
only; the caller hears nothing of it), and nats-server wakes per batch instead of per call."""
_BATCH_FULL = 32
_RETRY_FOR_S = 20.0
"""How long a batch whose events were not all stored is published again before the relay gives up: longer
than a clustered stream takes to elect a new leader (5-7 s measured), so that does not lose events."""
_RETRY_DELAY_MAX_S = 2.0
_KINDS: dict[str, str] = {}


def rt_kind(type_: object) -> str:
    """The subject kind for a server event type (``rt.unknown`` for a type that is not a safe token)."""
    if not isinstance(type_, str):
        return "rt.unknown"
    kind = _KINDS.get(type_)
    if kind is None:
        kind = events.rt_kind(type_)
        try:
            events.subject("x", kind)
        except ValueError:
            kind = "rt.unknown"
        if len(_KINDS) < 1024:  # the known types, not whatever a peer may invent
            _KINDS[type_] = kind
    return kind


class Relay:
    """One call's side of the publisher: hand over its events, and wait until they are all stored."""

    def __init__(self, publisher: Publisher, call_id: str, lease: int, traceparent: str | None = None) -> None:
        self._publisher = publisher
        self._call_id = call_id
        self._lease = lease
        self._traceparent = traceparent  # the call's trace (the holder's span), in every message's headers
        self._outstanding = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.failure: BusUnavailable | None = None

    def put(self, server_event: ServerEvent) -> None:
        """Queue one server event for publishing; raises `BusUnavailable` if publishing has failed."""
        if self.failure is not None:
            raise self.failure
        # The same OpenAI event seen by two holders across a re-attach is stored once.
        msg_id = None if server_event.event_id is None else f"{self._call_id}:{server_event.event_id}"
        envelope = self._publisher.bus.event(
            self._call_id,
            rt_kind(server_event.type),
            msgspec.Raw(server_event.raw),  # relayed as OpenAI sent it: no decode and re-encode
            event_id=msg_id,
            lease=self._lease,
        )
        self._outstanding += 1
        self._idle.clear()
        self._publisher.put(self, envelope, msg_id, self._traceparent)

    def record(self, kind: str, data: Any, *, msg_id: str | None = None) -> None:
        """Queue one of the holder's own events (``session.claimed``, ``ended``…) behind the call's relayed
        ones, under this relay's lease; `msg_id` defaults to ``<call_id>:<kind>`` as `Bus.record`'s does.
        Stored in order with the rest, in the same batches; `flush` waits for it like for them."""
        if self.failure is not None:
            raise self.failure
        envelope = self._publisher.bus.event(self._call_id, kind, data, lease=self._lease)
        self._outstanding += 1
        self._idle.clear()
        self._publisher.put(self, envelope, msg_id or f"{self._call_id}:{kind}", self._traceparent)

    async def flush(self, timeout_s: float = _RETRY_FOR_S + 10.0) -> None:
        """Wait until every event handed over is stored; `BusUnavailable` if one could not be."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        if self.failure is not None:
            raise self.failure
        if self._outstanding:
            raise BusUnavailable(f"events of {self._call_id} not stored within {timeout_s:g} s")

    def _settled(self, count: int, failure: BusUnavailable | None) -> None:
        if failure is not None and self.failure is None:
            self.failure = failure
        self._outstanding -= count
        if self._outstanding == 0 or self.failure is not None:
            self._idle.set()


_Item = tuple[Relay, events.CloudEvent, str | None, str | None, float]


class Publisher:
    """The worker's one publisher of relayed events (see the module's docstring)."""

    def __init__(self, bus: Bus, metrics: SessionMetrics) -> None:
        self.bus = bus
        self._metrics = metrics
        self._queued: list[_Item] = []
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._slots = asyncio.Semaphore(_IN_FLIGHT)
        self._task: asyncio.Task[None] | None = None
        self._confirming: set[asyncio.Task[None]] = set()

    def relay(self, call_id: str, lease: int, traceparent: str | None = None) -> Relay:
        """A call's relay; `traceparent` (while tracing is on) goes in the headers of all its messages."""
        return Relay(self, call_id, lease, traceparent)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-publisher")

    async def stop(self) -> None:
        """Stop publishing; events not yet stored are left to the lease (the next holder relays on)."""
        tasks = [t for t in (self._task, *self._confirming) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    def put(self, relay: Relay, envelope: events.CloudEvent, msg_id: str | None, traceparent: str | None) -> None:
        self._queued.append((relay, envelope, msg_id, traceparent, time.perf_counter()))
        self._wake.set()
        if len(self._queued) >= _BATCH_FULL:
            self._full.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_write = 0.0
        while True:
            await self._wake.wait()
            linger = last_write + _LINGER_S - loop.time()
            if linger > 0 and len(self._queued) < _BATCH_FULL:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(linger):
                        await self._full.wait()
            last_write = loop.time()
            self._wake.clear()
            self._full.clear()
            while self._queued:
                await self._slots.acquire()
                batch, self._queued = self._queued[:_BATCH_MAX], self._queued[_BATCH_MAX:]
                try:
                    sent = await self.bus.send_many([(event, msg_id, trace) for _, event, msg_id, trace, _ in batch])
                except BaseException:
                    self._slots.release()
                    raise
                task = asyncio.create_task(self._confirm(batch, sent))
                self._confirming.add(task)
                task.add_done_callback(self._confirming.discard)

    async def _confirm(self, batch: list[_Item], sent: SentBatch) -> None:
        failure: BusUnavailable | None = None
        try:
            loop = asyncio.get_running_loop()
            give_up_at = loop.time() + _RETRY_FOR_S
            delay = 0.2
            while True:
                try:
                    await self.bus.confirm(sent)
                    break
                except BusUnavailable as exc:
                    if loop.time() + delay > give_up_at:
                        log.error("relay_failed", events=len(batch), error=str(exc))
                        failure = exc
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_DELAY_MAX_S)
        finally:
            self._slots.release()
        now = time.perf_counter()
        counts: dict[Relay, int] = {}
        for relay, _, _, _, received in batch:
            counts[relay] = counts.get(relay, 0) + 1
            if failure is None:
                self._metrics.relay_seconds.observe(now - received)
        for relay, count in counts.items():
            relay._settled(count, failure)
        if failure is None:
            self._metrics.events_relayed.inc(len(batch))
