"""A holder's changes of its call's lease record when the bus does not answer (a stream leader lost)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest

from switchboard.session.fence import LEASES_BUCKET, Lease, Leases
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable, LeaseLost

LEASE_S = 1.5


class Unanswered(Leases):
    """Leases whose next `count` writes go unanswered: each lands first when `landing`, else never arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.count = 0
        self.landing = False

    def write(self, call_id: str, record: bytes, *, last: int) -> Coroutine[Any, Any, int]:
        if self.count == 0:
            return super().write(call_id, record, last=last)
        self.count -= 1
        return self._unanswered(super().write(call_id, record, last=last))

    async def _unanswered(self, writing: Coroutine[Any, Any, int]) -> int:
        if self.landing:
            await writing
        else:
            writing.close()
        raise BusUnavailable("no answer from the stream")


async def _claimed(bus: Bus, call_id: str, worker: str = "w1") -> tuple[Unanswered, Lease, list[str]]:
    leases = Unanswered(bus, await bus.key_value(LEASES_BUCKET), worker=worker, lease_s=LEASE_S)
    lost: list[str] = []
    lease, _ = await leases.claim(call_id, lambda: lost.append(worker))
    assert lease is not None
    return leases, lease, lost


async def test_a_change_whose_answer_was_lost_is_done_once_not_a_lost_lease(bus: Bus) -> None:
    """The write landed but its answer never came: the retry finds our own record and the change is done."""
    leases, lease, lost = await _claimed(bus, "rtc_landed")
    leases.count, leases.landing = 1, True
    record = await lease.change(greeted=True)
    assert record.greeted and not lease.lost and lost == []
    stored = await leases.kv.get("rtc_landed")
    assert stored.revision == lease.revision
    await lease.change(tools={})  # the holder goes on writing on the revision it now knows


async def test_a_change_lands_once_the_bus_answers_again(bus: Bus) -> None:
    """Two writes that never arrive, then the bus answers: the change is made, the lease still held."""
    leases, lease, lost = await _claimed(bus, "rtc_later")
    leases.count = 2
    assert (await lease.change(greeted=True)).greeted
    assert not lease.lost and lost == []


async def test_a_claim_by_another_worker_while_unanswered_loses_the_lease(bus: Bus) -> None:
    """Unanswered, then the record is another worker's: the change raises LeaseLost and nothing is written."""
    leases, lease, lost = await _claimed(bus, "rtc_taken")
    leases.count = 1
    other = Leases(bus, leases.kv, worker="w2", lease_s=LEASE_S)
    taken = await other.kv.get("rtc_taken")
    await other.write("rtc_taken", taken.value.replace(b'"w1"', b'"w2"'), last=taken.revision)
    with pytest.raises(LeaseLost):
        await lease.change(greeted=True)
    assert lost == ["w1"]
    assert b'"w2"' in (await leases.kv.get("rtc_taken")).value
