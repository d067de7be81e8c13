"""Reading the log: typed payloads, versions, upcasting, and subject filters for selections."""

from __future__ import annotations

import msgspec
import pytest

from switchboard.shared import events
from switchboard.shared.schema import IncomingCall, from_json_line, from_stored, schema_version, typed, upcast
from switchboard.shared.subscribe import Selection
from tests.golden import LOGS, read_log


def test_new_events_name_their_schema_version() -> None:
    """Every event written today carries ``dataschema`` ``switchboard:<type>/v1``."""
    event = events.make_event("rtc_1", "ended", events.Ended(reason="x", duration_s=1.0), source="s")
    assert event.dataschema == "switchboard:call.ended/v1"
    assert msgspec.json.decode(events.encode(event))["dataschema"] == "switchboard:call.ended/v1"


def test_events_recorded_before_versioning_read_as_version_1_with_typed_data() -> None:
    """The unversioned golden log decodes with every known kind typed and no problems."""
    log = read_log(LOGS / "spine_v0.jsonl")
    assert {e.version for e in log} == {1} and all(e.problem is None for e in log)
    ended = [e for e in log if e.kind == "ended"]
    assert ended and all(isinstance(e.data, events.Ended) for e in ended)
    incoming = next(e for e in log if e.kind == "incoming")
    assert isinstance(incoming.data, IncomingCall) and incoming.data.webhook_id.startswith("wh_")


def test_realtime_and_unknown_kinds_keep_their_json() -> None:
    """``rt.*`` and kinds without a payload type are delivered with their data as stored."""
    rt = typed(events.make_event("rtc_1", "rt.response.done", {"type": "response.done"}, source="s"))
    odd = typed(events.make_event("rtc_1", "tool.requested", {"name": "lookup"}, source="s"))
    assert (rt.data, odd.data) == ({"type": "response.done"}, {"name": "lookup"})
    assert rt.problem is odd.problem is None


def test_data_that_does_not_fit_its_type_is_delivered_raw_with_the_reason() -> None:
    """A ``decided`` event with an impossible action is delivered, raw, with a problem."""
    event = from_stored(7, "calls.rtc_1.decided", events.encode(
        events.make_event("rtc_1", "decided", {"action": "sideways"}, source="s")
    ))  # fmt: skip
    assert event.data == {"action": "sideways"} and event.problem is not None and "Decided" in event.problem


def test_bytes_that_are_not_a_cloudevent_are_delivered_with_call_and_kind_from_the_subject() -> None:
    """A stored message that is not a CloudEvent still arrives, with its JSON, call id and kind."""
    event = from_stored(3, "calls.rtc_9.ended", b'{"hello": 1}')
    assert (event.call_id, event.kind, event.data, event.envelope) == ("rtc_9", "ended", {"hello": 1}, None)
    assert event.problem is not None
    assert from_json_line(4, b"not json").data == "not json"


def test_an_old_version_is_upcast_before_typing() -> None:
    """With ``ended`` at v2 and an upcaster from v1, a v1 event is read in the v2 shape."""
    upcasters = {("ended", 1): lambda d: {**d, "reason": d["reason"].upper()}}
    assert upcast("ended", 1, {"reason": "x"}, upcasters=upcasters, current={"ended": 2}) == {"reason": "X"}
    with pytest.raises(ValueError, match="no upcaster"):
        upcast("ended", 1, {}, upcasters={}, current={"ended": 3})
    assert schema_version("switchboard:call.ended/v12") == 12 and schema_version(None) == 1


@pytest.mark.parametrize(
    ("selection", "subjects"),
    [
        (Selection(), ["calls.*.>"]),
        (Selection(call="rtc_1"), ["calls.rtc_1.>"]),
        (Selection(kinds=("ended", "decided")), ["calls.*.decided", "calls.*.ended"]),
        (Selection(call="rtc_1", kinds=("rt.*",)), ["calls.rtc_1.rt.>"]),
        (Selection(kinds=("session.*", "session.claimed")), ["calls.*.session.>"]),
        (Selection(kinds=("*",)), ["calls.*.>"]),
        (Selection(kinds=("*.done", "ended")), ["calls.*.>"]),
        (Selection(kinds=("rt.response.*delta",)), ["calls.*.>"]),
    ],
)
def test_a_selection_becomes_non_overlapping_subject_filters(selection: Selection, subjects: list[str]) -> None:
    """Call ids and kind globs become server-side filters; globs subjects cannot express read everything."""
    assert selection.subjects() == subjects


def test_a_selection_matches_kinds_like_the_globs_say() -> None:
    """``*.done`` matches any kind ending in .done, including multi-token realtime kinds."""
    selection = Selection(kinds=("*.done",))
    assert selection.matches("rtc_1", "rt.response.output_audio_transcript.done")
    assert not selection.matches("rtc_1", "ended")


def test_a_selection_refuses_a_call_id_that_is_not_one_subject_token() -> None:
    """``--call 'a.>'`` is refused instead of widening the filter."""
    with pytest.raises(ValueError):
        Selection(call="a.>")
