"""What the HTTP handlers need from the emulator, as two protocols the `server.Emulator` implements.

`openai_api` (the emulated OpenAI surface) and `control_api` (``/_emulator``) depend on these, never on
`server`: the server builds the handlers and passes itself in, so imports run one way only
(server → handlers → ports). Each protocol names exactly what its handlers use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from switchboard.emulator.calls import CallRecord, CallState, EndReason, SipHeaderLike
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.faults import Faults
from switchboard.emulator.live import LiveCall
from switchboard.emulator.scripts import Script


class OpenAIPort(Protocol):
    """What ``/v1`` (REST call control and the sideband) needs: the live calls and their transitions."""

    @property
    def config(self) -> EmulatorConfig: ...

    @property
    def faults(self) -> Faults: ...

    def live(self, call_id: str) -> LiveCall | None:
        """The live side of a call, if the emulator knows it."""
        ...

    def answer(self, call: LiveCall, body: dict[str, Any], session: dict[str, Any]) -> None:
        """The call was accepted with `body`: it stops ringing and gets its model session (either surface)."""
        ...

    def end_call(self, call: LiveCall, state: CallState, reason: EndReason, *, close_delay_s: float = 0.0) -> bool:
        """Move a call to a terminal state and tear it down; False if it was already over."""
        ...

    def sideband_attached(self, call: LiveCall) -> None:
        """A sideband attached to the call (the scripted caller starts the first time)."""
        ...


class ControlPort(Protocol):
    """What ``/_emulator`` needs: the call records, the faults, and placing and ending calls."""

    @property
    def calls(self) -> Mapping[str, CallRecord]: ...

    @property
    def faults(self) -> Faults: ...

    def place_call(
        self,
        from_number: str,
        to_number: str,
        *,
        sip_headers: Sequence[SipHeaderLike] | None = None,
        script: str | Script | None = None,
        surface: Literal["realtime", "live", "both"] = "realtime",
    ) -> str:
        """Start a call ringing; returns its id, or raises `EmulatorError`."""
        ...

    def twin(self, call_id: str) -> str | None:
        """The other surface's id of a call rung on both surfaces."""
        ...

    async def caller_hangup(self, call_id: str) -> CallRecord:
        """The caller hangs up now (ringing or answered)."""
        ...

    def drop_sideband(self, call_id: str, code: int = 1006) -> int:
        """Drop the call's live sideband connection(s) without ending the call; returns how many."""
        ...
