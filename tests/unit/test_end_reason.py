"""The session's end reason (pure, `switchboard.session.end_reason`): every reason and which one wins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.session.end_reason import (
    Closed,
    EndedBy,
    EndingCommand,
    Lost,
    Refused,
    SessionEnd,
    SidebandEnd,
    Unreachable,
    commands_known_absent,
    resolve_end_reason,
)

EVENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"
NORMAL = Closed(1000)

# (what the relay saw, the commands that succeeded, the reason recorded)
TABLE: list[tuple[SessionEnd, tuple[EndingCommand, ...], str]] = [
    # The sideband closed with a close frame and nobody on our side ended the call.
    (SessionEnd(NORMAL), (), "caller_hangup"),
    (SessionEnd(Closed(1000, "")), (), "caller_hangup"),
    (SessionEnd(Closed(1011)), (), "sideband_closed_1011"),
    (SessionEnd(Closed(4000)), (), "sideband_closed_4000"),
    (SessionEnd(Closed(1000, "session_expired")), (), "session_expired"),
    (SessionEnd(Closed(1011, "server_error")), (), "server_error"),
    # The holder ended the call, then OpenAI closed the sideband.
    (SessionEnd(NORMAL, "end_call"), (), "end_call"),
    (SessionEnd(NORMAL, "max_duration"), (), "max_duration"),
    (SessionEnd(NORMAL, "transfer_call"), (), "referred"),
    (SessionEnd(Closed(1011, "server_error"), "max_duration"), (), "max_duration"),
    # The sideband never came back.
    (SessionEnd(Refused(404)), (), "call_gone"),
    (SessionEnd(Refused(401)), (), "sideband_refused"),
    (SessionEnd(Refused(409)), (), "sideband_refused"),
    (SessionEnd(Unreachable()), (), "sideband_unreachable"),
    (SessionEnd(Lost()), (), "sideband_lost"),
    (SessionEnd(Refused(404), "end_call"), (), "call_gone"),
    (SessionEnd(Lost(), "max_duration"), (), "sideband_lost"),
    (SessionEnd(Unreachable(), "transfer_call"), (), "sideband_unreachable"),
    # A command the controller carried out names the reason, whatever the sideband did.
    (SessionEnd(NORMAL), ("hangup",), "hangup"),
    (SessionEnd(NORMAL), ("refer",), "referred"),
    (SessionEnd(NORMAL), ("refer", "hangup"), "hangup"),
    (SessionEnd(NORMAL, "max_duration"), ("hangup",), "hangup"),
    (SessionEnd(NORMAL, "end_call"), ("refer",), "referred"),
    (SessionEnd(Closed(1000, "session_expired")), ("refer",), "referred"),
    (SessionEnd(Refused(404)), ("hangup",), "hangup"),
    (SessionEnd(Lost()), ("refer",), "referred"),
    (SessionEnd(Unreachable()), ("hangup",), "hangup"),
]


def _id(end: SessionEnd, commanded: tuple[EndingCommand, ...]) -> str:
    sideband = type(end.sideband).__name__.lower()
    if isinstance(end.sideband, Refused):
        sideband += f"_{end.sideband.status}"
    elif isinstance(end.sideband, Closed):
        sideband += f"_{end.sideband.code}" + (f"_{end.sideband.reason}" if end.sideband.reason else "")
    return "-".join([sideband, end.ended_by or "-", "+".join(commanded) or "-"])


@pytest.mark.parametrize(("end", "commanded", "reason"), [pytest.param(*row, id=_id(row[0], row[1])) for row in TABLE])
def test_what_the_worker_saw_names_the_end_reason(
    end: SessionEnd, commanded: tuple[EndingCommand, ...], reason: str
) -> None:
    """How the sideband ended, what the holder did and the commands carried out give this `ended` reason."""
    assert resolve_end_reason(end, commanded) == reason


SIDEBAND_ENDS: st.SearchStrategy[SidebandEnd] = st.one_of(
    st.builds(Refused, st.integers(400, 499)),
    st.just(Unreachable()),
    st.just(Lost()),
    st.builds(Closed, st.integers(1000, 4999), st.text()),
)
ENDED_BY: st.SearchStrategy[EndedBy | None] = st.sampled_from([None, "end_call", "max_duration", "transfer_call"])


@given(SIDEBAND_ENDS, ENDED_BY, st.booleans())
def test_a_successful_hangup_command_always_names_the_reason(
    sideband: SidebandEnd, ended_by: EndedBy | None, also_referred: bool
) -> None:
    """Whatever the sideband and the holder did, a call hung up by command ends as `hangup`."""
    commanded: tuple[EndingCommand, ...] = ("hangup", "refer") if also_referred else ("hangup",)
    assert resolve_end_reason(SessionEnd(sideband, ended_by), commanded) == "hangup"


def _from_close_frame(end: SessionEnd, reason: str) -> bool:
    return isinstance(end.sideband, Closed) and reason == end.sideband.reason


def _documented_reasons() -> set[str]:
    """The reasons listed under ``ended`` in docs/events.md (in backticks)."""
    text = EVENTS_DOC.read_text()
    section = text[text.index("### `ended`") :]
    listing = section[section.index("Reasons:") : section.index("\n\n", section.index("Reasons:"))]
    return set(re.findall(r"`([^`]+)`", listing))


@pytest.mark.parametrize("reason", sorted({r for end, _, r in TABLE if not _from_close_frame(end, r)}))
def test_every_end_reason_the_session_records_is_documented(reason: str) -> None:
    """Each reason the session can record is in the list of end reasons in docs/events.md."""
    assert re.sub(r"^sideband_closed_\d+$", "sideband_closed_<code>", reason) in _documented_reasons()


_LISTENING = 1_000.0
_ABSENT = {"token": 1, "seen": False, "listening_since": _LISTENING, "accepted_at": _LISTENING + 60,
           "disconnects_then": 0, "disconnects_now": 0}  # fmt: skip


def test_a_first_lease_call_with_no_command_seen_since_well_before_it_needs_no_log_read() -> None:
    """Listening since before the call was accepted, connected throughout, none seen: none was asked."""
    assert commands_known_absent(**_ABSENT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"seen": True},  # a hangup or refer was asked
        {"token": 2},  # an earlier holder may have served one this worker missed
        {"listening_since": None},  # not listening yet
        {"accepted_at": _LISTENING + 1.0},  # accepted too close to when listening began (clock skew)
        {"accepted_at": None},  # acceptance time unreadable
        {"disconnects_now": 1},  # the connection dropped: a command may have gone by unseen
    ],
)
def test_any_doubt_about_commands_means_reading_the_log(change: dict[str, object]) -> None:
    """Each reason to doubt that no command was asked sends the worker to the log for its end reason."""
    assert not commands_known_absent(**{**_ABSENT, **change})  # type: ignore[arg-type]
