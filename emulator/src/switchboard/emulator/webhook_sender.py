"""Delivering incoming-call webhooks (``realtime.call.incoming``, ``live.transport.incoming``) the way
OpenAI does: signed, retried, one ``webhook-id`` per event.

Each attempt is signed afresh (its own ``webhook-timestamp``) with the same ``webhook-id`` and body. A
non-2xx answer or a connection error is retried after the configured back-off; the sender gives up when
the delays run out or the call stops ringing (answered elsewhere, abandoned, hung up). Every attempt is
recorded on the call.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from switchboard.emulator.calls import CallRecord, WebhookDelivery
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.faults import Faults
from switchboard.emulator.ids import new_id
from switchboard.emulator.signing import signed_headers

log = structlog.get_logger(__name__)

USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
SIP_DOMAIN = "sip.example.com"


def incoming_event(record: CallRecord, event_id: str) -> dict[str, Any]:
    """The incoming-call event for a call on its surface, as OpenAI sends it.

    Realtime: ``realtime.call.incoming`` with ``data.call_id``; Live: ``live.transport.incoming`` with
    ``data.session_id`` and ``data.type: "sip"``. Both carry the SIP headers and the media security.
    """
    headers = [{"name": h.name, "value": h.value} for h in record.sip_headers]
    if record.surface == "live":
        kind = "live.transport.incoming"
        data: dict[str, Any] = {"session_id": record.call_id, "type": "sip", "sip_headers": headers}
    else:
        kind = "realtime.call.incoming"
        data = {"call_id": record.call_id, "sip_headers": headers}
    data["sip_media_security"] = "srtp"
    return {"object": "event", "id": event_id, "type": kind, "created_at": int(record.created_at), "data": data}


def invite_headers(from_number: str, to_number: str) -> list[tuple[str, str]]:
    """The SIP headers every INVITE carries (From, To, Call-ID), before any extras."""
    return [
        ("From", f"sip:{from_number}@{SIP_DOMAIN}"),
        ("To", f"sip:{to_number}@{SIP_DOMAIN}"),
        ("Call-ID", str(uuid.uuid4())),
    ]


class WebhookSender:
    """Sends one call's incoming webhook with retries; shares the emulator's HTTP client session."""

    def __init__(self, http: aiohttp.ClientSession, config: EmulatorConfig, faults: Faults) -> None:
        self._http = http
        self._config = config
        self._faults = faults

    async def deliver(self, record: CallRecord, still_ringing: Callable[[], bool]) -> bool:
        """Deliver until a 2xx, the retries run out, or the call stops ringing. True when delivered."""
        url = self._config.webhook_url
        assert url is not None, "checked when the call was placed"
        event_id = record.webhook_event_id or new_id("evt", 16)
        record.webhook_event_id = event_id
        webhook_id = new_id("wh", 16)
        body = json.dumps(incoming_event(record, event_id), separators=(",", ":"))
        bound = log.bind(call_id=record.call_id, webhook_id=webhook_id)
        delays = self._config.webhook_retry_delays_s
        for attempt in range(1, len(delays) + 2):
            if not still_ringing():
                bound.info("webhook_abandoned", reason="call_not_ringing", attempt=attempt)
                return False
            sends = 1
            fault = self._faults.take("webhook", record.call_id)
            if fault is not None:
                await asyncio.sleep(fault.delay_s)
                sends = 2 if fault.code == "duplicate" else 1
            delivered = False
            for _ in range(sends):
                if fault is not None and fault.status is not None:
                    delivery = WebhookDelivery(
                        attempt=attempt, webhook_id=webhook_id, at=time.time(), error="injected fault: not sent"
                    )
                else:
                    delivery = await self._attempt(url, attempt, webhook_id, body)
                record.webhook_deliveries.append(delivery)
                ok = delivery.status is not None and 200 <= delivery.status < 300
                delivered = delivered or ok
                if ok:
                    bound.info("webhook_delivered", attempt=attempt, status=delivery.status)
                else:
                    bound.info("webhook_failed", attempt=attempt, status=delivery.status, error=delivery.error)
            if delivered:
                return True
            if attempt <= len(delays):
                await asyncio.sleep(delays[attempt - 1])
        bound.warning("webhook_gave_up", attempts=len(delays) + 1)
        return False

    async def _attempt(self, url: str, attempt: int, webhook_id: str, body: str) -> WebhookDelivery:
        now = time.time()
        headers = {
            "user-agent": USER_AGENT,
            "content-type": "application/json",
            **signed_headers(self._config.webhook_secret, webhook_id, int(now), body),
        }
        delivery = WebhookDelivery(attempt=attempt, webhook_id=webhook_id, at=now)
        try:
            async with self._http.post(
                url,
                data=body.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._config.webhook_timeout_s),
                allow_redirects=False,
            ) as response:
                delivery.status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return delivery
