"""Per-service Prometheus registries (shared/metrics.py) and the ingress's metric set."""

from __future__ import annotations

from switchboard.ingress.telemetry import OUTCOMES, IngressMetrics
from switchboard.shared import webhooks
from switchboard.shared.metrics import CONTENT_TYPE, Metrics


def test_two_services_in_one_process_keep_their_own_metrics() -> None:
    """Two registries may define the same metric name; each renders only its own service's values."""
    first, second = Metrics("one"), Metrics("two")
    for metrics in (first, second):
        metrics.counter("things", "Things.").inc()
    first.counter("only_here", "Only in one.").inc(3)
    assert b"switchboard_one_only_here_total 3.0" in first.render()
    assert b"only_here" not in second.render()
    assert b"switchboard_two_things_total 1.0" in second.render()


def test_two_ingresses_in_one_process_do_not_clash() -> None:
    """Building the ingress's metrics twice (two replicas in one process) raises nothing."""
    IngressMetrics()
    IngressMetrics()


def test_every_outcome_and_reason_is_exported_from_the_start() -> None:
    """Each outcome and verification reason shows as 0 before anything happened (dashboards see the series)."""
    text = IngressMetrics().metrics.render().decode()
    for outcome in OUTCOMES:
        assert f'switchboard_ingress_webhooks_total{{outcome="{outcome}"}} 0.0' in text
    for reason in webhooks.REASONS:
        assert f'switchboard_ingress_verification_failures_total{{reason="{reason}"}} 0.0' in text
    assert "_created" not in text


def test_the_text_format_is_the_one_every_prometheus_reads() -> None:
    """/metrics is served as text format 0.0.4."""
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
