"""Standard Webhooks signing and verification, giving the same verdict as the openai SDK's `webhooks.unwrap`.

Pure functions: the ingress verifies with a `Verifier` (keys decoded once), the emulator and the tests
sign with `sign`. Signed content is ``f"{webhook_id}.{timestamp}.{body}"``; the key is the base64 part of
a ``whsec_`` secret, or the secret's own UTF-8 bytes otherwise (as the SDK does); the header carries
whitespace-separated ``v1,<base64>`` values, any one of which may match any configured secret.

Where the SDK and the ``standardwebhooks`` package disagree, the SDK's verdict wins (OpenAI is the
sender): a header value is the first one of that name, case-insensitively; the timestamp is whatever
Python's ``int()`` reads, signed as sent; a signature part without ``v1,`` is compared whole. Deliberate
differences, all stricter than the SDK and all pinned by tests/unit/test_webhooks.py:

- an empty ``webhook-id`` is refused (the SDK accepts it; it could not deduplicate anything);
- a ``whsec_`` secret that is not base64, or any secret that gives an empty key, is a configuration
  error at start-up (the SDK raises on every delivery, or signs with an empty key);
- a delivery whose id or body cannot be UTF-8 encoded is refused with a reason instead of a crash.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Final

from switchboard.shared.errors import SignatureError

DEFAULT_TOLERANCE = timedelta(seconds=300)
_SECRET_PREFIX = "whsec_"
_V1 = "v1,"

# Every `SignatureError.reason` a `Verifier` gives (a closed set: metrics label by it).
REASONS: Final = (
    "missing_header",
    "bad_timestamp",
    "timestamp_too_old",
    "timestamp_in_future",
    "garbled_header",
    "body_not_utf8",
    "no_match",
)


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: base64 after ``whsec_``, else the raw secret (as the SDK does).

    Raises `ValueError` (naming no part of the secret) when it is not usable.
    """
    if secret.startswith(_SECRET_PREFIX):
        try:
            # Not validate=True: the SDK's b64decode skips non-alphabet characters, and so do we.
            key = base64.b64decode(secret[len(_SECRET_PREFIX) :])
        except binascii.Error:
            raise ValueError("webhook secret after 'whsec_' is not valid base64") from None
    else:
        key = secret.encode()
    if not key:
        raise ValueError("webhook secret is empty: anyone could sign with it")
    return key


def parse_secrets(value: str) -> tuple[str, ...]:
    """Secrets from configuration: comma-separated, several for rotation; blanks ignored."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _digest(key: bytes, webhook_id: str, timestamp: str, body: str) -> bytes:
    content = f"{webhook_id}.{timestamp}.{body}".encode()
    return base64.b64encode(hmac.digest(key, content, "sha256"))


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    return _V1 + _digest(secret_key(secret), webhook_id, str(timestamp), body).decode()


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: str) -> dict[str, str]:
    """All three Standard Webhooks headers for one delivery."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def _first_header(headers: Mapping[str, str], name: str) -> str | None:
    """The first value whose name matches case-insensitively, as the SDK's `get_required_header` finds it."""
    for key, value in headers.items():
        if key.lower() == name and isinstance(value, str):
            return value
    return None


def _candidates(header: str) -> list[bytes]:
    """The signatures to compare, in order: ``v1,`` parts unwrapped, other parts whole.

    The SDK compares str with `hmac.compare_digest`, which raises on a non-ASCII part; since it stops at
    the first match, a part after a match is harmless but one before it refuses the delivery. Cutting
    the list at the first non-ASCII part gives exactly that verdict.
    """
    found: list[bytes] = []
    for part in header.split():
        value = part[3:] if part.startswith(_V1) else part
        if not value.isascii():
            break
        found.append(value.encode())
    return found


class Verifier:
    """Verifies deliveries against one or more secrets (rotation); keys are decoded once, up front."""

    __slots__ = ("_keys", "_tolerance_s")

    def __init__(self, secrets: Sequence[str], tolerance: timedelta = DEFAULT_TOLERANCE) -> None:
        """Raises `ValueError` when there is no secret or one is unusable (see `secret_key`)."""
        if not secrets:
            raise ValueError("no webhook secret is configured")
        keys = []
        for number, secret in enumerate(secrets, start=1):
            try:
                keys.append(secret_key(secret))
            except ValueError as exc:
                raise ValueError(f"webhook secret #{number}: {exc}") from None
        self._keys = tuple(keys)
        self._tolerance_s = int(tolerance.total_seconds())

    def verify(self, headers: Mapping[str, str], body: str | bytes, *, now: float) -> str:
        """Check a delivery given all its headers (any case; the first of a repeated name counts)."""
        return self.verify_values(
            _first_header(headers, "webhook-id"),
            _first_header(headers, "webhook-timestamp"),
            _first_header(headers, "webhook-signature"),
            body,
            now=now,
        )

    def verify_values(
        self,
        webhook_id: str | None,
        timestamp: str | None,
        signature: str | None,
        body: str | bytes,
        *,
        now: float,
    ) -> str:
        """Check a delivery given its three header values; return its webhook id or raise `SignatureError`."""
        if signature is None:
            raise SignatureError("missing_header", "missing required header: webhook-signature")
        if timestamp is None:
            raise SignatureError("missing_header", "missing required header: webhook-timestamp")
        if not webhook_id:
            raise SignatureError("missing_header", "missing required header: webhook-id")
        try:
            ts = int(timestamp)
        except ValueError:
            raise SignatureError("bad_timestamp", "webhook-timestamp is not an integer") from None
        now_s = int(now)  # the SDK compares whole seconds
        if now_s - ts > self._tolerance_s:
            raise SignatureError("timestamp_too_old", "webhook timestamp is too old")
        if ts > now_s + self._tolerance_s:
            raise SignatureError("timestamp_in_future", "webhook timestamp is too new")
        try:
            prefix = f"{webhook_id}.{timestamp}.".encode()
        except UnicodeEncodeError:
            raise SignatureError("garbled_header", "webhook-id is not valid UTF-8") from None
        try:
            if isinstance(body, str):
                content = prefix + body.encode()
            else:
                if not body.isascii():
                    body.decode()  # the SDK decodes bytes as UTF-8 before signing
                content = prefix + body
        except UnicodeError:
            raise SignatureError("body_not_utf8", "the body is not valid UTF-8") from None

        candidates = _candidates(signature)
        for key in self._keys:
            expected = base64.b64encode(hmac.digest(key, content, "sha256"))
            for candidate in candidates:
                if hmac.compare_digest(expected, candidate):
                    return webhook_id
        if len(candidates) < len(signature.split()):
            raise SignatureError("garbled_header", "webhook-signature holds a non-ASCII value")
        raise SignatureError("no_match", "the webhook signature does not match")


def verify(
    headers: Mapping[str, str],
    body: str | bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> str:
    """Check a delivery's signature and timestamp; return its webhook id or raise `SignatureError`.

    `headers` is any mapping (header names in any case). A configuration with no usable secret raises
    `SignatureError("no_secret")`; services build a `Verifier` once instead, failing at start-up.
    """
    try:
        verifier = Verifier(secrets, tolerance)
    except ValueError as exc:
        raise SignatureError("no_secret", str(exc)) from None
    return verifier.verify(headers, body, now=now)
