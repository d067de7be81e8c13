"""The sample tool `up` and `demo` serve: ``lookup_order``, which the built-in policy's concierge offers.

A tool is whoever answers NATS requests on ``tools.<name>``: the session worker sends
``{"call_id", "name", "arguments", "tool_call_id"}`` (``arguments`` is the model's JSON text) and gives
the model the reply's ``output``, or its ``error``. The README's "Serving a tool" shows the same handler.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import msgspec

from switchboard.shared.bus import Bus
from switchboard.shared.config import Settings
from switchboard.shared.logging import get_logger

log = get_logger(__name__)

ORDERS = {
    "A1234": {"status": "shipped", "arrives": "tomorrow"},
    "B5678": {"status": "being packed", "arrives": "in three days"},
}
"""The sample shop's orders (the emulator's ``order_lookup`` caller asks about A1234)."""


def lookup_order(arguments: Any) -> dict[str, Any]:
    """The reply to a ``lookup_order`` call: the order's status, or an error the model can speak about."""
    order_id = arguments.get("order_id") if isinstance(arguments, dict) else None
    if not isinstance(order_id, str) or not order_id:
        return {"error": 'lookup_order takes {"order_id": "..."}'}
    order = ORDERS.get(order_id.strip().upper())
    if order is None:
        return {"output": {"order_id": order_id, "status": "not found"}}
    return {"output": {"order_id": order_id, **order}}


async def _serve_lookup_order(subject: str, payload: bytes) -> bytes:
    try:
        request = msgspec.json.decode(payload)
        arguments = msgspec.json.decode(request["arguments"])
    except (msgspec.DecodeError, KeyError, TypeError):
        return msgspec.json.encode({"error": "arguments are not a JSON object"})
    return msgspec.json.encode(lookup_order(arguments))


class SampleTools:
    """Serves ``tools.lookup_order`` on its own bus connection, as a tool service would."""

    name = "sample-tools"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = asyncio.Event()
        self.ready = False

    async def run(self) -> None:
        bus = await Bus.for_service(self._settings, self.name)
        try:
            subscription = await bus.serve("tools.lookup_order", _serve_lookup_order, queue="sample-tools")
            self.ready = True
            log.info("sample_tools_serving", tools=["lookup_order"])
            await self._stop.wait()
            with contextlib.suppress(Exception):  # the connection may be gone already
                await subscription.unsubscribe()
        finally:
            self.ready = False
            await bus.close()

    async def shutdown(self, grace: timedelta = timedelta(seconds=5)) -> None:
        self._stop.set()
