"""The runtime side of an emulated call: its `CallRecord` plus what cannot be serialised (tasks, the sideband).

("Live" as in a call in progress; the Live *surface* is `live_session` / `live_config` / `live_events`.)
The server creates one `LiveCall` per placed call and surface (two for a call rung on both) and drives it
through its states; the API modules receive it from the server (through `ports`) and hand it back to say
what happened to it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from switchboard.emulator.calls import CallRecord
from switchboard.emulator.live_session import LiveSession
from switchboard.emulator.realtime import RealtimeSession
from switchboard.emulator.scripts import Script
from switchboard.emulator.tasks import TaskSet


@dataclass
class LiveCall:
    """The runtime side of a call: its record plus what cannot be serialised (tasks, the model session)."""

    record: CallRecord
    script: Script
    tasks: TaskSet
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    session: RealtimeSession | LiveSession | None = None
    """The model side once accepted: a `RealtimeSession` or a `LiveSession`, by the call's surface."""
    caller_started: bool = False
    ringing_tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    """The webhook sender and the ring timer: they stop once the call is answered."""

    @property
    def realtime(self) -> RealtimeSession | None:
        """The Realtime session of an accepted Realtime call."""
        return self.session if isinstance(self.session, RealtimeSession) else None

    @property
    def live_session(self) -> LiveSession | None:
        """The Live session of an accepted Live call."""
        return self.session if isinstance(self.session, LiveSession) else None
