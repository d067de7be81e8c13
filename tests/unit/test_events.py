"""The event envelope and subjects: CloudEvents shape, and no subject a caller can choose."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.shared import contract, events


def test_envelope_is_cloudevents_structured_json() -> None:
    """An event encodes as a CloudEvents 1.0 object with the call id as subject."""
    decided = events.Decided(action="reject", rule="r", reason="x", status_code=486)
    event = events.make_event("rtc_1", "decided", decided, source="switchboard/test")
    raw = msgspec.json.decode(events.encode(event))
    assert raw["specversion"] == "1.0" and raw["type"] == "call.decided" and raw["subject"] == "rtc_1"
    assert raw["datacontenttype"] == "application/json" and raw["time"].endswith("Z")
    assert raw["data"] == {"action": "reject", "rule": "r", "reason": "x", "status_code": 486}
    assert events.decode(events.encode(event)) == event


_EVERY_KIND = sorted(
    {k.kind.replace("{server_event_type}", "response.done").replace("{verb}", "hangup") for k in contract.KINDS}
    | {"reloaded", "reload_refused"}
)


@pytest.mark.parametrize("kind", _EVERY_KIND)
def test_every_kind_names_its_dataschema(kind: str) -> None:
    """Each kind's envelope, as stored, carries the ``dataschema`` `events.dataschema` names for it."""
    event = events.make_event("rtc_1", kind, {}, source="switchboard/test")
    stored = msgspec.json.decode(events.encode(event))
    assert stored["dataschema"] == events.dataschema(kind) == f"switchboard:{stored['type']}/v1"


ROOT = Path(__file__).resolve().parents[2]
_CODE = ("shared", "services", "cli", "emulator", "bench", "tests")


def _envelopes_built_by_hand(source: str) -> list[int]:
    """Lines of `source` that call `CloudEvent(...)` or write a dict with ``specversion`` and ``id`` keys."""
    found = []
    for node in ast.walk(ast.parse(source)):
        called = node.func if isinstance(node, ast.Call) else None
        name = called.id if isinstance(called, ast.Name) else called.attr if isinstance(called, ast.Attribute) else ""
        keys = {k.value for k in node.keys if isinstance(k, ast.Constant)} if isinstance(node, ast.Dict) else set()
        if name == "CloudEvent" or {"specversion", "id"} <= keys:
            found.append(node.lineno)
    return found


def test_the_envelope_scan_finds_envelopes_built_by_hand() -> None:
    """The scan below catches a `CloudEvent(...)` call and an envelope dict, and passes `make_event`."""
    by_hand = 'e = events.CloudEvent(specversion="1.0")\nd = {"specversion": "1.0", "id": "x"}\n'
    assert _envelopes_built_by_hand(by_hand) == [1, 2]
    assert _envelopes_built_by_hand('e = events.make_event("rtc_1", "ended", {}, source="s")\n') == []


def test_only_make_event_builds_an_envelope() -> None:
    """No code but `events.make_event` calls `CloudEvent(...)` or writes an envelope dict by hand."""
    maker = ROOT / "shared" / "src" / "switchboard" / "shared" / "events.py"
    files = [p for top in _CODE for p in (ROOT / top).rglob("*.py") if p != maker]
    assert len(files) > 100
    by_hand = [f"{p.relative_to(ROOT)}:{line}" for p in files for line in _envelopes_built_by_hand(p.read_text())]
    assert by_hand == []


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
