"""Subscribe to the call log: the public API for services built on Switchboard's events.

Three ways to read ``calls.>``, each yielding `LogEvent`s (typed payloads, see `shared.schema`):

- `follow(bus, selection, ...)` — live: events stored from now, or from a time / sequence / the start
  first; never ends. In order, no gaps, no repeats, across reconnects and server restarts.
- `replay(bus, selection, ...)` — history: the stored events from a point up to now (or `until`), then
  it ends. `replay_stored` gives the same as raw stored messages in batches (the fast path for exports).
- `Durable(bus, name, selection)` — a named subscription that remembers its position on the server: run
  it, stop it, restart it (another process, after a crash) and it resumes after the last event its
  handler finished. The handler may return what to do with the event (`Retry`, `Drop`; nothing means
  done). Delivery is **at least once**: each event is acknowledged after the handler returns, so an
  event being handled when the process died is delivered again after ``ack_wait_s``. For exactly-once
  *effects*, make the handler idempotent by `LogEvent.seq` (the stream sequence, unique and increasing; the
  projections keep the last applied seq per key) or by `LogEvent.id`.

A `Selection` picks events by call id and kind globs (``ended``, ``session.*``, ``rt.*``). It becomes
server-side subject filters (``calls.<id>.>``, ``calls.*.ended``) so JetStream sends only matching
events — a one-call replay reads that call's events, not the stream — and globs that subjects cannot
express (``*.done``) are applied here as well. Unknown kinds and malformed events are still delivered
(raw data, `LogEvent.problem` set) and logged: a subscriber never crashes on one.

`follow`, `replay` and `replay_stored` read through `shared.pullreader`; `Durable` runs on the bus's one
consumer runner (`shared.bus.consume.WorkQueue`), ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from switchboard.shared import events
from switchboard.shared.bus import Ack, Bus, Delivery, Drop, Outcome, Retry, WorkQueue
from switchboard.shared.errors import SwitchboardError
from switchboard.shared.logging import get_logger
from switchboard.shared.pullreader import PullReader, Start, Stored
from switchboard.shared.schema import LogEvent, from_stored

__all__ = [
    "EVERYTHING",
    "Drop",
    "Durable",
    "LogEvent",
    "Retry",
    "Selection",
    "Start",
    "Stored",
    "SubscriptionMismatch",
    "follow",
    "replay",
    "replay_stored",
]

log = get_logger(__name__)

_GLOB_CHARS = frozenset("*?[")


class SubscriptionMismatch(SwitchboardError):
    """A durable subscription exists on the server with a different selection."""


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """Which events to read: one call (or all) and kind globs (none = every kind)."""

    call: str | None = None
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.call is not None and not events.is_safe_call_id(self.call):
            raise ValueError(f"not a call id: {self.call!r}")

    def subjects(self) -> list[str]:
        """The JetStream subject filters for this selection (no two overlapping, as the server requires)."""
        call = self.call or "*"
        broad = [f"{events.SUBJECT_ROOT}.{call}.>"]
        if not self.kinds:
            return broad
        patterns: list[str] = []
        for kind in self.kinds:
            tokens = _kind_tokens(kind)
            if tokens is None:
                return broad
            patterns.append(".".join([events.SUBJECT_ROOT, call, *tokens]))
        return _without_overlaps(patterns)

    def matches(self, call_id: str, kind: str) -> bool:
        if self.call is not None and call_id != self.call:
            return False
        return not self.kinds or any(fnmatch.fnmatchcase(kind, k) for k in self.kinds)


EVERYTHING = Selection()
"""Every event of every call."""


def _kind_tokens(glob: str) -> list[str] | None:
    """Subject tokens matching exactly the kinds `glob` matches, or None if subjects cannot express it."""
    tokens = glob.split(".")
    for i, token in enumerate(tokens):
        if not token:
            return None
        if token == "*" and i == len(tokens) - 1:
            tokens[i] = ">"  # a glob's trailing * also spans dots: one or more tokens
        elif _GLOB_CHARS & set(token):
            return None
    return tokens


def _covers(wide: list[str], narrow: list[str]) -> bool:
    for i, token in enumerate(wide):
        if token == ">":
            return len(narrow) > i
        if i >= len(narrow) or (token != "*" and token != narrow[i]):
            return False
    return len(wide) == len(narrow)


def _without_overlaps(patterns: list[str]) -> list[str]:
    kept: list[list[str]] = []
    for tokens in sorted((p.split(".") for p in set(patterns)), key=len):
        if not any(_covers(k, tokens) for k in kept):
            kept = [k for k in kept if not _covers(tokens, k)] + [tokens]
    return sorted(".".join(k) for k in kept)


def _start(since: datetime | timedelta | None, from_start: bool, after_seq: int | None) -> Start:
    if after_seq is not None:
        return Start(seq=after_seq + 1)
    if isinstance(since, timedelta):
        since = datetime.now().astimezone() - since
    if since is not None:
        return Start(time=since)
    return Start(from_start=from_start)


def _typed(selection: Selection, batch: list[Stored]) -> Iterator[LogEvent]:
    # A generator, not a list: decoding one event at a time keeps few objects alive, which keeps the
    # garbage collector's passes short (a list of 10k decoded events made typed replay twice as slow).
    for stored in batch:
        event = from_stored(stored.seq, stored.subject, stored.data)
        if not selection.matches(event.call_id, event.kind):
            continue
        if event.problem is not None:
            log.warning("event_delivered_raw", seq=event.seq, subject=event.subject, problem=event.problem)
        yield event


async def replay_stored(
    bus: Bus,
    selection: Selection = EVERYTHING,
    *,
    since: datetime | timedelta | None = None,
    until: datetime | None = None,
    after_seq: int | None = None,
    stop_seq: int | None = None,
    batch: int = 10_000,
) -> AsyncIterator[list[Stored]]:
    """Batches of stored messages (raw bytes) from the start, `since` or `after_seq`, up to now or `until`.

    Filtering by kind glob is done server-side where subjects can express it, here otherwise. `until`
    compares the time JetStream stored each message (the log's order), `stop_seq` a stream sequence.
    """
    until_ns = int(until.timestamp() * 1e9) if until is not None else None
    exact = selection.kinds == () or all(_kind_tokens(k) is not None for k in selection.kinds)
    reader = PullReader(
        bus, selection.subjects(), start=_start(since, True, after_seq), follow=False, stop_seq=stop_seq, batch=batch
    )
    async for stored in reader.batches():
        if until_ns is not None and stored[-1].time_ns > until_ns:
            stored = [m for m in stored if m.time_ns <= until_ns]
            if stored:
                yield _filter_kinds(selection, stored, exact)
            return
        yield _filter_kinds(selection, stored, exact)


def _filter_kinds(selection: Selection, batch: list[Stored], exact: bool) -> list[Stored]:
    if exact:
        return batch
    return [m for m in batch if selection.matches(*events.parse_subject(m.subject))]


async def replay(
    bus: Bus,
    selection: Selection = EVERYTHING,
    *,
    since: datetime | timedelta | None = None,
    until: datetime | None = None,
    after_seq: int | None = None,
    stop_seq: int | None = None,
) -> AsyncIterator[LogEvent]:
    """The stored events of `selection` from the start (or `since` / after `after_seq`) up to now, `until`
    or the stream sequence `stop_seq`."""
    async for batch in replay_stored(bus, selection, since=since, until=until, after_seq=after_seq, stop_seq=stop_seq):
        for event in _typed(selection, batch):
            yield event


async def follow(
    bus: Bus,
    selection: Selection = EVERYTHING,
    *,
    since: datetime | timedelta | None = None,
    from_start: bool = False,
    after_seq: int | None = None,
) -> AsyncIterator[LogEvent]:
    """Events of `selection` as they are stored (first from `since`, the start or after `after_seq`). Never ends.

    After a reconnect, a server restart or a stalled consumer it resumes after the last event it
    delivered: in order, without gaps or repeats.
    """
    reader = PullReader(bus, selection.subjects(), start=_start(since, from_start, after_seq), follow=True, batch=1000)
    async for batch in reader.batches():
        for event in _typed(selection, batch):
            yield event


Handler = Callable[[LogEvent], Awaitable[Outcome | None]]
"""A subscriber's handler: return nothing (done), `Retry(delay_s)` or `Drop(reason)`; raising retries."""


class Durable:
    """A named, server-side subscription: restarts resume after the last event the handler finished.

    One JetStream durable pull consumer per name (explicit acks). Events are handed to the handler one
    at a time, in stream order. A handler that raises or returns `Retry` is called again (with backoff,
    or after the delay it asked for: the event is held, not skipped, so order is kept) up to
    `max_attempts`, then the event is logged and skipped; `Drop` skips it at once. Run one
    process per name for strict order; several processes on one name share the events between them.
    """

    def __init__(
        self,
        bus: Bus,
        name: str,
        selection: Selection = EVERYTHING,
        *,
        from_start: bool = True,
        ack_wait_s: float = 30.0,
        batch: int = 256,
        max_attempts: int = 5,
    ) -> None:
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError(f"a subscription name is letters, digits, - and _: {name!r}")
        self._bus = bus
        self.name = name
        self.selection = selection
        self._from_start = from_start
        self._ack_wait_s = ack_wait_s
        self._batch = batch
        self._max_attempts = max_attempts

    def _config(self) -> ConsumerConfig:
        subjects = self.selection.subjects()
        start = Start(from_start=self._from_start).consumer_fields()
        config = ConsumerConfig(
            durable_name=self.name,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            max_ack_pending=max(1000, self._batch * 4),
            **start,  # type: ignore[arg-type]
        )
        if len(subjects) == 1:
            config.filter_subject = subjects[0]
        else:
            config.filter_subjects = subjects
        return config

    async def _bind(self) -> JetStreamContext.PullSubscription:
        js = self._bus.js
        wanted = sorted(self.selection.subjects())
        try:
            info = await js.consumer_info(events.STREAM, self.name, timeout=5.0)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(events.STREAM, self._config(), timeout=5.0)
        else:
            existing = sorted(info.config.filter_subjects or ([info.config.filter_subject or ""]))
            if existing != wanted:
                raise SubscriptionMismatch(
                    f"subscription {self.name!r} exists with filters {existing}, not {wanted}: "
                    f"use another name, or delete it first"
                )
        return await js.pull_subscribe_bind(durable=self.name, stream=events.STREAM)

    async def pending(self) -> int:
        """Events stored but not yet handled by this subscription (0 if it does not exist yet)."""
        try:
            info = await self._bus.js.consumer_info(events.STREAM, self.name, timeout=5.0)
        except nats.js.errors.NotFoundError:
            return 0
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def delete(self) -> bool:
        """Forget this subscription's position on the server. True if it existed."""
        try:
            return bool(await self._bus.js.delete_consumer(events.STREAM, self.name))
        except nats.js.errors.NotFoundError:
            return False

    async def run(self, handler: Handler, stop: asyncio.Event) -> None:
        """Hand events to `handler` until `stop` is set; on return every handled event is acknowledged."""
        queue = WorkQueue(await self._bind(), self.name)

        async def handle(delivery: Delivery) -> Outcome:
            event = from_stored(delivery.stream_seq, delivery.subject, delivery.data)
            if not self.selection.matches(event.call_id, event.kind):
                return Ack()
            if event.problem is not None and delivery.attempt == 1:
                log.warning("event_delivered_raw", subscription=self.name, seq=event.seq, problem=event.problem)
            return await handler(event) or Ack()

        try:
            await queue.run(
                handle, stop, concurrency=self._batch, fetch_batch=self._batch, ordered=True,
                max_attempts=self._max_attempts, heartbeat_s=self._ack_wait_s / 3,
            )  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._bus.nc.flush(), 5.0)  # the acks reach the server before we go
            await queue.unsubscribe()
