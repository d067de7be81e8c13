"""The leases bucket at the edge: claiming a call's record and fencing every change its holder makes.

`Leases.claim` compare-and-sets the call's record (see `lease` for the rules); the `Lease` it returns is
this worker's hold on the call. `Lease.fence()` raises `LeaseLost` once another worker holds the call
(reading the record only when the heartbeats cannot vouch for it), and `Lease.change()` writes the
record conditionally on the revision this holder last wrote, so a worker that lost the call can never
change what the new holder relies on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchboard.session.lease import (
    ClaimPlan,
    LeaseRecord,
    first_claim,
    lease_ran_out,
    plan_claim,
    still_fresh,
)
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable, LeaseLost

LEASES_BUCKET = "switchboard_leases"
_KV_TIMEOUT_S = 2.0
CHANGE_RETRY_S = 15.0
"""How long a change of the record is tried again while the bus does not answer (a clustered stream
elects a new leader in 5-7 s)."""
_decode = msgspec.json.Decoder(LeaseRecord).decode
_encode = msgspec.json.Encoder().encode


async def _kv(request: Any, what: str) -> Any:
    try:
        return await asyncio.wait_for(request, _KV_TIMEOUT_S)
    except (KeyNotFoundError, KeyWrongLastSequenceError):
        raise
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"lease of {what} unreadable: {type(exc).__name__}") from exc


class Lease:
    """This worker's hold on one call: its fencing token, and the proof that it still holds it."""

    def __init__(
        self,
        leases: Leases,
        call_id: str,
        record: LeaseRecord,
        revision: int,
        on_lost: Callable[[], None],
        *,
        since: float,
    ) -> None:
        self._leases = leases
        self.call_id = call_id
        self.record = record
        self.revision = revision
        self.lost = False
        self._on_lost = on_lost
        self._lock = asyncio.Lock()  # one change at a time: each writes on the revision the last one made
        self._renewed_at = since  # the delivery that brought the claim is ours for a lease from about then
        self._confirm(since)

    @property
    def token(self) -> int:
        return self.record.token

    def _confirm(self, at: float) -> None:
        self._confirmed_at = at
        self._epoch = self._leases.bus.disconnects

    def expired(self, now: float) -> bool:
        """No heartbeat reached the server for a whole lease: it has handed (or will hand) the call on."""
        return lease_ran_out(now=now, renewed_at=self._renewed_at, lease_s=self._leases.lease_s)

    def redelivered(self, now: float) -> None:
        """The call's message came back to this worker: a new delivery, renewed from now."""
        self._renewed_at = now

    def fresh(self, now: float) -> bool:
        """Certainly still ours at `now` without reading the record (see `lease.still_fresh`)."""
        return (
            not self.lost
            and not self.expired(now)
            and still_fresh(
                now=now,
                confirmed_at=self._confirmed_at,
                lease_s=self._leases.lease_s,
                epoch=self._epoch,
                current_epoch=self._leases.bus.disconnects,
            )
        )

    def beat_landed(self, sent_at: float) -> None:
        """A heartbeat sent at `sent_at` reached the server: renew the delivery and extend the proof, each
        only if it had not lapsed by then."""
        if self.fresh(sent_at):
            self._confirmed_at = sent_at
        if not self.expired(sent_at):
            self._renewed_at = sent_at

    def lose(self) -> None:
        """Another worker holds the call: stop (once)."""
        if not self.lost:
            self.lost = True
            self._on_lost()

    async def verify(self) -> None:
        """Read the record: `LeaseLost` if another claim is stored; else the lease is proven ours now."""
        now = asyncio.get_running_loop().time()
        if self.expired(now):  # paused or cut off past the lease: the call is someone else's to claim
            self.lose()
            raise LeaseLost(f"the lease of {self.call_id} ran out")
        try:
            entry = await _kv(self._leases.kv.get(self.call_id), self.call_id)
        except KeyNotFoundError:
            self.lose()
            raise LeaseLost(f"the lease of {self.call_id} is gone") from None
        stored = _decode(entry.value)
        if stored.token != self.token or stored.worker != self.record.worker:
            self.lose()
            raise LeaseLost(f"{stored.worker} holds {self.call_id} now (lease {stored.token})")
        self._confirm(now)

    async def fence(self) -> None:
        """Return only while this worker holds the call: `LeaseLost` when not, `BusUnavailable` when it
        cannot be known now. Free while the heartbeats land; one read of the record after a gap."""
        if self.lost:
            raise LeaseLost(f"lost {self.call_id}")
        if not self.fresh(asyncio.get_running_loop().time()):
            await self.verify()

    async def change(self, **fields: Any) -> LeaseRecord:
        """Write the record with `fields` changed, only if nobody claimed the call since our last write.

        A write the bus does not answer (a stream leader lost mid-call) is tried again with backoff for
        up to `CHANGE_RETRY_S`, longer than a clustered stream takes to elect a new leader; if a retry
        then finds the record moved on, it is read back: our own unanswered write having landed counts as
        done (so the greeting is still sent once), anything else is a claim by another worker
        (`LeaseLost`). `BusUnavailable` when the bus stays unavailable that long."""
        async with self._lock:
            if self.lost:
                raise LeaseLost(f"lost {self.call_id}")
            new = msgspec.structs.replace(self.record, **fields)
            encoded = _encode(new)
            loop = asyncio.get_running_loop()
            give_up_at = loop.time() + CHANGE_RETRY_S
            delay = 0.1
            unanswered = False  # an earlier attempt may have landed without our hearing of it
            while True:
                now = loop.time()
                try:
                    self.revision = await _kv(
                        self._leases.write(self.call_id, encoded, last=self.revision), self.call_id
                    )
                    break
                except KeyWrongLastSequenceError:
                    if unanswered and await self._landed(new):
                        break
                    self.lose()
                    raise LeaseLost(f"{self.call_id} was claimed by another worker") from None
                except BusUnavailable:
                    if self.lost or loop.time() + delay > give_up_at:
                        raise
                    unanswered = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            self.record = new
            self._confirm(now)
            return new

    async def _landed(self, new: LeaseRecord) -> bool:
        """Whether the stored record is exactly `new` (a write of ours that landed unanswered); if so, its
        revision becomes ours."""
        try:
            entry = await _kv(self._leases.kv.get(self.call_id), self.call_id)
        except KeyNotFoundError:
            return False
        if _decode(entry.value) != new:
            return False
        self.revision = entry.revision
        return True


class Leases:
    """The leases bucket, for one worker."""

    def __init__(self, bus: Bus, kv: KeyValue, *, worker: str, lease_s: float) -> None:
        self.bus = bus
        self.kv = kv
        self.worker = worker
        self.lease_s = lease_s

    def write(self, call_id: str, record: bytes, *, last: int) -> Coroutine[Any, Any, int]:
        """Write the call's record only if its revision is still `last` (0: a first claim)."""
        return self.bus.kv_write(self.kv, call_id, record, last=last, timeout_s=_KV_TIMEOUT_S)

    @classmethod
    async def open(cls, bus: Bus, *, worker: str, lease_s: float, ttl_s: float) -> Leases:
        return cls(bus, await bus.key_value(LEASES_BUCKET, ttl_s=ttl_s), worker=worker, lease_s=lease_s)

    async def claim(self, call_id: str, on_lost: Callable[[], None]) -> tuple[Lease | None, ClaimPlan]:
        """Claim `call_id`: (the lease, the plan), or (None, plan) when the call ended (`plan.skip`) or
        another worker claimed it at the same moment (`plan.skip` false: leave the delivery alone)."""
        since = asyncio.get_running_loop().time()
        first = first_claim(self.worker)
        try:
            revision = await _kv(self.write(call_id, _encode(first), last=0), call_id)
            return Lease(self, call_id, first, revision, on_lost, since=since), ClaimPlan(record=first)
        except KeyWrongLastSequenceError:
            pass  # held before: take it over from what is stored
        try:
            entry = await _kv(self.kv.get(call_id), call_id)
        except KeyNotFoundError:
            raise BusUnavailable(f"the lease of {call_id} vanished while claiming") from None
        plan = plan_claim(self.worker, _decode(entry.value))
        if plan.skip:
            return None, plan
        try:
            revision = await _kv(self.write(call_id, _encode(plan.record), last=entry.revision), call_id)
        except KeyWrongLastSequenceError:
            return None, plan  # another worker's claim landed first: it holds the call
        return Lease(self, call_id, plan.record, revision, on_lost, since=since), plan
