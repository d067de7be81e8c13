"""One trace per call, end to end: the services as separate processes export to a real OTLP/HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from nats.js.api import DeliverPolicy
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from switchboard.cli.natsserver import NatsServer, free_port
from switchboard.shared.bus import Bus
from tests.e2e.conftest import call_events, standalone_emulator
from tests.fixtures.http import serving
from tests.processes import Proc, spawn
from tests.waiting import eventually


class Receiver:
    """An OTLP/HTTP trace receiver: decodes each ExportTraceServiceRequest into (service, trace id, name)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        self.port = 0

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((attributes.get("service.name", ""), span.trace_id.hex(), span.name))
        return web.Response(content_type="application/x-protobuf", body=b"")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        return app

    def services_in(self, trace_id: str) -> set[str]:
        return {service for service, trace, _ in self.spans if trace == trace_id}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver on a free loopback port, for the services' ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
    started = Receiver()
    async with serving(started.app()) as started.port:
        yield started


@pytest.mark.timeout(90)
async def test_one_trace_spans_the_ingress_controller_and_session_of_a_call(
    nats_server: NatsServer, bus: Bus, receiver: Receiver, procs: list[Proc]
) -> None:
    """A call's spans from the ingress, controller and session worker share one trace id, which the stored
    ``incoming`` event carries as its ``traceparent`` and every stored message of the call in its headers."""
    traced = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
              "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
    async with standalone_emulator(nats_server.url, "sk-test-traces") as (emulator, env):
        env.update(traced)
        for service in ("ingress", "controller", "session"):
            procs.append(await spawn(service, env=env))
        call_id = emulator.place_call("+14155550101", "+18005550100", script="short")
        logged = await call_events(bus, call_id, timeout_s=30)
        incoming = next(e for e in logged if e.kind == "incoming")
        assert incoming.traceparent is not None
        trace_id = incoming.traceparent.split("-")[1]
        everyone = {"switchboard-ingress", "switchboard-controller", "switchboard-session"}
        path = {"POST /webhooks/openai", "publish calls.{call_id}.incoming", "process calls.{call_id}.incoming",
                "decide", "publish calls.{call_id}.decided", "POST /realtime/calls/{id}/accept",
                "publish calls.{call_id}.accepted", "process calls.{call_id}.accepted", "claim", "attach sideband",
                "GET /realtime", "agent turn"}  # fmt: skip

        def names() -> set[str]:
            return {name for _, trace, name in receiver.spans if trace == trace_id}

        await eventually(lambda: path <= names(), timeout=15, what="every span of the call's path, exported")
        assert receiver.services_in(trace_id) == everyone
        assert all(call_id not in name for name in names())
        assert len([n for _, trace, n in receiver.spans if trace == trace_id]) < 100
        headers = await _stored_headers(bus, call_id, len(logged))
        assert len(headers) == len(logged)
        assert [h.get("traceparent", "").split("-")[1:2] for h in headers] == [[trace_id]] * len(headers)
        assert [await p.stop() for p in procs] == [0, 0, 0]


async def _stored_headers(bus: Bus, call_id: str, count: int) -> list[dict[str, str]]:
    """The NATS headers of the first `count` messages stored for `call_id`, in stream order."""
    sub = await bus.js.subscribe(f"calls.{call_id}.>", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        return [dict((await sub.next_msg(timeout=5)).headers or {}) for _ in range(count)]
    finally:
        await sub.unsubscribe()


@pytest.mark.timeout(90)
async def test_up_traces_a_call_as_one_service_when_asked(
    tmp_path: Path, receiver: Receiver, procs: list[Proc]
) -> None:
    """`switchboard up` with the OTEL environment exports each call's trace, from the webhook to the sideband,
    as the one service ``switchboard-up``."""
    env = {"EMULATOR_PORT": str(free_port()), "INGRESS_PORT": str(free_port()), "OPENAI_API_KEY": "",
           "NATS_URL": "", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
    up = await spawn("up", "--pace", "0", "--data-dir", str(tmp_path / "data"), env=env)
    procs.append(up)
    await up.wait_for_line("Switchboard is up", timeout_s=60)
    call = await spawn("call", "--from", "+14155550101", "--to", "+18005550100", "--script", "short", "--wait",
                       env=env)  # fmt: skip
    procs.append(call)
    assert await call.wait(30) == 0

    def call_trace() -> set[str]:
        webhooks = {trace for _, trace, name in receiver.spans if name == "POST /webhooks/openai"}
        return {name for _, trace, name in receiver.spans if trace in webhooks}

    path = {"POST /webhooks/openai", "process calls.{call_id}.accepted", "attach sideband"}
    await eventually(lambda: path <= call_trace(), timeout=15, what="the call's trace from the webhook to the sideband")
    assert {service for service, _, _ in receiver.spans} == {"switchboard-up"}
    assert await up.stop(30) == 0
