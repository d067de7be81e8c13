"""One trace per call: OpenTelemetry spans across the services, W3C ``traceparent`` in NATS headers.

Off unless the standard environment asks for it: ``OTEL_TRACES_EXPORTER=otlp`` (or ``console``), or an
OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) with no exporter
named; ``OTEL_TRACES_EXPORTER=none`` turns it off whatever else is set. Spans go out over OTLP/HTTP
(protobuf) in batches; ``OTEL_SERVICE_NAME`` names the service (default ``switchboard-<service>``), and
``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG`` sample as the SDK defines. With tracing off, `span`
is one attribute check and a no-op context manager, and nothing is injected into messages.

The services make the spans of a call's path (the webhook, its publish, the controller's processing,
the worker's claim and attach, tool calls, commands) with `span`; OpenAI's REST calls and sideband
upgrades are OpenTelemetry's aiohttp client instrumentation (`http_client_tracing`). `Bus.publish` puts
the current span's ``traceparent`` in each message's headers (the session's relay puts its call's),
`Bus.request` too (`inject`), and a consumer continues the trace from a message's headers (`extract`).
The ingress also stamps the call's first event with the CloudEvents distributed-tracing extension
(``traceparent``), so replays and projections can link a call to its trace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "SpanKind",
    "annotate",
    "configure",
    "consumer_span",
    "enabled",
    "extract",
    "http_client_tracing",
    "inject",
    "producer_span",
    "record_span",
    "shutdown",
    "span",
    "trace_ids",
    "traceparent",
]  # fmt: skip

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None


def _exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    """The exporter the environment asks for, or None when tracing stays off."""
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if named == "none" or (not named and not endpoint):
        return None
    if named == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: the OTEL_EXPORTER_OTLP_* variables


def configure(
    service: str, *, environ: Mapping[str, str] | None = None, processor: SpanProcessor | None = None
) -> bool:
    """Turn tracing on for this process if the environment asks (or `processor` is given, in tests);
    whether it is on. `service` names the process (``ingress`` → ``switchboard-ingress``)."""
    global _provider, _tracer
    env = os.environ if environ is None else environ
    if processor is None:
        exporter = _exporter(env)
        if exporter is None:
            return False
        processor = BatchSpanProcessor(exporter)
    name = env.get("OTEL_SERVICE_NAME") or f"switchboard-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor)
    shutdown()
    _provider, _tracer = provider, provider.get_tracer("switchboard")
    return True


def shutdown() -> None:
    """Send what is still buffered and turn tracing off."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


def enabled() -> bool:
    return _tracer is not None


_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()
"""What `span` and its kin return while tracing is off: one shared do-nothing context manager."""


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Mapping[str, str] | str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span around the block, current inside it (None when tracing is off). `parent`: a message's
    headers or a ``traceparent`` to continue (else the current span's trace). Name spans from templates
    (``publish calls.{call_id}.incoming``), never from ids."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    return _span(tracer, name, kind, parent, attributes)


@contextlib.contextmanager
def _span(
    tracer: trace.Tracer,
    name: str,
    kind: SpanKind,
    parent: Mapping[str, str] | str | None,
    attributes: Mapping[str, Any] | None,
) -> Iterator[Span]:
    carrier = {"traceparent": parent} if isinstance(parent, str) else parent
    parent_context = _propagator.extract(carrier) if carrier else None
    with tracer.start_as_current_span(
        name, context=parent_context, kind=kind, attributes=dict(attributes or {}), record_exception=True
    ) as current:
        yield current


def _messaging(operation: str, call_id: str, kind: str, message_id: str | None) -> dict[str, Any]:
    """The messaging semantic conventions' attributes of a message on ``calls.<call_id>.<kind>``."""
    attributes: dict[str, Any] = {
        "messaging.system": "nats",
        "messaging.operation.type": operation,
        "messaging.destination.name": f"calls.{{call_id}}.{kind}",
        "messaging.message.conversation_id": call_id,
    }
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    return attributes


def producer_span(call_id: str, kind: str, message_id: str | None = None) -> contextlib.AbstractContextManager[Any]:
    """``publish calls.{call_id}.<kind>``: a PRODUCER span around storing one of a call's events."""
    if _tracer is None:
        return _OFF
    return span(f"publish calls.{{call_id}}.{kind}", kind=SpanKind.PRODUCER,
                attributes=_messaging("publish", call_id, kind, message_id))  # fmt: skip


def consumer_span(
    call_id: str,
    kind: str,
    headers: Mapping[str, str] | None,
    message_id: str | None = None,
    *,
    fallback: str | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """``process calls.{call_id}.<kind>``: a CONSUMER span continuing the trace in a message's headers
    (or the `fallback` ``traceparent``, e.g. the event's own, for a message stored without one)."""
    if _tracer is None:
        return _OFF
    parent: Mapping[str, str] | str | None = extract(headers) or fallback
    return span(f"process calls.{{call_id}}.{kind}", kind=SpanKind.CONSUMER, parent=parent,
                attributes=_messaging("process", call_id, kind, message_id))  # fmt: skip


def record_span(
    name: str, *, start_ns: int, parent: str | None = None, attributes: Mapping[str, Any] | None = None
) -> None:
    """A span that began at `start_ns` (``time.time_ns()``) and ends now, e.g. an agent turn seen as it
    finished; counts of what it covered go in `attributes` (never a span per relayed event)."""
    tracer = _tracer
    if tracer is None:
        return
    parent_context = _propagator.extract({"traceparent": parent}) if parent else None
    tracer.start_span(name, context=parent_context, start_time=start_ns, attributes=dict(attributes or {})).end()


def http_client_tracing(route: Callable[[str], tuple[str, str | None]]) -> list[aiohttp.TraceConfig]:
    """OpenTelemetry's aiohttp client instrumentation, for a client session's ``trace_configs`` while
    tracing is on (none when off): a CLIENT span per request, with the request's ``traceparent`` header.
    `route` turns a URL path into a template to name the span with, and the call id it names (if any):
    ``/v1/realtime/calls/rtc_1/accept`` → (``/realtime/calls/{id}/accept``, ``rtc_1``)."""
    provider = _provider
    if provider is None:
        return []
    from opentelemetry.instrumentation._semconv import _StabilityMode
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    def named(request_span: Span | None, params: aiohttp.TraceRequestStartParams) -> None:
        if request_span is None or not request_span.is_recording():
            return
        template, call_id = route(params.url.path)
        request_span.update_name(f"{params.method} {template}")
        request_span.set_attribute("http.route", template)
        if call_id is not None:
            request_span.set_attribute("switchboard.call_id", call_id)

    # The stable HTTP conventions (``http.request.method``, ``url.full``…), as the rest of the spans use.
    return [create_trace_config(request_hook=named, tracer_provider=provider, sem_conv_opt_in_mode=_StabilityMode.HTTP)]


def annotate(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the current span (nothing when tracing is off)."""
    if _tracer is not None:
        trace.get_current_span().set_attributes(dict(attributes))


def inject(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to message headers, if tracing is on."""
    if _tracer is not None:
        _propagator.inject(headers, context=otel_context.get_current())


def traceparent() -> str | None:
    """The current span's W3C ``traceparent``, or None (tracing off, or no span)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def extract(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """The trace context in message headers (to pass as `span`'s `parent`), or None."""
    if not headers or "traceparent" not in headers:
        return None
    return {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span as hex, for log lines; None without one."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
