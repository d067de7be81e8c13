"""Live calls per capped rule, counted cluster-wide in NATS KV.

One key per rule with a ``max_live_calls`` (bucket ``switchboard_capacity``) holds the set of call ids
live on it. Every change is a compare-and-set on the key's revision, so controller replicas never
over-admit: two racing decisions for the last slot cannot both add themselves. Sets (not counters)
make every step idempotent across redeliveries: adding a call twice or removing it twice is harmless.
"""

from __future__ import annotations

import asyncio
import random

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from switchboard.shared.errors import BusUnavailable

BUCKET = "switchboard_capacity"
_CAS_ATTEMPTS = 20


def _key(rule: str) -> str:
    return "rule_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in rule)


class Capacity:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def _read(self, rule: str) -> tuple[set[str], int]:
        """(live call ids, revision; 0 when the key does not exist yet)."""
        try:
            entry = await asyncio.wait_for(self._kv.get(_key(rule)), 2.0)
        except KeyNotFoundError:
            return set(), 0
        except TimeoutError:
            raise BusUnavailable(f"capacity of {rule} unreadable") from None
        if entry.value is None:  # deleted or purged
            return set(), entry.revision or 0
        return set(msgspec.json.decode(entry.value, type=list[str])), entry.revision or 0

    async def live(self, rules: list[str]) -> dict[str, int]:
        """Current live calls per rule."""
        return {rule: len((await self._read(rule))[0]) for rule in rules}

    async def _change(self, rule: str, call_id: str, *, add: bool, limit: int | None) -> bool:
        for _ in range(_CAS_ATTEMPTS):
            calls, revision = await self._read(rule)
            if (add and call_id in calls) or (not add and call_id not in calls):
                return True
            if add and limit is not None and len(calls) >= limit:
                return False
            calls = calls | {call_id} if add else calls - {call_id}
            value = msgspec.json.encode(sorted(calls))
            try:
                if revision == 0:
                    await self._kv.create(_key(rule), value)
                else:
                    await self._kv.update(_key(rule), value, last=revision)
                return True
            except KeyWrongLastSequenceError:
                await asyncio.sleep(random.uniform(0, 0.01))  # another replica changed it; read again
        raise BusUnavailable(f"capacity of {rule} too contended")

    async def admit(self, rule: str, call_id: str, limit: int) -> bool:
        """Count `call_id` live on `rule` if it has room (or already counts); False when full."""
        return await self._change(rule, call_id, add=True, limit=limit)

    async def release(self, rule: str, call_id: str) -> None:
        """Stop counting `call_id` on `rule` (idempotent)."""
        await self._change(rule, call_id, add=False, limit=None)
