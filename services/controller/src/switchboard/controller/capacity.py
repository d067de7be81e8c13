"""Live calls per capped rule, counted cluster-wide in NATS KV.

One key per rule with a ``max_live_calls`` (bucket ``switchboard_capacity``) holds the calls live on it,
as a JSON object: call id → when it was admitted (Unix seconds). Every change is a compare-and-set on
the key's revision, so controller replicas never over-admit: two racing decisions for the last slot
cannot both add themselves. Keyed by call id (not counters), every step is idempotent across
redeliveries: adding a call twice or removing it twice is harmless.

A call is released when the controller sees its ``ended`` event. A call whose end is never recorded (its
worker died with no successor, or it was never claimed) would hold its slot forever, so a call counts
only while ``admitted_at + max age + grace`` is in the future: the max age is its rule's maximum call
duration (``max_call_duration_s``, which the session worker enforces by hanging up), and the grace,
`EXPIRY_GRACE_S` (60 s, or the max age itself when that is shorter), covers the time from admission to
the worker's hangup being recorded. Expired entries are dropped whenever the key is written. A key
written before admission times were kept holds a JSON list of call ids: its calls are read as admitted
at the time of reading, and the next change rewrites the key in the new form.

`live_entries` (which entries count at an instant) and `decode_entries` (both forms) are pure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchboard.shared.errors import BusUnavailable

BUCKET = "switchboard_capacity"
EXPIRY_GRACE_S = 60.0
"""How long past its maximum duration an admitted call still counts (at most its max age again)."""
_CAS_ATTEMPTS = 20
_KV_TIMEOUT_S = 2.0

_entries = msgspec.json.Decoder(dict[str, float] | list[str])


def _key(rule: str) -> str:
    return "rule_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in rule)


def grace(max_age_s: float) -> float:
    """The grace after a call's maximum duration before capacity stops counting it."""
    return min(EXPIRY_GRACE_S, max_age_s)


def live_entries(entries: Mapping[str, float], *, now: float, max_age_s: float) -> dict[str, float]:
    """The entries (call id → admitted at) that still count at `now`: admitted less than
    ``max_age_s + grace(max_age_s)`` seconds before it (or after it, on a replica whose clock is ahead)."""
    counted_s = max_age_s + grace(max_age_s)
    return {call_id: admitted for call_id, admitted in entries.items() if admitted + counted_s > now}


def decode_entries(value: bytes, *, now: float) -> dict[str, float]:
    """A key's value as call id → admitted at; the old form (a list of call ids) as all admitted `now`."""
    decoded = _entries.decode(value)
    if isinstance(decoded, list):
        return dict.fromkeys(decoded, now)
    return decoded


class Capacity:
    def __init__(self, kv: KeyValue, *, clock: Callable[[], float] = time.time) -> None:
        self._kv = kv
        self._clock = clock

    async def _read(self, rule: str, now: float) -> tuple[dict[str, float], int]:
        """(call id → admitted at, every entry stored; the key's revision, 0 when it does not exist yet)."""
        try:
            entry = await asyncio.wait_for(self._kv.get(_key(rule)), _KV_TIMEOUT_S)
        except KeyNotFoundError:
            return {}, 0
        except TimeoutError:
            raise BusUnavailable(f"capacity of {rule} unreadable") from None
        if entry.value is None:  # deleted or purged
            return {}, entry.revision or 0
        return decode_entries(entry.value, now=now), entry.revision or 0

    async def live(self, max_ages: Mapping[str, float]) -> dict[str, int]:
        """Current live calls per rule, given each rule's max age (its calls' maximum duration)."""
        now = self._clock()
        counts: dict[str, int] = {}
        for rule, max_age_s in max_ages.items():
            entries, _ = await self._read(rule, now)
            counts[rule] = len(live_entries(entries, now=now, max_age_s=max_age_s))
        return counts

    async def _change(self, rule: str, call_id: str, *, add: bool, limit: int | None, max_age_s: float) -> bool:
        for _ in range(_CAS_ATTEMPTS):
            now = self._clock()
            stored, revision = await self._read(rule, now)
            live = live_entries(stored, now=now, max_age_s=max_age_s)
            if (add and call_id in live) or (not add and call_id not in stored):
                return True
            if add and limit is not None and len(live) >= limit:
                return False
            if add:
                live[call_id] = now
            else:
                live.pop(call_id, None)
            value = msgspec.json.encode(dict(sorted(live.items())))  # expired entries are left out
            try:
                if revision == 0:
                    await asyncio.wait_for(self._kv.create(_key(rule), value), _KV_TIMEOUT_S)
                else:
                    await asyncio.wait_for(self._kv.update(_key(rule), value, last=revision), _KV_TIMEOUT_S)
                return True
            except KeyWrongLastSequenceError:
                await asyncio.sleep(random.uniform(0, 0.01))  # another replica changed it; read again
            except TimeoutError:
                raise BusUnavailable(f"capacity of {rule} not written") from None
        raise BusUnavailable(f"capacity of {rule} too contended")

    async def admit(self, rule: str, call_id: str, limit: int, max_age_s: float) -> bool:
        """Count `call_id` live on `rule` from now (unless it already counts) if the rule has room; False
        when full. `max_age_s` is the rule's maximum call duration: older entries no longer count."""
        return await self._change(rule, call_id, add=True, limit=limit, max_age_s=max_age_s)

    async def release(self, rule: str, call_id: str, max_age_s: float) -> None:
        """Stop counting `call_id` on `rule` (idempotent), dropping expired entries with it."""
        await self._change(rule, call_id, add=False, limit=None, max_age_s=max_age_s)
