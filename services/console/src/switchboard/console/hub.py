"""The console's one reader of the log, and its fan-out to every open page.

At start the hub loads the stored projections (call state and call records, from NATS KV) and catches up
from the log after the last event the projector acknowledged, then follows the log (the console's
`board.KINDS` only, filtered server-side). Each event is folded into the `Board` once and handed to every
subscriber (an open page's server-sent-event stream) as an `Item`, whose rendered frames are memoised so
twenty pages showing the same row cost one rendering. The last `ring_size` items are kept, so a page
that reconnects with ``Last-Event-ID`` (a stream sequence) gets exactly what it missed. A subscriber
that falls more than `max_backlog` items behind is dropped (its page reconnects and resumes from the
ring). Every `tick_s` the hub hands home pages a `Tick` (the charts).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import nats.errors
import nats.js.errors

from switchboard.console.board import KINDS, Board, Turn
from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.lifecycle import cancel_and_wait
from switchboard.shared.logging import get_logger
from switchboard.shared.projections import CALL_RECORDS, CALL_STATE
from switchboard.shared.projections.call_record import CallRecord
from switchboard.shared.projections.call_state import CallState
from switchboard.shared.projections.store import ProjectionStore
from switchboard.shared.schema import LogEvent
from switchboard.shared.subscribe import Selection, follow, replay

log = get_logger(__name__)

SELECTION = Selection(kinds=KINDS)
PROJECTOR_SUBSCRIPTION = "projector"
_TIMEOUT_S = 5.0


class Item:
    """One event the console read: the event, the call's new row state (if its row changed), frames."""

    __slots__ = ("_frames", "event", "seq", "state", "turn")

    def __init__(self, event: LogEvent, state: CallState | None, turn: Turn | None = None) -> None:
        self.seq = event.seq
        self.event = event
        self.state = state
        self.turn = turn  # a Live turn this event completed (Live sends only fragments)
        self._frames: dict[str, bytes | None] = {}

    def frame(self, key: str, render: Callable[[Item], bytes | None]) -> bytes | None:
        """`render(self)`, computed once per `key` however many pages show it."""
        if key not in self._frames:
            self._frames[key] = render(self)
        return self._frames[key]


class Tick:
    """A periodic update for the home pages (the charts), rendered once."""

    __slots__ = ("_frame",)

    def __init__(self) -> None:
        self._frame: bytes | None = None

    def frame(self, render: Callable[[], bytes]) -> bytes:
        if self._frame is None:
            self._frame = render()
        return self._frame


class Subscriber:
    """One open page's queue of items (of one call, or of every call when `call` is None)."""

    def __init__(self, call: str | None, *, max_backlog: int) -> None:
        self.call = call
        self.queue: asyncio.Queue[Item | Tick | None] = asyncio.Queue()
        self.overflowed = False
        self._max = max_backlog

    def offer(self, item: Item | Tick) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self._max:
            self.overflowed = True
            self.queue.put_nowait(None)  # wakes the page's stream, which ends it
            return
        self.queue.put_nowait(item)


class Hub:
    """Reads the log once and fans it out; see the module docstring."""

    def __init__(
        self,
        bus: Bus,
        *,
        ttl_s: float | None = None,
        ring_size: int = 50_000,
        max_backlog: int = 20_000,
        tick_s: float = 5.0,
    ) -> None:
        self._bus = bus
        self._ttl_s = ttl_s
        self.board = Board()
        self._ring: deque[Item] = deque(maxlen=ring_size)
        self._ring_floor = 0
        """Items at or below this sequence may be missing from the ring (read before it, or pushed out)."""
        self._subscribers: set[Subscriber] = set()
        self._max_backlog = max_backlog
        self._tick_s = tick_s
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.failed: BaseException | None = None

    # --- running ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the projections and start reading the log (`ready` is set once caught up)."""
        floor = await self._projector_floor()
        states: dict[str, CallState] = {}
        records: dict[str, CallRecord] = {}
        if floor:  # what the projector has applied is in its buckets; without one, read the whole log
            store = await ProjectionStore(self._bus, (CALL_STATE, CALL_RECORDS), ttl_s=self._ttl_s).open()
            states, records = await store.all(CALL_STATE), await store.all(CALL_RECORDS)
        self.board.load(states, records)
        self._ring_floor = floor
        log.info("console_loaded", calls=len(states), after_seq=floor)
        self._tasks = [
            asyncio.create_task(self._read(floor), name="console-hub-read"),
            asyncio.create_task(self._tick(), name="console-hub-tick"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        for subscriber in list(self._subscribers):
            subscriber.offer(Tick())  # wake every stream so it notices the shutdown
        self._tasks = []

    async def _projector_floor(self) -> int:
        """The last sequence the projector has applied (0: no projector has run; read the whole log)."""
        try:
            info = await self._bus.js.consumer_info(events.STREAM, PROJECTOR_SUBSCRIPTION, timeout=_TIMEOUT_S)
        except nats.js.errors.NotFoundError:
            return 0
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable(f"could not read the projector's position: {exc}") from exc
        floor = getattr(info.ack_floor, "stream_seq", 0)
        return int(floor or 0)

    async def _read(self, floor: int) -> None:
        try:
            last = floor
            async for event in replay(self._bus, SELECTION, after_seq=floor):
                self.publish(event)
                last = event.seq
            self.ready.set()
            log.info("console_caught_up", last_seq=last, calls=len(self.board.states))
            async for event in follow(self._bus, SELECTION, after_seq=last):
                self.publish(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the service sees it and stops
            self.failed = exc
            self.ready.set()
            raise

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            tick = Tick()
            for subscriber in list(self._subscribers):
                if subscriber.call is None:
                    subscriber.offer(tick)

    # --- fan-out ------------------------------------------------------------------------------------

    def publish(self, event: LogEvent) -> None:
        """Fold one event in and hand it to every subscriber it concerns."""
        turn = self.board.completed_turn(event)
        item = Item(event, self.board.apply(event), turn)
        if len(self._ring) == self._ring.maxlen:
            self._ring_floor = self._ring[0].seq
        self._ring.append(item)
        for subscriber in self._subscribers:
            if subscriber.call is None:
                if item.state is not None:
                    subscriber.offer(item)
            elif subscriber.call == event.call_id:
                subscriber.offer(item)

    @property
    def last_seq(self) -> int:
        """The last sequence read (what a page rendered now shows)."""
        return self.board.last_seq

    def subscribe(self, call: str | None) -> Subscriber:
        subscriber = Subscriber(call, max_backlog=self._max_backlog)
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def backlog(self, after: int, call: str | None) -> list[Item] | None:
        """The items after sequence `after` (of `call`, or those changing a row), or None when the ring no
        longer reaches back that far."""
        if after >= self.board.last_seq:
            return []
        if after < self._ring_floor:
            return None
        found: list[Item] = []
        for item in reversed(self._ring):
            if item.seq <= after:
                break
            if (call is None and item.state is not None) or (call is not None and item.event.call_id == call):
                found.append(item)
        found.reverse()
        return found

    async def call_events(self, call_id: str, *, after: int = 0) -> list[LogEvent]:
        """One call's events of the console's kinds from the log (server-side filtered to that call)."""
        selection = Selection(call=call_id, kinds=KINDS)
        found: list[LogEvent] = []
        async with asyncio.timeout(30):
            async for event in replay(self._bus, selection, after_seq=after or None):
                found.append(event)
        return found

    def check(self) -> None:
        """Raise what made the reader stop, if it did."""
        if self.failed is not None:
            raise self.failed
