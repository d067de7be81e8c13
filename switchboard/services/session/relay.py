"""Publishing one call's server events to the bus in order, with pipelined acknowledgements.

The sideband loop hands each event to `Relay.put` and goes back to reading at once; a single task per
call publishes whatever has queued up as one pipelined batch (`Bus.publish_many`) and awaits the
acknowledgements together. Order is kept (one connection, one publisher per call), every event keeps
its ``Nats-Msg-Id`` (so a re-attached worker's copies collapse), and `flush` waits until everything
handed over is stored — the call's ``ended`` is recorded only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec

from switchboard.services.session.telemetry import SessionMetrics
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger
from switchboard.shared.openai import ServerEvent

log = get_logger(__name__)

_BATCH_MAX = 256
_ATTEMPTS = 5
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
    def __init__(self, bus: Bus, call_id: str, lease: int, metrics: SessionMetrics) -> None:
        self._bus = bus
        self._call_id = call_id
        self._lease = lease
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[events.CloudEvent, str | None, float]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"relay-{self._call_id}")

    def put(self, server_event: ServerEvent) -> None:
        """Queue one server event for publishing; raises `BusUnavailable` if publishing has failed."""
        self._raise_if_failed()
        # The same OpenAI event seen by two holders across a re-attach is stored once.
        msg_id = None if server_event.event_id is None else f"{self._call_id}:{server_event.event_id}"
        envelope = self._bus.event(
            self._call_id,
            rt_kind(server_event.type),
            msgspec.Raw(server_event.raw),  # relayed as OpenAI sent it: no decode and re-encode
            event_id=msg_id,
            lease=self._lease,
        )
        self._queue.put_nowait((envelope, msg_id, time.perf_counter()))

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued event is stored."""
        assert self._task is not None
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait([joined, self._task], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        self._raise_if_failed()
        if not self._queue.empty() or self._queue._unfinished_tasks:  # type: ignore[attr-defined]
            raise BusUnavailable(f"events of {self._call_id} not stored within {timeout_s:g} s")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def _raise_if_failed(self) -> None:
        task = self._task
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            raise BusUnavailable(f"relaying {self._call_id} failed") from task.exception()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    await self._bus.publish_many([(envelope, msg_id) for envelope, msg_id, _ in batch])
                    break
                except BusUnavailable as exc:
                    if attempt == _ATTEMPTS:
                        log.error("relay_failed", call_id=self._call_id, events=len(batch), error=str(exc))
                        raise
                    await asyncio.sleep(0.2 * 2**attempt)
            now = time.perf_counter()
            for _, _, received in batch:
                self._metrics.relay_seconds.observe(now - received)
                self._queue.task_done()
            self._metrics.events_relayed.inc(len(batch))
