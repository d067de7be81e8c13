"""Webhook signatures as OpenAI makes them (Standard Webhooks), written apart from Switchboard's verifier.

The emulator is OpenAI's stand-in: it shares no code with what it tests, so a mistake in the ingress's
verification cannot be mirrored here and pass unseen.
"""

from __future__ import annotations

import base64
import hmac

_SECRET_PREFIX = "whsec_"


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers of one delivery.

    The key is the base64 after ``whsec_`` (else the secret's bytes); the signature is
    ``v1,`` + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")).
    """
    if secret.startswith(_SECRET_PREFIX):
        key = base64.b64decode(secret.removeprefix(_SECRET_PREFIX))
    else:
        key = secret.encode()
    content = f"{webhook_id}.{timestamp}.{body}".encode()
    signature = base64.b64encode(hmac.digest(key, content, "sha256")).decode()
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}"}
