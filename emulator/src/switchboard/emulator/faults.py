"""Fault injection: make the next N operations of a kind fail, stall or misbehave.

A fault is consumed by the operation it matches (optionally only for one call), `times` times. The
operations are the same on both surfaces (a Live accept consumes an ``accept`` fault, a Live attach a
``sideband_connect`` one); `call_id` may be a Realtime call id or a Live session id.

- ``accept`` / ``reject`` / ``refer`` / ``hangup``: wait `delay_s`, then, if `status` is set, answer
  that status with an OpenAI-shaped error (`code` if given) and leave the call untouched; with no
  `status` the request then proceeds normally (a slow but successful answer).
  ``refer`` with ``code="carrier_silent"`` and no `status`: answer 200 but leave the call up, as when
  the carrier never completes the transfer.
- ``webhook``: wait `delay_s` before the delivery attempt; if `status` is set the attempt is not sent
  and is recorded as a connection error (so the sender backs off and retries); ``code="duplicate"``
  delivers the attempt twice in a row with the same ``webhook-id`` (the duplicates OpenAI is known for).
- ``sideband_connect``: wait `delay_s`, then, if `status` is set, refuse the WebSocket upgrade with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import msgspec

FaultOp = Literal["accept", "reject", "refer", "hangup", "webhook", "sideband_connect"]
FAULT_OPS: frozenset[str] = frozenset(get_args(FaultOp))
CARRIER_SILENT = "carrier_silent"


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    """What happens to a matching operation."""

    op: FaultOp
    status: int | None = None
    delay_s: float = 0.0
    code: str | None = None
    call_id: str | None = None


@dataclass
class _Armed:
    fault: Fault
    remaining: int


class Faults:
    """The armed faults, consumed first-armed first."""

    def __init__(self) -> None:
        self._armed: list[_Armed] = []

    def add(
        self,
        op: FaultOp,
        *,
        status: int | None = None,
        times: int = 1,
        delay_s: float = 0.0,
        code: str | None = None,
        call_id: str | None = None,
    ) -> Fault:
        """Arm a fault for the next `times` operations `op` (of `call_id` only, if given)."""
        if op not in FAULT_OPS:
            raise ValueError(f"unknown fault op {op!r}; expected one of {sorted(FAULT_OPS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        fault = Fault(op=op, status=status, delay_s=delay_s, code=code, call_id=call_id)
        self._armed.append(_Armed(fault, times))
        return fault

    def take(self, op: FaultOp, call_id: str | None = None) -> Fault | None:
        """Consume one hit of the first armed fault matching this operation, if any."""
        for armed in self._armed:
            if armed.fault.op == op and armed.fault.call_id in (None, call_id):
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
                return armed.fault
        return None

    def clear(self) -> None:
        """Disarm everything."""
        self._armed.clear()

    def pending(self) -> list[tuple[Fault, int]]:
        """The armed faults and how many hits each has left."""
        return [(armed.fault, armed.remaining) for armed in self._armed]
