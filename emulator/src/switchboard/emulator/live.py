"""The live side of an emulated call: its `CallRecord` plus what cannot be serialised (tasks, the sideband).

The server creates one `LiveCall` per placed call and drives it through its states; the API modules
receive it from the server (through `ports`) and hand it back to say what happened to it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from switchboard.emulator.calls import CallRecord
from switchboard.emulator.realtime import RealtimeSession
from switchboard.emulator.scripts import Script
from switchboard.emulator.tasks import TaskSet


@dataclass
class LiveCall:
    """The runtime side of a call: its record plus what cannot be serialised (tasks, the Realtime session)."""

    record: CallRecord
    script: Script
    tasks: TaskSet
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    realtime: RealtimeSession | None = None
    caller_started: bool = False
    ringing_tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    """The webhook sender and the ring timer: they stop once the call is answered."""
