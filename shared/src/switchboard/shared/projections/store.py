"""Where projections live: one NATS KV bucket per projection, a call's state under its call id.

Every write is a compare-and-set on the key's revision, so two writers (the projector and a rebuild)
never overwrite each other blindly: the loser re-reads and re-decides. Values are the states' JSON.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.projections import PROJECTIONS, Projection

S = TypeVar("S", bound=msgspec.Struct)

_TIMEOUT_S = 5.0
_SAID_DONE_WAIT_S = 0.5


class Conflict(Exception):
    """Someone else wrote the key since we read it."""


class ProjectionStore:
    """The projections' KV buckets on one bus."""

    def __init__(self, bus: Bus, projections: tuple[Projection[Any], ...] = PROJECTIONS, *, ttl_s: float | None = None):
        self._bus = bus
        self.projections = projections
        self._ttl_s = ttl_s
        self._buckets: dict[str, KeyValue] = {}

    async def open(self) -> ProjectionStore:
        """Bind (creating if needed) every projection's bucket."""
        for projection in self.projections:
            try:
                kv = await self._bus.key_value(projection.name, ttl_s=self._ttl_s, timeout_s=_TIMEOUT_S)
            except BusUnavailable as exc:
                raise BusUnavailable(
                    f"could not open KV bucket {projection.name} (the projector creates it: has it run, and may "
                    f"this NATS user read it?): {exc}"
                ) from exc
            self._buckets[projection.name] = kv
        return self

    def bucket(self, projection: Projection[Any]) -> KeyValue:
        return self._buckets[projection.name]

    async def get(self, projection: Projection[S], key: str) -> tuple[S | None, int]:
        """The stored state and its revision (None, 0 when absent)."""
        try:
            entry = await asyncio.wait_for(self.bucket(projection).get(key), _TIMEOUT_S)
        except nats.js.errors.KeyNotFoundError:
            return None, 0
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable(f"could not read {projection.name}/{key}: {exc}") from exc
        if not entry.value:
            return None, int(entry.revision or 0)
        return msgspec.json.decode(entry.value, type=projection.type), int(entry.revision or 0)

    async def save(self, projection: Projection[S], key: str, state: S, revision: int) -> int:
        """Write `state` if the key is still at `revision` (0: absent); the new revision. `Conflict` if not."""
        kv, value = self.bucket(projection), msgspec.json.encode(state)
        try:
            return await self._bus.kv_write(kv, key, value, last=revision, timeout_s=_TIMEOUT_S)
        except nats.js.errors.KeyWrongLastSequenceError as exc:
            raise Conflict(f"{projection.name}/{key} changed since revision {revision}") from exc
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable(f"could not write {projection.name}/{key}: {exc}") from exc

    async def all(self, projection: Projection[S]) -> dict[str, S]:
        """Every state in the projection's bucket, by key, as of the call (later writes may show too).

        Read up to the bucket's last revision when called, not until nats-py's watcher says it is done: it
        can say so before delivering anything, when the server answers its consumer lookup before the first
        entries arrive, and an empty answer would then look like an empty bucket."""
        states: dict[str, S] = {}
        try:
            info = await asyncio.wait_for(self._bus.js.stream_info(f"KV_{projection.name}"), _TIMEOUT_S)
            if not info.state.messages:
                return states
            last = int(info.state.last_seq)
            watcher = await self.bucket(projection).watchall()
            try:
                said_done = False  # nats-py's "the rest are new", which may come early: then read on a while
                while True:
                    try:
                        entry = await watcher.updates(  # type: ignore[no-untyped-call]
                            timeout=_SAID_DONE_WAIT_S if said_done else _TIMEOUT_S
                        )
                    except TimeoutError:
                        if said_done:  # and nothing more came: the last entry has expired since
                            break
                        raise
                    if entry is None:
                        said_done = True
                        continue
                    if entry.operation is None and entry.value:
                        states[entry.key] = msgspec.json.decode(entry.value, type=projection.type)
                    else:  # deleted or purged since it was written
                        states.pop(entry.key, None)
                    if int(entry.revision or 0) >= last:
                        break
            finally:
                await watcher.stop()  # type: ignore[no-untyped-call]
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable(f"could not list {projection.name}: {exc}") from exc
        return states

    async def purge(self, projection: Projection[Any]) -> None:
        """Remove every key of the projection (the bucket stays)."""
        try:
            await self._bus.js.purge_stream(f"KV_{projection.name}")
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise BusUnavailable(f"could not purge {projection.name}: {exc}") from exc
