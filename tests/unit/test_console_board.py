"""The console's read model (pure): the live table's rows, timeline lines, recent calls, charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from switchboard.console.board import Board, Filters, charts, entry, recent, stamp, turn
from switchboard.shared.events import make_event
from switchboard.shared.projections.call_record import CallRecord
from switchboard.shared.schema import LogEvent, typed

NOW = datetime(2026, 11, 24, 10, 30, 20, tzinfo=UTC)


def _event(seq: int, call_id: str, kind: str, data: Any, at: datetime = NOW) -> LogEvent:
    envelope = msgspec.structs.replace(make_event(call_id, kind, data, source="test"), time=stamp(at))
    return typed(envelope, seq=seq)


def _incoming(seq: int, call_id: str, caller: str = "+14155550101") -> LogEvent:
    headers = [{"name": "From", "value": f"sip:{caller}@x"}, {"name": "To", "value": "sip:+18005550100@x"}]
    return _event(seq, call_id, "incoming", {"id": "evt", "type": "realtime.call.incoming", "created_at": 0,
                                             "data": {"call_id": call_id, "sip_headers": headers}})  # fmt: skip


def test_a_call_becomes_a_row_that_changes_only_when_its_state_does() -> None:
    """incoming makes a row; a transcript turn changes no row; ended moves it to ended."""
    board = Board()
    assert board.apply(_incoming(1, "rtc_a")) is not None
    assert board.apply(_event(2, "rtc_a", "rt.response.output_audio_transcript.done", {"transcript": "hi"})) is None
    ended = board.apply(_event(3, "rtc_a", "ended", {"reason": "caller_hangup", "duration_s": 3.0}))
    assert ended is not None and ended.phase == "ended"
    assert board.records["rtc_a"].end_reason == "caller_hangup"


def test_the_board_forgets_the_calls_that_ended_first_past_its_limit() -> None:
    """With room for 2 ended calls, a third end forgets the first; a live call is never forgotten."""
    board = Board(keep_ended=2)
    board.apply(_incoming(1, "rtc_live"))
    for i, call_id in enumerate(("rtc_1", "rtc_2", "rtc_3")):
        board.apply(_incoming(10 + 2 * i, call_id))
        board.apply(_event(11 + 2 * i, call_id, "ended", {"reason": "x", "duration_s": 1.0}))
    assert set(board.states) == set(board.records) == {"rtc_live", "rtc_2", "rtc_3"}


def test_ended_calls_leave_the_live_table_after_half_a_minute() -> None:
    """Live calls and calls that ended in the last 30 s are rows; older ended calls are not."""
    board = Board()
    board.apply(_incoming(1, "rtc_old"))
    board.apply(_event(2, "rtc_old", "ended", {"reason": "x", "duration_s": 1.0}, at=NOW - timedelta(seconds=60)))
    board.apply(_incoming(3, "rtc_new"))
    board.apply(_event(4, "rtc_just", "ended", {"reason": "x", "duration_s": 1.0}, at=NOW - timedelta(seconds=5)))
    assert {s.call_id for s in board.live(now=NOW)} == {"rtc_new", "rtc_just"}


def test_a_tool_line_shows_its_output_and_latency_and_a_command_line_its_operator() -> None:
    """tool.completed: output and latency in ms; command.hangup: who asked and the outcome."""
    done = {"tool_call_id": "c1", "name": "lookup_order", "output": '{"status": "shipped"}', "latency_ms": 12.5}
    tool = entry(_event(5, "rtc_a", "tool.completed", done))
    assert tool is not None and tool.detail == 'output {"status": "shipped"} in 12.5 ms'
    command = entry(_event(6, "rtc_a", "command.hangup", {"verb": "hangup", "command": {}, "ok": True,
                                                         "operator": "alice"}))  # fmt: skip
    assert command is not None and command.detail == "by alice: ok"


def test_transcript_turns_are_not_timeline_lines() -> None:
    """A finished agent turn is a transcript turn, never a timeline line."""
    event = _event(7, "rtc_a", "rt.response.output_audio_transcript.done", {"transcript": "Hello!"})
    assert entry(event) is None
    spoken = turn(event)
    assert spoken is not None and (spoken.speaker, spoken.text) == ("agent", "Hello!")


def _record(i: int, **fields: Any) -> CallRecord:
    return CallRecord(call_id=f"rtc_{i:03d}", started_at=stamp(NOW - timedelta(minutes=i)), **fields)


def test_recent_calls_are_newest_first_in_pages_and_filtered() -> None:
    """120 calls in pages of 50: page 3 holds the 20 oldest; filters by outcome, rule and number."""
    records = [_record(i, outcome="rejected" if i % 2 else "answered", rule="r1" if i < 10 else "r2",
                       caller=f"+1415555{i:04d}") for i in range(120)]  # fmt: skip
    page = recent(records, Filters(), page=3)
    assert (page.total, page.pages, len(page.rows), page.rows[-1].call_id) == (120, 3, 20, "rtc_119")
    assert recent(records, Filters(outcome="rejected")).total == 60
    assert recent(records, Filters(rule="r1")).total == 10
    assert [r.call_id for r in recent(records, Filters(number="5550007")).rows] == ["rtc_007"]
    assert recent(records, Filters(since=stamp(NOW - timedelta(minutes=5)))).total == 6


def test_a_page_past_the_last_is_the_last() -> None:
    """Asking for page 9 of 2 gives page 2."""
    records = [_record(i) for i in range(60)]
    assert recent(records, Filters(), page=9).page == 2


def test_charts_count_calls_per_minute_and_the_answer_latency_percentiles() -> None:
    """Calls per minute over the last hour, p50 and p95 of their answer latency, None where none answered."""
    records = [CallRecord(call_id=f"rtc_{i}", started_at=stamp(NOW - timedelta(seconds=i)),
                          answer_latency_ms=float(i + 1)) for i in range(20)]  # fmt: skip
    records.append(CallRecord(call_id="rtc_old", started_at=stamp(NOW - timedelta(hours=2))))
    data = charts(records, now=NOW)
    assert len(data["t"]) == 60 and data["t"][-1] == int(NOW.replace(second=0).timestamp())
    assert data["calls"][-1] == 20 and sum(data["calls"]) == 20
    assert (data["p50"][-1], data["p95"][-1]) == (10.0, 19.0)
    assert data["p50"][0] is None
