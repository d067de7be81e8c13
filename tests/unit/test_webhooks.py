"""Webhook signatures: ours give the openai SDK's verdict, and the standardwebhooks package's where it agrees.

The cross-library matrix freezes every verifier's clock at the same second and compares verdicts on
generated deliveries. Deliberate differences from the SDK (all stricter) are each pinned by a test
below and listed in shared/src/switchboard/shared/webhooks.py: an empty ``webhook-id``, unusable secrets (a
start-up error rather than a crash per delivery), ids or bodies that are not UTF-8. Where the SDK and
standardwebhooks disagree (non-canonical timestamps such as ``+17…`` or ``17….5``, bare signatures
without ``v1,``, repeated headers: the SDK takes the first, standardwebhooks the last, raw secrets),
we give the SDK's verdict; standardwebhooks is compared on canonical deliveries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from types import SimpleNamespace
from unittest import mock

import openai
import pytest
import standardwebhooks
import standardwebhooks.webhooks
from hypothesis import event, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from openai.lib import _webhooks as sdk_webhooks

from switchboard.emulator import signing as emulator_signing
from switchboard.shared import webhooks
from switchboard.shared.errors import SignatureError
from switchboard.shared.webhooks import Verifier, parse_secrets, secret_key, sign, signed_headers, verify

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
RAW = "a raw secret, as the SDK accepts"
BODY = json.dumps({"object": "event", "id": "evt_1", "type": "realtime.call.incoming", "created_at": 1,
                   "data": {"call_id": "rtc_1", "sip_headers": []}})  # fmt: skip
NOW = 1_750_000_000

_SDK = openai.OpenAI(api_key="x", webhook_secret=SECRET)


class _FrozenDatetime(datetime):
    """standardwebhooks reads the clock with `datetime.now`; this one stands still at NOW."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _FrozenDatetime:
        return cls.fromtimestamp(NOW, tz)


@contextmanager
def _clocks_at_now() -> Iterator[None]:
    """Both reference verifiers see the same second as ours (`now=NOW`)."""
    with (
        mock.patch.object(sdk_webhooks, "time", SimpleNamespace(time=lambda: float(NOW))),
        mock.patch.object(standardwebhooks.webhooks, "datetime", _FrozenDatetime),
    ):
        yield


def _key(secret: str) -> bytes:
    """An independent reading of a secret, as the SDK's source does it."""
    return base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()


def _sig(secret: str, webhook_id: str, timestamp: str, body: str) -> str:
    """An independent signer (the SDK has none): base64 HMAC-SHA256 of ``id.timestamp.body``."""
    content = f"{webhook_id}.{timestamp}.{body}".encode()
    return base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()


def _sdk_accepts(body: str | bytes, headers: CIMultiDict[str] | dict[str, str], secrets: list[str]) -> bool:
    """The SDK's verdict with any of `secrets` (it takes one secret; rotation = any of them)."""
    for secret in secrets:
        try:
            _SDK.webhooks.verify_signature(body, headers, secret=secret)
            return True
        except Exception:  # InvalidWebhookSignatureError, or ValueError/TypeError/…: a refusal either way
            continue
    return False


def _sw_accepts(body: str, headers: dict[str, str], secrets: list[str]) -> bool:
    for secret in secrets:
        try:
            standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)
            return True
        except Exception:  # WebhookVerificationError, or a crash on a malformed header: a refusal
            continue
    return False


def _we_accept(body: str | bytes, headers: CIMultiDict[str] | dict[str, str], secrets: list[str]) -> bool:
    try:
        Verifier(secrets).verify(headers, body, now=NOW)
    except SignatureError:
        return False
    return True


# --- signing with each library ---------------------------------------------------------------------


def test_our_signature_is_accepted_by_the_openai_sdk() -> None:
    """A delivery we sign unwraps with the SDK's own `webhooks.unwrap`."""
    with _clocks_at_now():
        event = _SDK.webhooks.unwrap(BODY, signed_headers(SECRET, "wh_1", NOW, BODY))
    assert event.type == "realtime.call.incoming"


def test_our_signature_is_accepted_by_standardwebhooks() -> None:
    """A delivery we sign verifies with the standardwebhooks package."""
    with _clocks_at_now():
        payload = standardwebhooks.Webhook(SECRET).verify(BODY, signed_headers(SECRET, "wh_1", NOW, BODY))
    assert payload["id"] == "evt_1"


@pytest.mark.parametrize("secret", [SECRET, "a-raw-secret"])
def test_the_emulators_signature_is_accepted_by_the_openai_sdk_and_by_us(secret: str) -> None:
    """The emulator signs apart from our code, and its deliveries unwrap with the SDK and verify here."""
    headers = emulator_signing.signed_headers(secret, "wh_3", NOW, BODY)
    with _clocks_at_now():
        event = openai.OpenAI(api_key="sk-test", webhook_secret=secret).webhooks.unwrap(BODY, headers)
    assert event.type == "realtime.call.incoming"
    assert verify(headers, BODY, [secret], now=NOW) == "wh_3"


def test_standardwebhooks_signature_is_accepted_by_us() -> None:
    """A signature made by the standardwebhooks package verifies here."""
    signature = standardwebhooks.Webhook(SECRET).sign("wh_2", datetime.fromtimestamp(NOW, UTC), BODY)
    headers = {"webhook-id": "wh_2", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    assert verify(headers, BODY, [SECRET], now=NOW) == "wh_2"


def test_raw_secrets_verify_as_in_the_sdk() -> None:
    """A secret without ``whsec_`` is used as raw bytes, and the SDK agrees on the verdict."""
    headers = signed_headers(RAW, "wh_raw", NOW, BODY)
    with _clocks_at_now():
        assert _sdk_accepts(BODY, headers, [RAW])
    assert verify(headers, BODY, [RAW], now=NOW) == "wh_raw"
    assert not _we_accept(BODY, headers, [SECRET])


def test_any_of_several_signatures_and_secrets_verifies() -> None:
    """Rotation: several space-separated signatures and several configured secrets; one match is enough."""
    header = f"v1,bm90IGl0 {sign(OTHER, 'wh_3', NOW, BODY)}"
    headers = {"webhook-id": "wh_3", "webhook-timestamp": str(NOW), "webhook-signature": header}
    assert verify(headers, BODY, [SECRET, OTHER], now=NOW) == "wh_3"


# --- refusals, each with its reason ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": None}, "missing_header"),
        ({"webhook-id": ""}, "missing_header"),
        ({"webhook-timestamp": None}, "missing_header"),
        ({"webhook-signature": None}, "missing_header"),
        ({"webhook-timestamp": "soon"}, "bad_timestamp"),
        ({"webhook-timestamp": "1750000000.5"}, "bad_timestamp"),
        ({"webhook-timestamp": "-301"}, "timestamp_too_old"),
        ({"webhook-timestamp": "+301"}, "timestamp_in_future"),
        ({"webhook-signature": "v1,AAAA"}, "no_match"),
        ({"webhook-signature": "v2,"}, "no_match"),
        ({"webhook-signature": ""}, "no_match"),
        ({"webhook-signature": "v1,ÄÖÜ"}, "garbled_header"),
    ],
)
def test_bad_deliveries_are_refused_with_a_reason(change: dict[str, str | None], reason: str) -> None:
    """Missing headers, bad or stale timestamps and wrong signatures raise SignatureError(reason)."""
    headers: dict[str, str] = signed_headers(SECRET, "wh_4", NOW, BODY)
    for key, value in change.items():
        if value is None:
            del headers[key]
        elif value.startswith(("+", "-")) and key == "webhook-timestamp":
            headers[key] = str(NOW + int(value))
            headers["webhook-signature"] = sign(SECRET, "wh_4", NOW + int(value), BODY)
        else:
            headers[key] = value
    with pytest.raises(SignatureError) as info:
        verify(headers, BODY, [SECRET], now=NOW)
    assert info.value.reason == reason
    assert info.value.reason in webhooks.REASONS


@pytest.mark.parametrize(("skew", "accepted"), [(-300, True), (-301, False), (300, True), (301, False)])
def test_the_tolerance_is_300_seconds_both_ways_as_in_the_sdk(skew: int, accepted: bool) -> None:
    """A timestamp exactly 300 s old or ahead verifies, 301 s does not; the SDK draws the same line."""
    headers = signed_headers(SECRET, "wh_5", NOW + skew, BODY)
    with _clocks_at_now():
        assert _sdk_accepts(BODY, headers, [SECRET]) is accepted
        assert _sw_accepts(BODY, headers, [SECRET]) is accepted
    assert _we_accept(BODY, headers, [SECRET]) is accepted


def test_the_clock_is_read_in_whole_seconds_like_the_sdk() -> None:
    """300.9 s after the timestamp is still inside the window: the SDK truncates `now` to a second."""
    headers = signed_headers(SECRET, "wh_6", NOW - 300, BODY)
    assert verify(headers, BODY, [SECRET], now=NOW + 0.9) == "wh_6"


def test_a_repeated_header_counts_by_its_first_value_as_in_the_sdk() -> None:
    """With two ``webhook-id`` headers the first is the one signed and returned; the SDK reads the same."""
    good = signed_headers(SECRET, "wh_first", NOW, BODY)
    headers: CIMultiDict[str] = CIMultiDict(good)
    headers.add("Webhook-Id", "wh_second")
    with _clocks_at_now():
        assert _sdk_accepts(BODY, headers, [SECRET])
    assert verify(headers, BODY, [SECRET], now=NOW) == "wh_first"
    reordered: CIMultiDict[str] = CIMultiDict([("webhook-id", "wh_second"), *good.items()])
    with _clocks_at_now():
        assert not _sdk_accepts(BODY, reordered, [SECRET])
    assert not _we_accept(BODY, reordered, [SECRET])


def test_header_names_match_in_any_case() -> None:
    """``Webhook-Signature`` and ``WEBHOOK-ID`` are the same headers, in a plain dict too."""
    headers = {k.upper(): v for k, v in signed_headers(SECRET, "wh_7", NOW, BODY).items()}
    assert verify(headers, BODY, [SECRET], now=NOW) == "wh_7"


def test_a_bare_signature_without_v1_counts_as_in_the_sdk() -> None:
    """The SDK compares a part without ``v1,`` whole, so a bare base64 signature verifies (not in standardwebhooks)."""
    headers = signed_headers(SECRET, "wh_8", NOW, BODY)
    headers["webhook-signature"] = headers["webhook-signature"].removeprefix("v1,")
    with _clocks_at_now():
        assert _sdk_accepts(BODY, headers, [SECRET])
        assert not _sw_accepts(BODY, headers, [SECRET])
    assert _we_accept(BODY, headers, [SECRET])


def test_a_non_ascii_part_before_the_match_refuses_after_it_does_not() -> None:
    """The SDK raises on a non-ASCII part it reaches before a match; we give the same two verdicts."""
    good = sign(SECRET, "wh_9", NOW, BODY)
    for header, accepted in ((f"v1,é {good}", False), (f"{good} v1,é", True)):
        headers = {"webhook-id": "wh_9", "webhook-timestamp": str(NOW), "webhook-signature": header}
        with _clocks_at_now():
            assert _sdk_accepts(BODY, headers, [SECRET]) is accepted
        assert _we_accept(BODY, headers, [SECRET]) is accepted


def test_an_empty_webhook_id_is_refused_unlike_the_sdk() -> None:
    """Deliberate: the SDK accepts a signature over an empty id; we refuse it (nothing to deduplicate by)."""
    signature = f"v1,{_sig(SECRET, '', str(NOW), BODY)}"
    headers = {"webhook-id": "", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    with _clocks_at_now():
        assert _sdk_accepts(BODY, headers, [SECRET])
        assert not _sw_accepts(BODY, headers, [SECRET])
    assert not _we_accept(BODY, headers, [SECRET])


def test_a_body_that_is_not_utf8_is_refused() -> None:
    """Bytes that are not UTF-8 are refused as the SDK refuses them (it cannot decode them)."""
    body = b'{"x": "\xff"}'
    content = b"wh_10." + str(NOW).encode() + b"." + body
    sig = base64.b64encode(hmac.new(secret_key(SECRET), content, hashlib.sha256).digest()).decode()
    headers = {"webhook-id": "wh_10", "webhook-timestamp": str(NOW), "webhook-signature": f"v1,{sig}"}
    with _clocks_at_now():
        assert not _sdk_accepts(body, headers, [SECRET])
    with pytest.raises(SignatureError) as info:
        verify(headers, body, [SECRET], now=NOW)
    assert info.value.reason == "body_not_utf8"


def test_bytes_and_str_bodies_verify_alike() -> None:
    """A UTF-8 body verifies the same whether it arrives as bytes or as text."""
    body = '{"name": "Zoë ☎"}'
    headers = signed_headers(SECRET, "wh_11", NOW, body)
    assert verify(headers, body.encode(), [SECRET], now=NOW) == verify(headers, body, [SECRET], now=NOW)


def test_signatures_are_compared_in_constant_time() -> None:
    """Every candidate signature is compared with `hmac.compare_digest`, never with ``==``."""
    headers = signed_headers(SECRET, "wh_12", NOW, BODY)
    headers["webhook-signature"] = f"v1,AAAA v1,BBBB {headers['webhook-signature']}"
    with mock.patch.object(webhooks.hmac, "compare_digest", wraps=hmac.compare_digest) as compare:
        verify(headers, BODY, [OTHER, SECRET], now=NOW)
    assert compare.call_count == 6  # 3 candidates against OTHER, then all 3 against SECRET


# --- secrets ---------------------------------------------------------------------------------------


def test_secrets_are_comma_separated() -> None:
    """OPENAI_WEBHOOK_SECRET holds several secrets separated by commas; blanks are ignored."""
    assert parse_secrets(f" {SECRET}, ,{OTHER} ") == (SECRET, OTHER)


@pytest.mark.parametrize("secret", ["whsec_abc", "whsec_A", "whsec_QUJDRA="])
def test_a_garbled_whsec_secret_fails_at_start_up_where_the_sdk_fails_every_delivery(secret: str) -> None:
    """Base64 the SDK cannot decode raises on each of its verifications; we refuse the configuration."""
    headers = signed_headers(SECRET, "wh_13", NOW, BODY)
    with _clocks_at_now(), pytest.raises(binascii.Error):
        _SDK.webhooks.verify_signature(BODY, headers, secret=secret)
    with pytest.raises(ValueError, match="secret #2: webhook secret after 'whsec_' is not valid base64") as info:
        Verifier([SECRET, secret])
    assert secret[6:] not in str(info.value)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_===="])
def test_a_secret_with_an_empty_key_is_refused(secret: str) -> None:
    """Deliberate: an empty HMAC key (the SDK would sign with it) is a configuration error."""
    with pytest.raises(ValueError, match="empty"):
        Verifier([secret])


def test_stray_characters_in_a_whsec_secret_are_skipped_as_in_the_sdk() -> None:
    """The SDK's base64 decoding skips non-alphabet characters; the key, and so the verdict, is the same."""
    messy = SECRET[:10] + "!" + SECRET[10:]
    headers = signed_headers(SECRET, "wh_14", NOW, BODY)
    with _clocks_at_now():
        assert _sdk_accepts(BODY, headers, [messy])
    assert _we_accept(BODY, headers, [messy])


def test_no_secret_is_a_configuration_error() -> None:
    """A verifier needs at least one secret."""
    with pytest.raises(ValueError, match="no webhook secret"):
        Verifier([])


# --- the generated matrix --------------------------------------------------------------------------

_whsec = st.binary(min_size=1, max_size=48).map(lambda b: "whsec_" + base64.b64encode(b).decode())
_raw = st.text(min_size=1, max_size=24).filter(lambda s: not s.startswith("whsec_"))
_secrets = st.one_of(_whsec, _raw)
_names = {
    "webhook-id": ["webhook-id", "Webhook-Id", "WEBHOOK-ID"],
    "webhook-timestamp": ["webhook-timestamp", "Webhook-Timestamp"],
    "webhook-signature": ["webhook-signature", "Webhook-Signature", "WEBHOOK-signature"],
}


_visible = st.text(st.characters(exclude_categories=("Zs", "Zl", "Zp", "Cc", "Cs")), min_size=1, max_size=24)


def _sometimes(draw: st.DrawFn, percent: int) -> bool:
    return draw(st.integers(0, 99)) < percent


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[str, CIMultiDict[str], list[str], str]:
    """A delivery that is right, or wrong in one or several ways (secret, clock, header, signature)."""
    configured = draw(st.lists(_secrets, min_size=1, max_size=3, unique=True))
    signer = draw(_secrets) if _sometimes(draw, 15) else draw(st.sampled_from(configured))
    body = draw(st.text(max_size=120))
    webhook_id = "" if _sometimes(draw, 8) else draw(st.text(min_size=1, max_size=24))
    if _sometimes(draw, 70):
        skew = draw(st.integers(-299, 299))
    else:
        skew = draw(st.one_of(st.sampled_from([-301, -300, 300, 301]), st.integers()))
    form = draw(st.sampled_from(["+{}", " {} ", "{}.0", "0{}", "{}x", "", "1_{}"])) if _sometimes(draw, 25) else "{}"
    timestamp = form.format(NOW + skew)
    good = _sig(signer, webhook_id, timestamp, body)
    other_part = st.one_of(
        st.just(f"v2,{good}"),
        st.just(good),
        st.binary(min_size=32, max_size=32).map(lambda b: "v1," + base64.b64encode(b).decode()),
        _visible,
    )
    parts = draw(st.lists(other_part, max_size=3))
    if _sometimes(draw, 75):
        parts.insert(draw(st.integers(0, len(parts))), f"v1,{good}")
    signature = draw(st.sampled_from([" ", "  ", "\t", " \u3000"])).join(parts)
    values = {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if not _sometimes(draw, 5):  # else the header is missing
            pairs.append((draw(st.sampled_from(_names[name])), value))
    if _sometimes(draw, 20):  # repeated headers, before or after the real ones
        for _ in range(draw(st.integers(1, 2))):
            name = draw(st.sampled_from(_names[draw(st.sampled_from(list(_names)))]))
            pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(st.text(max_size=12))))
    first_id = next((v for k, v in pairs if k.lower() == "webhook-id"), None)
    return body, CIMultiDict(pairs), configured, first_id or ""


@settings(max_examples=400, deadline=None)
@given(delivery=_deliveries())
def test_we_accept_exactly_what_the_sdk_accepts(delivery: tuple[str, CIMultiDict[str], list[str], str]) -> None:
    """For any delivery — right, or wrong in any mix of ways — our verdict is the SDK's (empty ids aside)."""
    body, headers, secrets, first_id = delivery
    with _clocks_at_now():
        sdk_ok = _sdk_accepts(body, headers, secrets)
    expected = sdk_ok and first_id != ""  # the one deliberate difference on a valid configuration
    event(f"sdk accepts: {sdk_ok}, expected: {expected}")
    assert _we_accept(body, headers, secrets) is expected


@st.composite
def _canonical_deliveries(draw: st.DrawFn) -> tuple[str, dict[str, str], list[str]]:
    """Deliveries both libraries read the same way: whsec secrets, integer timestamps, ``vN,<base64>`` parts."""
    configured = draw(st.lists(_whsec, min_size=1, max_size=3, unique=True))
    signer = draw(st.one_of(st.sampled_from(configured), _whsec))
    body = draw(st.text(max_size=120))
    webhook_id = draw(_visible)
    timestamp = str(NOW + draw(st.integers(-310, 310)))
    good = _sig(signer, webhook_id, timestamp, body)
    wrong = st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode())
    part = st.one_of(st.just(f"v1,{good}"), st.just(f"v2,{good}"), wrong.map(lambda s: f"v1,{s}"))
    signature = " ".join(draw(st.lists(part, min_size=1, max_size=3)))
    headers = {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    return body, headers, configured


@settings(max_examples=200, deadline=None)
@given(delivery=_canonical_deliveries())
def test_the_three_verifiers_agree_on_canonical_deliveries(delivery: tuple[str, dict[str, str], list[str]]) -> None:
    """On canonical deliveries standardwebhooks, the SDK and we all give the same verdict."""
    body, headers, secrets = delivery
    with _clocks_at_now():
        sdk_ok = _sdk_accepts(body, headers, secrets)
        sw_ok = _sw_accepts(body, headers, secrets)
    event(f"accepted: {sdk_ok}")
    assert sdk_ok == sw_ok == _we_accept(body, headers, secrets)


def test_the_tolerance_is_configurable() -> None:
    """A verifier built with a shorter tolerance refuses what the default would take."""
    headers = signed_headers(SECRET, "wh_15", NOW - 60, BODY)
    assert Verifier([SECRET]).verify(headers, BODY, now=NOW) == "wh_15"
    with pytest.raises(SignatureError, match="too old"):
        Verifier([SECRET], tolerance=timedelta(seconds=30)).verify(headers, BODY, now=NOW)
