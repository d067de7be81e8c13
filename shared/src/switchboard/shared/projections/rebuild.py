"""Rebuild the projections from scratch: replay the log, fold it in memory, write every state to KV.

Safe while the projector runs. The log is read up to its last sequence S at the start (the fast replay
path, `subscribe.replay_stored`), folded with the same pure evolve functions as the projector, and each
state is written with a compare-and-set. A key the projector wrote since the purge (an event after S,
or one it applied to the empty bucket) is settled by folding that call's events after the rebuilt state
onto it — so the result is what a projector that had run from the first event would hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import nats.errors
import nats.js.errors

from switchboard.shared import events
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.projections import PROJECTIONS, Projection, fold
from switchboard.shared.projections.store import Conflict, ProjectionStore
from switchboard.shared.schema import from_stored
from switchboard.shared.subscribe import Selection, replay, replay_stored

Progress = Callable[[int, int], None]
"""progress(events read, events to read)"""

_WRITE_WINDOW = 2000


async def rebuild(
    bus: Bus,
    projections: tuple[Projection[Any], ...] = PROJECTIONS,
    *,
    ttl_s: float | None = None,
    progress: Progress | None = None,
) -> int:
    """Recompute `projections` from the whole log into their KV buckets; returns the events read."""
    store = await ProjectionStore(bus, projections, ttl_s=ttl_s).open()
    try:
        info = await bus.js.stream_info(events.STREAM)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
        raise BusUnavailable(f"could not read the {events.STREAM} stream: {exc}") from exc
    last_seq, total = int(info.state.last_seq), int(info.state.messages)
    for projection in projections:
        await store.purge(projection)
    states: dict[str, dict[str, Any]] = {p.name: {} for p in projections}
    read = 0
    async for batch in replay_stored(bus, stop_seq=last_seq):
        for stored in batch:
            kind = stored.subject.split(".", 2)[-1]
            wanting = [p for p in projections if p.relevant(kind)]
            if not wanting:
                continue
            event = from_stored(stored.seq, stored.subject, stored.data)
            for projection in wanting:
                new = projection.evolve(states[projection.name].get(event.call_id), event)
                if new is not None:
                    states[projection.name][event.call_id] = new
        read += len(batch)
        if progress is not None:
            progress(read, total)
    for projection in projections:
        await _write_all(bus, store, projection, states[projection.name])
    return read


async def _write_all(bus: Bus, store: ProjectionStore, projection: Projection[Any], states: dict[str, Any]) -> None:
    """Create every key, a window of writes in flight at once; settle the few the projector wrote meanwhile
    one by one. (Not nats-py's ``publish_async``: its future never completes when the server refuses the
    write, as it does for a key the projector created first.)"""
    kv = store.bucket(projection)
    conflicts: list[str] = []
    items = list(states.items())
    for start in range(0, len(items), _WRITE_WINDOW):
        window = items[start : start + _WRITE_WINDOW]
        results = await asyncio.gather(
            *(bus.kv_write(kv, key, msgspec.json.encode(state), last=0, timeout_s=10.0) for key, state in window),
            return_exceptions=True,
        )
        for (key, _), result in zip(window, results, strict=True):
            if isinstance(result, nats.js.errors.KeyWrongLastSequenceError):
                conflicts.append(key)  # the key exists again
            elif isinstance(result, (TimeoutError, nats.errors.Error)):
                raise BusUnavailable(f"could not write {projection.name}/{key}: {result}") from result
            elif isinstance(result, BaseException):
                raise result
    for key in conflicts:
        await _settle(bus, store, projection, key, states[key])


async def _settle(bus: Bus, store: ProjectionStore, projection: Projection[Any], key: str, rebuilt: Any) -> None:
    for _ in range(10):
        stored, revision = await store.get(projection, key)
        state = rebuilt
        if stored is not None and stored.last_seq > rebuilt.last_seq:
            later = [e async for e in replay(bus, Selection(call=key), after_seq=rebuilt.last_seq)]
            state = fold(projection, later, {key: rebuilt})[key]
        try:
            await store.save(projection, key, state, revision)
            return
        except Conflict:
            continue
    raise BusUnavailable(f"could not settle {projection.name}/{key}: it keeps changing")
