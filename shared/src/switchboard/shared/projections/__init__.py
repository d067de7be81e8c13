"""Projections: read models folded from the event log — call state, call detail records, transcripts.

Each projection is a pure `evolve(state, event) -> state` over msgspec Structs (one module each, no
I/O), named after the NATS KV bucket that holds its states keyed by call id. `store.py` keeps them in KV,
`projector.py` is the service that follows the log and applies new events, `rebuild.py` recomputes them
from scratch. Because evolve is pure and ignores events at or below a state's `last_seq`, a live run, a
replay of the same log, and a resumed run all produce the same states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from switchboard.shared.projections import call_record, call_state, transcript
from switchboard.shared.schema import LogEvent

S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True)
class Projection(Generic[S]):
    name: str
    """The KV bucket holding this projection's states, keyed by call id."""
    type: type[S]
    evolve: Callable[[S | None, LogEvent], S | None]
    relevant: Callable[[str], bool]
    """Whether events of a kind can change a state at all (others are skipped without reading the store)."""


CALL_STATE = Projection("call_state", call_state.CallState, call_state.evolve, call_state.relevant)
CALL_RECORDS = Projection("call_records", call_record.CallRecord, call_record.evolve, call_record.relevant)
TRANSCRIPTS = Projection("transcripts", transcript.Transcript, transcript.evolve, transcript.relevant)

PROJECTIONS: tuple[Projection[Any], ...] = (CALL_STATE, CALL_RECORDS, TRANSCRIPTS)


def fold(projection: Projection[S], log: Iterable[LogEvent], states: dict[str, S] | None = None) -> dict[str, S]:
    """Apply `log` in order to `states` (default: empty), returning the states by call id."""
    states = {} if states is None else states
    for event in log:
        if not projection.relevant(event.kind):
            continue
        new = projection.evolve(states.get(event.call_id), event)
        if new is not None:
            states[event.call_id] = new
    return states
