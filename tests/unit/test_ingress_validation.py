"""What the ingress accepts as an event and where it stores it (pure: no server, no bus)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.ingress.validation import (
    REASONS,
    UNROUTED,
    InvalidWebhook,
    check_webhook_id,
    parse,
)
from switchboard.shared import events


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "object": "event",
        "id": "evt_1",
        "type": "realtime.call.incoming",
        "created_at": 1,
        "data": {"call_id": "rtc_1", "sip_headers": [{"name": "From", "value": "sip:a@b"}]},
    }
    event.update(changes)
    return event


def _reason(raw: bytes) -> str:
    with pytest.raises(InvalidWebhook) as info:
        parse(raw)
    return info.value.reason


def test_an_incoming_call_goes_to_its_calls_incoming_subject() -> None:
    """realtime.call.incoming → (call_id, "incoming"), with the decoded event as sent."""
    webhook = parse(json.dumps(_event()).encode())
    assert (webhook.call_id, webhook.kind, webhook.type) == ("rtc_1", "incoming", "realtime.call.incoming")
    assert webhook.event == _event()


def test_other_event_types_are_kept_under_their_call_or_unrouted() -> None:
    """Another type is a "webhook" event under the call it names, or under _unrouted."""
    named = parse(json.dumps(_event(type="realtime.call.ended")).encode())
    unnamed = parse(json.dumps(_event(type="batch.completed", data={"id": "batch_1"})).encode())
    assert (named.call_id, named.kind) == ("rtc_1", "webhook")
    assert (unnamed.call_id, unnamed.kind) == (UNROUTED, "webhook")


def test_unknown_fields_are_kept() -> None:
    """Fields OpenAI adds later are stored as sent."""
    webhook = parse(json.dumps(_event(new_field={"x": 1})).encode())
    assert webhook.event["new_field"] == {"x": 1}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "invalid_json"),
        (b"{", "invalid_json"),
        (b'{"a": "\xff"}', "invalid_json"),
        (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
        (b'{"x":' * 10_000 + b"1" + b"}" * 10_000, "too_deep"),
        (b"null", "not_an_event"),
        (b'"text"', "not_an_event"),
        (json.dumps(_event(id="")).encode(), "not_an_event"),
        (json.dumps(_event(id=7)).encode(), "not_an_event"),
        (json.dumps(_event(type=None)).encode(), "not_an_event"),
        (json.dumps(_event(object="response")).encode(), "not_an_event"),
        (json.dumps(_event(created_at="yesterday")).encode(), "not_an_event"),
        (json.dumps(_event(created_at=True)).encode(), "not_an_event"),
        (json.dumps({k: v for k, v in _event().items() if k != "data"}).encode(), "missing_data"),
        (json.dumps(_event(data=None)).encode(), "not_an_event"),
        (json.dumps(_event(data={})).encode(), "missing_data"),
        (json.dumps(_event(data={"call_id": "rtc_1", "sip_headers": [{"name": "From"}]})).encode(), "not_an_event"),
        (json.dumps(_event(data={"call_id": "calls.x"})).encode(), "bad_call_id"),
        (json.dumps(_event(type="other", data={"call_id": "a b"})).encode(), "bad_call_id"),
    ],
)
def test_unusable_bodies_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    """Each way a body can be unusable has its own reason, one of REASONS."""
    assert _reason(raw) == reason
    assert reason in REASONS


def test_nesting_is_limited_to_32_levels() -> None:
    """An event 32 containers deep is fine; one level more is refused as too deep."""

    def nested(levels: int) -> bytes:
        inner: Any = []
        for _ in range(levels - 3):  # the event object, "data" and "x" make the first three
            inner = [inner]
        return json.dumps(_event(data={"call_id": "rtc_1", "x": inner})).encode()

    assert parse(nested(32)).call_id == "rtc_1"
    assert _reason(nested(33)) == "too_deep"


@pytest.mark.parametrize("webhook_id", ["", "wh 1", "wh\t1", "wé", "x" * 257])
def test_a_webhook_id_that_cannot_key_deduplication_is_refused(webhook_id: str) -> None:
    """Empty, spaced, non-ASCII or over-long webhook ids are refused."""
    with pytest.raises(InvalidWebhook) as info:
        check_webhook_id(webhook_id)
    assert info.value.reason == "bad_webhook_id"


def test_openai_style_webhook_ids_are_fine() -> None:
    """``wh_…`` ids (and any visible ASCII up to 256 characters) pass."""
    check_webhook_id("wh_685342e6c53c8190a1be43f081506c52")
    check_webhook_id("!" * 256)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["id", "type", "data", "object", "created_at", "call_id", "sip_headers", "name", "value"]), inner, max_size=5),
).map(lambda v: json.dumps(v).encode()))  # fmt: skip
def test_any_body_is_either_a_routable_event_or_refused_with_a_reason(raw: bytes) -> None:
    """No input raises anything but InvalidWebhook, and what is accepted has a safe subject."""
    try:
        webhook = parse(raw)
    except InvalidWebhook as exc:
        assert exc.reason in REASONS
        return
    assert events.subject(webhook.call_id, webhook.kind).startswith("calls.")


def test_a_live_incoming_call_goes_under_its_session_id() -> None:
    """``live.transport.incoming`` (and the deprecated ``live.call.incoming``) is stored under ``data.session_id``."""
    data = {"session_id": "live_1", "type": "sip", "sip_headers": [{"name": "From", "value": "sip:a@b"}]}
    for event_type in ("live.transport.incoming", "live.call.incoming"):
        webhook = parse(json.dumps(_event(type=event_type, data=data)).encode())
        assert (webhook.call_id, webhook.kind) == ("live_1", "incoming")


def test_a_live_incoming_call_without_a_safe_session_id_is_refused() -> None:
    """A Live call needs a session id that is a safe subject token, as a Realtime call needs its call id."""
    missing = _event(type="live.transport.incoming", data={"type": "sip", "sip_headers": []})
    unsafe = _event(type="live.transport.incoming", data={"session_id": "live.1>", "sip_headers": []})
    assert _reason(json.dumps(missing).encode()) == "missing_data"
    assert _reason(json.dumps(unsafe).encode()) == "bad_call_id"
