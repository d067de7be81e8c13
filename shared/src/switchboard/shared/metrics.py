"""Prometheus metrics for Switchboard's services: one registry per service, served at ``GET /metrics``.

Each service owns a `Metrics` object. Its registry is private (not prometheus-client's process-global
one), so several services in one process — ``switchboard up``, the tests — never clash over a name,
and each ``/metrics`` shows only its own service. The whole API::

    metrics = Metrics("ingress")
    stored = metrics.counter("webhooks", "Webhooks answered, by outcome.", ["outcome"])
    latency = metrics.histogram("publish_seconds", "Time to a JetStream acknowledgement.")
    stored.labels(outcome="stored").inc()      # bind `.labels(...)` once, outside the hot path
    latency.observe(0.004)
    app.router.add_get("/metrics", metrics.handle)    # aiohttp handler, Prometheus text format 0.0.4
    metrics.render()                                  # the same text, as bytes

Names are ``switchboard_<service>_<name>``; counters get prometheus-client's ``_total`` suffix (and no
``_created`` series).
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS_S", "Metrics"]

# No ``*_created`` series next to every counter: Prometheus does not use them, and they double the
# output. (A process-wide switch in prometheus-client; Switchboard's registries are its only users.)
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

# Text format 0.0.4: what every Prometheus (and most other scrapers) reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# From 0.5 ms to 10 s: bus round trips on loopback are sub-millisecond, a struggling cluster is seconds.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """One service's metrics: a private registry and factories that register into it."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """A counter ``switchboard_<service>_<name>_total``."""
        return Counter(
            name, documentation, labels, namespace="switchboard", subsystem=self.service, registry=self.registry
        )

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """A gauge ``switchboard_<service>_<name>``."""
        return Gauge(
            name, documentation, labels, namespace="switchboard", subsystem=self.service, registry=self.registry
        )

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS_S,
    ) -> Histogram:
        """A histogram ``switchboard_<service>_<name>`` (default buckets: latencies in seconds)."""
        return Histogram(
            name,
            documentation,
            labels,
            namespace="switchboard",
            subsystem=self.service,
            registry=self.registry,
            buckets=buckets,
        )

    def render(self) -> bytes:
        """Every metric of this service in the Prometheus text format."""
        return generate_latest(self.registry)

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler for ``GET /metrics``."""
        return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE})
