"""Standard Webhooks signing and verification, byte-for-byte what the openai SDK's `webhooks.unwrap` does.

Pure functions: the ingress verifies with `verify`, the emulator and the tests sign with `sign`.
Signed content is ``f"{webhook_id}.{timestamp}.{body}"``; the key is the base64 part of a ``whsec_``
secret, or the secret's own bytes otherwise; the header carries space-separated ``v1,<base64>`` values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import timedelta

from switchboard.shared.errors import SignatureError

DEFAULT_TOLERANCE = timedelta(seconds=300)
_SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: base64 after ``whsec_``, else the raw secret (as the SDK does)."""
    if secret.startswith(_SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(_SECRET_PREFIX) :], validate=False)
        except binascii.Error as exc:
            raise ValueError("webhook secret after 'whsec_' is not valid base64") from exc
    return secret.encode()


def parse_secrets(value: str) -> tuple[str, ...]:
    """Secrets from configuration: comma-separated, several for rotation; blanks ignored."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _signature(key: bytes, webhook_id: str, timestamp: str, body: str) -> str:
    content = f"{webhook_id}.{timestamp}.{body}".encode()
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for one delivery."""
    return f"v1,{_signature(secret_key(secret), webhook_id, str(timestamp), body)}"


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: str) -> dict[str, str]:
    """All three Standard Webhooks headers for one delivery."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def verify(
    headers: Mapping[str, str],
    body: str,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> str:
    """Check a delivery's signature and timestamp; return its webhook id or raise `SignatureError`.

    `headers` must be case-insensitive for lookups (aiohttp's CIMultiDict is) or use lower-case keys.
    """
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not webhook_id:
        raise SignatureError("missing_header", "missing required header: webhook-id")
    if not timestamp:
        raise SignatureError("missing_header", "missing required header: webhook-timestamp")
    if not signatures:
        raise SignatureError("missing_header", "missing required header: webhook-signature")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("bad_timestamp", "webhook-timestamp is not an integer") from None
    window = tolerance.total_seconds()
    if now - ts > window:
        raise SignatureError("timestamp_too_old", "webhook timestamp is too old")
    if ts > now + window:
        raise SignatureError("timestamp_in_future", "webhook timestamp is too new")
    if not secrets:
        raise SignatureError("no_secret", "no webhook secret is configured")

    candidates = []
    for part in signatures.split():
        version, _, value = part.partition(",")
        if version == "v1" and value:
            candidates.append(value)
    for secret in secrets:
        expected = _signature(secret_key(secret), webhook_id, timestamp, body)
        # Compare against every candidate (no early exit on the secret loop's match position).
        if any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates):
            return webhook_id
    raise SignatureError("no_match", "the webhook signature does not match")
