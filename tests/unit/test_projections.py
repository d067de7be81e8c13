"""Projections are pure folds of the log: golden logs replay into the expected states, every time."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.shared.projections import CALL_RECORDS, CALL_STATE, PROJECTIONS, TRANSCRIPTS, fold
from switchboard.shared.projections.call_state import CallState
from switchboard.shared.schema import LogEvent
from tests.golden import LOGS, expected_path, read_log

GOLDEN_LOGS = sorted(LOGS.glob("*.jsonl"))


def _as_json(states: dict[str, msgspec.Struct]) -> object:
    return msgspec.json.decode(msgspec.json.encode(dict(sorted(states.items()))))


@pytest.mark.parametrize("log", GOLDEN_LOGS, ids=lambda p: p.stem)
def test_golden_log_replays_into_the_expected_projections(log: Path) -> None:
    """Each golden log folded through every projection equals its checked-in expectation."""
    expected = msgspec.json.decode(expected_path(log).read_bytes())
    events = read_log(log)
    assert {p.name: _as_json(fold(p, events)) for p in PROJECTIONS} == expected


@pytest.mark.parametrize("log", GOLDEN_LOGS, ids=lambda p: p.stem)
def test_replaying_a_log_twice_changes_nothing(log: Path) -> None:
    """Applying the same events again (a redelivery, a second replay) leaves every state as it was."""
    events = read_log(log)
    for projection in PROJECTIONS:
        once = fold(projection, events)
        assert fold(projection, events, dict(once)) == once


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=172))
def test_a_projection_resumed_mid_log_ends_where_a_full_run_does(cut: int) -> None:
    """Stopping after any event and resuming from an earlier point (at-least-once) gives the full-run state."""
    events = read_log(LOGS / "spine_v0.jsonl")
    for projection in PROJECTIONS:
        resumed = fold(projection, events[max(0, cut - 5) :], fold(projection, events[:cut]))
        assert resumed == fold(projection, events)


def test_call_phases_go_ringing_decided_live_ended() -> None:
    """A call's state passes through ringing, decided, live and ended as its events arrive."""
    events = [e for e in read_log(LOGS / "spine_v0.jsonl") if e.call_id == "rtc_f716fd1fcba71985b42a6ab9205dbce0"]
    phases: list[str] = []
    state: CallState | None = None
    for event in events:
        state = CALL_STATE.evolve(state, event)
        if state is not None and (not phases or phases[-1] != state.phase):
            phases.append(state.phase)
    assert phases == ["ringing", "decided", "live", "ended"]


def test_a_late_event_after_ended_leaves_the_call_ended() -> None:
    """``session.claimed`` recorded after ``ended`` does not bring a call back to life."""
    events = read_log(LOGS / "edge_cases.jsonl")
    late = LogEvent(seq=999, subject="calls.rtc_edge_missed.session.claimed", call_id="rtc_edge_missed",
                    kind="session.claimed", data={"worker": "w9", "attempt": 3}, envelope=None)  # fmt: skip
    state = fold(CALL_STATE, [*events, late])["rtc_edge_missed"]
    assert (state.phase, state.worker) == ("ended", "w9")


def test_transfer_after_answer_is_recorded_as_transferred() -> None:
    """A call referred after it was answered has outcome ``transferred`` and the target."""
    record = fold(CALL_RECORDS, read_log(LOGS / "edge_cases.jsonl"))["rtc_edge_transfer"]
    assert (record.outcome, record.transfer_target, record.workers) == (
        "transferred", "tel:+14155550123", ("worker-1", "worker-2"),
    )  # fmt: skip


def test_a_turn_recorded_twice_replaces_its_text() -> None:
    """The same agent item transcribed again after a re-attach is one turn with the newer text."""
    transcript = fold(TRANSCRIPTS, read_log(LOGS / "edge_cases.jsonl"))["rtc_edge_transfer"]
    assert [(t.speaker, t.text) for t in transcript.turns] == [
        ("agent", "Hello there!"), ("caller", "Put me through to a person, please."),
    ]  # fmt: skip


def test_transcript_turns_follow_stream_order() -> None:
    """Caller and agent turns alternate in the order the log stored them."""
    transcript = fold(TRANSCRIPTS, read_log(LOGS / "spine_v0.jsonl"))["rtc_f716fd1fcba71985b42a6ab9205dbce0"]
    assert [t.speaker for t in transcript.turns] == ["agent", "caller", "agent", "caller", "agent"]
    assert [t.seq for t in transcript.turns] == sorted(t.seq for t in transcript.turns)


def _live(seq: int, speaker: str, delta: str, end_ms: int, call_id: str = "live_1") -> LogEvent:
    kind = f"rt.session.{'input' if speaker == 'caller' else 'output'}_transcript.delta"
    return LogEvent(seq=seq, subject=f"calls.{call_id}.{kind}", call_id=call_id, kind=kind, envelope=None,
                    data={"delta": delta, "start_ms": end_ms - 100, "end_ms": end_ms})  # fmt: skip


def test_live_transcript_fragments_fold_into_alternating_turns() -> None:
    """Live's caller and agent fragments become one turn per run of a speaker, in offset order."""
    log = [_live(1, "agent", "Hello,", 100), _live(2, "agent", " how can I help?", 200),
           _live(3, "caller", "My order", 900), _live(4, "caller", " is late.", 1000),
           _live(5, "agent", "Sorry!", 1500)]  # fmt: skip
    transcript = fold(TRANSCRIPTS, log)["live_1"]
    assert [(t.speaker, t.text) for t in transcript.turns] == [
        ("agent", "Hello, how can I help?"), ("caller", "My order is late."), ("agent", "Sorry!"),
    ]  # fmt: skip


def test_a_live_fragment_seen_again_after_a_reattach_adds_nothing() -> None:
    """A fragment no later than what its turn holds (a re-attached worker's copy) is not appended twice."""
    log = [_live(1, "caller", "Hi", 100), _live(2, "caller", " there", 200), _live(3, "caller", " there", 200)]
    assert [t.text for t in fold(TRANSCRIPTS, log)["live_1"].turns] == ["Hi there"]
