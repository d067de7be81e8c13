"""The one way to consume messages that must be acknowledged: a durable pull consumer and its runner.

A handler gets a `Delivery` and returns what should happen to it, as data:

- `Ack()` — done: remove it from the consumer;
- `Retry(delay_s)` — not now: deliver it again after `delay_s` (an ordered consumer holds it and calls
  the handler again in place, so later messages never overtake it);
- `Drop(reason)` — never: it cannot be handled (poison), do not deliver it again;
- `InProgress()` — still being worked on: the handler's owner keeps the message, beats it with
  `Delivery.in_progress()` and settles it later (a session worker holds a call's message for the call's
  whole life). Nothing is sent for it: the message was just handed over, with a whole ack wait ahead
  of it, which the owner's first beat extends (so a handler returns it at once, not after working).

`WorkQueue.run` is the one loop that fetches, hands messages to the handler and settles them (a handler
that raises is retried with backoff). Every consumer of the project runs through it: the controller's
three queues, the session workers' claims, and `subscribe.Durable` (ordered, one message at a time).
Reading the log without acknowledgements (replay, live follow) is `shared.pullreader`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from switchboard.shared import events
from switchboard.shared.logging import get_logger
from switchboard.shared.outcomes import Ack, Drop, Outcome, Retry

log = get_logger(__name__)

_FETCH_BATCH_MAX = 64
_TOP_UP_S = 0.05  # only asked for when messages are waiting: normally answered at once


def crash_delay_s(attempt: int) -> float:
    """How long a message whose handler raised waits before its next attempt (doubling, at most 30 s)."""
    return min(0.2 * 2.0**attempt, 30.0)


class Delivery:
    """One message claimed from a `WorkQueue`: its decoded event, attempt number and settle actions.

    Settling it (`ack`, `nak`, `term`) or letting it go (`let_go`) frees its place in the runner that
    fetched it; `in_progress` only extends the claim.
    """

    __slots__ = ("_msg", "_settled", "attempt", "stream_seq", "subject")

    def __init__(self, msg: Msg, settled: Callable[[int], None] | None = None) -> None:
        self._msg = msg
        self._settled = settled
        self.attempt: int = msg.metadata.num_delivered
        self.stream_seq: int = msg.metadata.sequence.stream
        self.subject: str = msg.subject

    @property
    def data(self) -> bytes:
        return self._msg.data

    @property
    def headers(self) -> dict[str, str] | None:
        """The message's NATS headers (``traceparent`` among them, while tracing is on)."""
        return self._msg.headers

    def event(self) -> events.CloudEvent:
        return events.decode(self._msg.data)

    def let_go(self) -> None:
        """Stop holding it without settling: the server delivers it again once its ack wait runs out."""
        if self._settled is not None:
            self._settled(self.stream_seq)

    async def ack(self) -> None:
        try:
            await self._msg.ack()
        finally:
            self.let_go()

    async def nak(self, delay_s: float | None = None) -> None:
        try:
            await self._msg.nak(delay=delay_s)
        finally:
            self.let_go()

    async def term(self) -> None:
        try:
            await self._msg.term()
        finally:
            self.let_go()

    async def in_progress(self) -> None:
        """Extend the claim by another ack-wait period (the lease heartbeat)."""
        await self._msg.in_progress()

    async def settle(self, outcome: Outcome) -> None:
        """Turn a handler's outcome into the matching JetStream acknowledgement."""
        if isinstance(outcome, Ack):
            await self.ack()
        elif isinstance(outcome, Retry):
            await self.nak(outcome.delay_s)
        elif isinstance(outcome, Drop):
            await self.term()
        # InProgress: the owner beats it from here on (see the module's docstring); nothing to send now.


Handler = Callable[[Delivery], Awaitable[Outcome]]


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


async def sleep_or_stop(stop: asyncio.Event, delay_s: float) -> None:
    """Wait `delay_s`, or less if `stop` is set meanwhile (a backoff that shutdown can cut short)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay_s)


class WorkQueue:
    """A durable pull consumer: replicas running it on one name share its messages, each to one of them."""

    def __init__(self, sub: JetStreamContext.PullSubscription, name: str) -> None:
        self._sub = sub
        self.name = name
        self._held: set[int] = set()  # stream seqs fetched and not yet settled or let go
        self._freed = asyncio.Event()

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        """Up to `batch` messages, waiting at most `timeout_s` for the first; [] when none came."""
        try:
            msgs = await fetch_ready(self._sub, batch, timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        deliveries = [Delivery(m, self._release) for m in msgs]
        self._held.update(d.stream_seq for d in deliveries)
        return deliveries

    def _release(self, seq: int) -> None:
        self._held.discard(seq)
        self._freed.set()

    @property
    def held(self) -> int:
        """Messages fetched by this runner and not yet settled (handlers working, or owners holding)."""
        return len(self._held)

    async def pending(self) -> int:
        """Messages not yet delivered to anyone (the backlog waiting to be claimed)."""
        info = await asyncio.wait_for(self._sub.consumer_info(), 2.0)
        return int(info.num_pending or 0)

    async def unsubscribe(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._sub.unsubscribe(), 2.0)

    async def run(
        self,
        handler: Handler,
        stop: asyncio.Event,
        *,
        concurrency: int = 16,
        heartbeat_s: float | None = None,
        ordered: bool = False,
        max_attempts: int | None = None,
        fetch_batch: int = _FETCH_BATCH_MAX,
        fetch_wait_s: float = 0.5,
        linger_s: float = 0.0,
    ) -> None:
        """Feed messages to `handler` until `stop` is set, holding at most `concurrency` unsettled at once.

        Unordered, each message has its own task and a `Retry` is a ``nak`` with that delay. `ordered`
        hands the messages to the handler one at a time in stream order, and a `Retry` waits in place
        (the message marked in progress) and calls the handler again; after `max_attempts` the message
        is dropped with one log line (a subscriber must not stall forever on one event).

        With `heartbeat_s`, a message whose handler is still working after that long is marked in
        progress every `heartbeat_s` (one timer for all of them): the consumer's ack wait can then be
        short, so a replica that dies mid-work has its messages redelivered to another within one ack
        wait, while a slow but living handler (OpenAI taking seconds) keeps its message.

        With `linger_s`, a fetch that came back with room to spare is followed by that long a wait before
        the next one, so that messages which can wait a little (an ended call's capacity release) come many
        to a pull request instead of one each: fewer round trips per message under a steady trickle.

        A message fetched but not handled when `stop` is set is handed back at once (``nak``); on return
        every handler has finished and its outcome has been sent to the server.
        """
        tasks: set[asyncio.Task[None]] = set()
        working: dict[Delivery, float] = {}  # delivery → when its handler started
        loop = asyncio.get_running_loop()

        async def attempt(delivery: Delivery) -> Outcome:
            working[delivery] = loop.time()
            try:
                return await handler(delivery)
            except Exception:
                log.exception("handler_crashed", consumer=self.name, subject=delivery.subject)
                return Retry(delay_s=crash_delay_s(delivery.attempt), reason="handler crashed")
            finally:
                working.pop(delivery, None)

        async def settle(delivery: Delivery, outcome: Outcome) -> None:
            try:
                await delivery.settle(outcome)
            except Exception as exc:  # the server redelivers after ack_wait; nothing is lost
                log.warning("settle_failed", consumer=self.name, subject=delivery.subject, error=str(exc))

        async def handle(delivery: Delivery) -> None:
            await settle(delivery, await attempt(delivery))

        async def handle_in_order(delivery: Delivery) -> None:
            while True:
                outcome = await attempt(delivery)
                if not isinstance(outcome, Retry):
                    break
                if max_attempts is not None and delivery.attempt >= max_attempts:
                    log.error("message_dropped", consumer=self.name, subject=delivery.subject, reason=outcome.reason)
                    outcome = Drop(reason=f"gave up after {delivery.attempt} attempts: {outcome.reason}")
                    break
                with contextlib.suppress(Exception):
                    await delivery.in_progress()
                await sleep_or_stop(stop, outcome.delay_s)
                if stop.is_set():  # not handled: delivered again when the consumer next runs
                    outcome = Retry(delay_s=0)
                    break
                delivery.attempt += 1
            await settle(delivery, outcome)

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
                free = min(concurrency - len(self._held), fetch_batch)
                if free <= 0:
                    self._freed.clear()
                    waiting = asyncio.ensure_future(self._freed.wait())
                    stopping = asyncio.ensure_future(stop.wait())
                    await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
                    waiting.cancel()
                    stopping.cancel()
                    continue
                try:
                    deliveries = await self.fetch(free, timeout_s=fetch_wait_s)
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                    log.warning("fetch_failed", consumer=self.name, error=str(exc) or type(exc).__name__)
                    await sleep_or_stop(stop, 1.0)
                    continue
                if linger_s and deliveries and len(deliveries) < free:
                    await sleep_or_stop(stop, linger_s)  # let more gather for the next pull (see above)
                for delivery in deliveries:
                    if stop.is_set():  # fetched as we stopped: hand it back now rather than after ack wait
                        await settle(delivery, Retry(delay_s=0))
                    elif ordered:
                        await handle_in_order(delivery)
                    else:
                        task = asyncio.create_task(handle(delivery))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if beats is not None:
                beats.cancel()
                await asyncio.gather(beats, return_exceptions=True)
