"""The ingress's Prometheus metrics, each label value bound once so the request path only increments.

- ``switchboard_ingress_webhooks_total{outcome}``: every answer to ``POST /webhooks/openai`` —
  ``stored``, ``duplicate``, ``bad_signature``, ``invalid``, ``too_large``, ``unsupported_media_type``,
  ``timeout``, ``unavailable``.
- ``switchboard_ingress_verification_failures_total{reason}``: signature refusals by reason.
- ``switchboard_ingress_invalid_events_total{reason}``: verified bodies refused as events, by reason.
- ``switchboard_ingress_publish_seconds``: time from publish to JetStream's acknowledgement (or failure).
- ``switchboard_ingress_duplicates_total``: publishes JetStream recognised as a repeated ``webhook-id``.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

from switchboard.ingress import validation
from switchboard.shared import webhooks
from switchboard.shared.metrics import Metrics

OUTCOMES: Final = (
    "stored",
    "duplicate",
    "bad_signature",
    "invalid",
    "too_large",
    "unsupported_media_type",
    "timeout",
    "unavailable",
)


class IngressMetrics:
    """The ingress's counters and histogram, in their own registry."""

    def __init__(self) -> None:
        self.metrics = Metrics("ingress")
        webhooks_total = self.metrics.counter("webhooks", "Webhooks answered, by outcome.", ["outcome"])
        self.outcome: dict[str, Counter] = {o: webhooks_total.labels(outcome=o) for o in OUTCOMES}
        failures = self.metrics.counter(
            "verification_failures", "Webhooks refused by signature verification, by reason.", ["reason"]
        )
        self.verification_failure: dict[str, Counter] = {r: failures.labels(reason=r) for r in webhooks.REASONS}
        invalid = self.metrics.counter("invalid_events", "Verified webhooks refused as events, by reason.", ["reason"])
        self.invalid_event: dict[str, Counter] = {r: invalid.labels(reason=r) for r in validation.REASONS}
        self.publish_seconds = self.metrics.histogram(
            "publish_seconds", "Time from publishing a webhook to JetStream's acknowledgement or failure."
        )
        self.duplicates = self.metrics.counter(
            "duplicates", "Publishes JetStream recognised as an already stored webhook-id."
        )
