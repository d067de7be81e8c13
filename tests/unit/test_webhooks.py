"""Webhook signatures: ours agree with the openai SDK's verifier and the standardwebhooks package."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import openai
import pytest
import standardwebhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.shared.errors import SignatureError
from switchboard.shared.webhooks import parse_secrets, sign, signed_headers, verify

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
BODY = json.dumps({"object": "event", "id": "evt_1", "type": "realtime.call.incoming", "created_at": 1,
                   "data": {"call_id": "rtc_1", "sip_headers": []}})  # fmt: skip


_SDK = openai.OpenAI(api_key="x", webhook_secret=SECRET)


def test_our_signature_is_accepted_by_the_openai_sdk() -> None:
    """A delivery we sign unwraps with the SDK's own `webhooks.unwrap`."""
    headers = signed_headers(SECRET, "wh_1", int(time.time()), BODY)
    event = _SDK.webhooks.unwrap(BODY, headers)
    assert event.type == "realtime.call.incoming"


def test_standardwebhooks_signature_is_accepted_by_us() -> None:
    """A signature made by the standardwebhooks package verifies here."""
    now = datetime.now(UTC)
    signature = standardwebhooks.Webhook(SECRET).sign("wh_2", now, BODY)
    headers = {"webhook-id": "wh_2", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    assert verify(headers, BODY, [SECRET], now=time.time()) == "wh_2"


def test_any_of_several_signatures_and_secrets_verifies() -> None:
    """Rotation: several space-separated signatures and several configured secrets; one match is enough."""
    ts = int(time.time())
    header = f"v1,bm90IGl0 {sign(OTHER, 'wh_3', ts, BODY)}"
    headers = {"webhook-id": "wh_3", "webhook-timestamp": str(ts), "webhook-signature": header}
    assert verify(headers, BODY, [SECRET, OTHER], now=ts) == "wh_3"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": None}, "missing_header"),
        ({"webhook-signature": None}, "missing_header"),
        ({"webhook-timestamp": "soon"}, "bad_timestamp"),
        ({"webhook-timestamp": "-400"}, "timestamp_too_old"),
        ({"webhook-timestamp": "+400"}, "timestamp_in_future"),
        ({"webhook-signature": "v1,AAAA"}, "no_match"),
        ({"webhook-signature": "v2,"}, "no_match"),
    ],
)
def test_bad_deliveries_are_refused_with_a_reason(change: dict[str, str | None], reason: str) -> None:
    """Missing headers, bad or stale timestamps and wrong signatures raise SignatureError(reason)."""
    now = 1_750_000_000
    headers: dict[str, str] = signed_headers(SECRET, "wh_4", now, BODY)
    for key, value in change.items():
        if value is None:
            del headers[key]
        elif value.startswith(("+", "-")) and key == "webhook-timestamp":
            headers[key] = str(now + int(value))
            headers["webhook-signature"] = sign(SECRET, "wh_4", now + int(value), BODY)
        else:
            headers[key] = value
    with pytest.raises(SignatureError) as info:
        verify(headers, BODY, [SECRET], now=now)
    assert info.value.reason == reason


def test_secrets_are_comma_separated() -> None:
    """OPENAI_WEBHOOK_SECRET holds several secrets separated by commas; blanks are ignored."""
    assert parse_secrets(f" {SECRET}, ,{OTHER} ") == (SECRET, OTHER)


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=300), webhook_id=st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and
       "\n" not in s and "\r" not in s), skew=st.integers(min_value=-600, max_value=600))  # fmt: skip
def test_we_accept_exactly_what_the_sdk_accepts(body: str, webhook_id: str, skew: int) -> None:
    """For any body, id and clock skew, our verdict equals the openai SDK's verdict."""
    now = int(time.time())
    headers = signed_headers(SECRET, webhook_id, now + skew, body)
    try:
        _SDK.webhooks.verify_signature(body, headers)
        sdk_ok = True
    except openai.InvalidWebhookSignatureError:
        sdk_ok = False
    try:
        verify(headers, body, [SECRET], now=time.time())
        ours_ok = True
    except SignatureError:
        ours_ok = False
    assert ours_ok == sdk_ok
