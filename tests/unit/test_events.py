"""The event envelope and subjects: CloudEvents shape, and no subject a caller can choose."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.shared import events


def test_envelope_is_cloudevents_structured_json() -> None:
    """An event encodes as a CloudEvents 1.0 object with the call id as subject."""
    decided = events.Decided(action="reject", rule="r", reason="x", status_code=486)
    event = events.make_event("rtc_1", "decided", decided, source="switchboard/test")
    raw = msgspec.json.decode(events.encode(event))
    assert raw["specversion"] == "1.0" and raw["type"] == "call.decided" and raw["subject"] == "rtc_1"
    assert raw["datacontenttype"] == "application/json" and raw["time"].endswith("Z")
    assert raw["data"] == {"action": "reject", "rule": "r", "reason": "x", "status_code": 486}
    assert events.decode(events.encode(event)) == event


def test_realtime_kinds_map_to_realtime_types() -> None:
    """``rt.response.done`` is typed ``realtime.response.done`` and maps back."""
    event = events.make_event("rtc_1", "rt.response.done", {"type": "response.done"}, source="s")
    assert event.type == "realtime.response.done" and event.kind == "rt.response.done"


@pytest.mark.parametrize("call_id", ["", "a.b", "a*", "a>", "a b", "x" * 129, "rtc_1\n"])
def test_unsafe_call_ids_never_become_subjects(call_id: str) -> None:
    """Ids with dots, wildcards, spaces or over 128 characters are refused."""
    assert not events.is_safe_call_id(call_id)
    with pytest.raises(ValueError):
        events.subject(call_id, "incoming")


@given(st.text(max_size=200))
def test_a_safe_call_id_is_exactly_one_subject_token(call_id: str) -> None:
    """Whatever the id, a subject built from it has exactly three tokens, the middle one the id."""
    if events.is_safe_call_id(call_id):
        assert events.subject(call_id, "incoming").split(".") == ["calls", call_id, "incoming"]


def test_event_time_is_utc_to_the_millisecond() -> None:
    """``time`` is RFC 3339 in UTC with milliseconds, and within a few ms of the clock."""
    before = datetime.now(UTC)
    stamp = events.utc_now()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= parsed <= after
