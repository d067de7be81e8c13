"""Tracing (OpenTelemetry): off unless asked, one trace across a message hop, low-cardinality names."""

from __future__ import annotations

import msgspec
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.shared import tracing
from switchboard.shared.bus.client import _subject_template
from switchboard.shared.events import make_event
from switchboard.shared.openai import route_of
from switchboard.shared.projections import CALL_RECORDS, fold
from switchboard.shared.schema import typed


def test_tracing_is_off_without_the_otel_environment() -> None:
    """No OTEL_* variables (or OTEL_TRACES_EXPORTER=none): nothing is traced and no header is added."""
    assert not tracing.configure("ingress", environ={})
    refused = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing.configure("ingress", environ=refused)
    headers: dict[str, str] = {}
    with tracing.span("publish calls.{call_id}.incoming") as span:
        tracing.inject(headers)
    assert (span, headers, tracing.enabled()) == (None, {}, False)


def test_an_otlp_endpoint_turns_tracing_on_named_after_the_service() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT alone turns it on; the service is ``switchboard-<name>`` unless renamed."""
    try:
        assert tracing.configure("controller", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
        assert tracing.enabled()
    finally:
        tracing.shutdown()


def test_a_consumer_continues_the_producers_trace_from_the_message_headers(spans: InMemorySpanExporter) -> None:
    """The traceparent injected into a message's headers makes the consumer's span a child in one trace."""
    headers: dict[str, str] = {}
    with tracing.producer_span("rtc_1", "incoming", "wh_1"):
        tracing.inject(headers)
    with tracing.consumer_span("rtc_1", "incoming", headers):
        pass
    producer, consumer = spans.get_finished_spans()
    assert (producer.name, consumer.name) == ("publish calls.{call_id}.incoming", "process calls.{call_id}.incoming")
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.system"] == "nats"
    assert consumer.attributes["messaging.message.conversation_id"] == "rtc_1"


def test_an_agent_turn_is_one_span_with_its_event_count(spans: InMemorySpanExporter) -> None:
    """A turn seen as it ends is one span under the call's trace, its events counted, not spanned."""
    with tracing.span("hold") as call:
        parent = tracing.traceparent()
    tracing.record_span("agent turn", start_ns=1, parent=parent, attributes={"switchboard.events": 42})
    turn = spans.get_finished_spans()[-1]
    assert call is not None and turn.context.trace_id == call.get_span_context().trace_id
    assert turn.attributes is not None and turn.attributes["switchboard.events"] == 42


def test_span_names_come_from_subject_templates_not_ids() -> None:
    """A command subscription of one call is named by its template."""
    assert _subject_template("cmd.rtc_abc.*") == "cmd.{call_id}.{verb}"
    assert _subject_template("cmd.*.hangup") == "cmd.{call_id}.hangup"
    assert _subject_template("tools.lookup_order") == "tools.lookup_order"


def test_the_call_record_names_the_trace_of_the_calls_first_event() -> None:
    """The call-record projection keeps the trace id of the ``traceparent`` stamped on ``incoming``."""
    incoming = make_event("rtc_1", "incoming", {"data": {"call_id": "rtc_1", "sip_headers": []}}, source="t")
    stamped = msgspec.structs.replace(incoming, traceparent=f"00-{'ab' * 16}-{'cd' * 8}-01")
    assert fold(CALL_RECORDS, [typed(stamped, seq=1)])["rtc_1"].trace_id == "ab" * 16


def test_openai_request_spans_are_named_by_route_not_by_call_id() -> None:
    """REST and sideband paths become route templates; the call id is returned for an attribute."""
    assert route_of("/v1/realtime/calls/rtc_1/accept") == ("/realtime/calls/{id}/accept", "rtc_1")
    assert route_of("/v1/live/sessions/ls_%2F1/attach") == ("/live/sessions/{id}/attach", "ls_/1")
    assert route_of("/v1/realtime") == ("/realtime", None)
