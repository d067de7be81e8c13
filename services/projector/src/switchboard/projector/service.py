"""The projector: a service that follows the log and keeps the projections in NATS KV up to date.

It reads ``calls.>`` through the durable subscription ``projector`` (so a restart resumes where it
stopped), folds each event into the call's states with the pure evolve functions, and writes changed
states with a compare-and-set. Redelivered events change nothing (each state remembers its `last_seq`),
so at-least-once delivery gives exactly-once effects. Run one projector: events are applied in order.
States of recently active calls are cached; a conflicting write (a rebuild ran) drops the cache entry
and the event is re-applied to what is stored.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from switchboard.shared.bus import Bus, connected
from switchboard.shared.config import Settings
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.health import HealthServer
from switchboard.shared.logging import get_logger
from switchboard.shared.metrics import Metrics
from switchboard.shared.projections import PROJECTIONS, Projection
from switchboard.shared.projections.store import Conflict, ProjectionStore
from switchboard.shared.schema import LogEvent
from switchboard.shared.subscribe import EVERYTHING, Durable

log = get_logger(__name__)

SUBSCRIPTION = "projector"
_CACHE_SIZE = 10_000
_CAS_ATTEMPTS = 10


class Projector:
    """Follows the log durably and applies every event to the projections in KV."""

    name = "projector"

    def __init__(
        self, settings: Settings, *, bus: Bus | None = None, projections: tuple[Projection[Any], ...] = PROJECTIONS
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._owns_bus = bus is None
        self._projections = projections
        self._stop = asyncio.Event()
        self._store: ProjectionStore | None = None
        self._cache: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self.applied = 0
        self.ready = False
        self._metrics = Metrics("projector")
        self._applied = self._metrics.counter("events_applied", "Log events folded into the projections.")
        self._health = (
            HealthServer(self._metrics, lambda: self.ready and connected(self._bus), port=settings.health_port)
            if settings.health_port is not None
            else None
        )

    async def run(self) -> None:
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "projector")
        try:
            await self._bus.ensure_stream()
            self._store = await ProjectionStore(
                self._bus, self._projections, ttl_s=self._settings.stream_max_age_s
            ).open()
            log.info("projector_started", projections=[p.name for p in self._projections])
            if self._health is not None:
                await self._health.start()
            self.ready = True
            await Durable(self._bus, SUBSCRIPTION, EVERYTHING, batch=256).run(self.apply, self._stop)
        finally:
            self.ready = False
            if self._health is not None:
                await self._health.stop()
            if self._owns_bus:
                await self._bus.close()

    async def shutdown(self, grace: timedelta = timedelta(seconds=5)) -> None:
        self.ready = False
        self._stop.set()

    async def apply(self, event: LogEvent) -> None:
        """Fold one event into every projection it concerns (raises `BusUnavailable` to be retried)."""
        for projection in self._projections:
            if projection.relevant(event.kind) and event.call_id:
                await self._apply_one(projection, event)
        self.applied += 1
        self._applied.inc()

    async def _apply_one(self, projection: Projection[Any], event: LogEvent) -> None:
        assert self._store is not None
        key = (projection.name, event.call_id)
        for _ in range(_CAS_ATTEMPTS):
            cached = self._cache.get(key)
            state, revision = cached if cached is not None else await self._store.get(projection, event.call_id)
            new = projection.evolve(state, event)
            if new is None or new is state:
                self._remember(key, state, revision)
                return
            try:
                revision = await self._store.save(projection, event.call_id, new, revision)
            except Conflict:
                self._cache.pop(key, None)
                continue
            self._remember(key, new, revision)
            return
        raise BusUnavailable(f"{projection.name}/{event.call_id} keeps changing under the projector")

    def _remember(self, key: tuple[str, str], state: Any, revision: int) -> None:
        if state is None:
            return
        self._cache[key] = (state, revision)
        self._cache.move_to_end(key)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
