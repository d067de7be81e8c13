"""Reading the log in tests: what is stored now, as the CloudEvents the services wrote."""

from __future__ import annotations

from switchboard.shared.bus import Bus
from switchboard.shared.events import CloudEvent
from switchboard.shared.subscribe import Selection, replay


async def stored(bus: Bus, call_id: str | None = None, kind: str | None = None) -> list[CloudEvent]:
    """The events stored now (of one call and/or one kind), in stream order."""
    selection = Selection(call=call_id, kinds=(kind,) if kind else ())
    return [e.envelope async for e in replay(bus, selection) if e.envelope is not None]
