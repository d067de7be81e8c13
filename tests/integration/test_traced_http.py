"""OpenAI's REST calls and sideband upgrades, traced: a CLIENT span each, its traceparent on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from switchboard.shared import tracing
from switchboard.shared.config import Secret
from switchboard.shared.openai import CallsClient, Sideband
from tests.fixtures.http import serving


class FakeOpenAI:
    """A loopback HTTP server that answers accept with 200 and upgrades the sideband, keeping each
    request's ``traceparent`` header."""

    def __init__(self) -> None:
        self.port = 0
        self.traceparents: list[str | None] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _accept(self, request: web.Request) -> web.Response:
        self.traceparents.append(request.headers.get("traceparent"))
        return web.json_response({})

    async def _sideband(self, request: web.Request) -> web.WebSocketResponse:
        self.traceparents.append(request.headers.get("traceparent"))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/realtime/calls/{call_id}/accept", self._accept)
        app.router.add_get("/v1/realtime", self._sideband)
        return app


def _ids(traceparents: list[str | None]) -> list[list[str]]:
    """The (trace id, span id) of each ``traceparent`` header."""
    return [(header or "").split("-")[1:3] for header in traceparents]


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    """The fake OpenAI, listening."""
    server = FakeOpenAI()
    async with serving(server.app()) as server.port:
        yield server


async def test_an_accept_is_a_client_span_whose_traceparent_openai_receives(
    openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    """The accept POST is ``POST /realtime/calls/{id}/accept`` (CLIENT, status 200) in the caller's trace,
    and the request carries that span's traceparent."""
    calls = CallsClient(openai.base_url, Secret("sk-test"))
    try:
        with tracing.span("decide"):
            await calls.accept("rtc_traced", {"type": "realtime"})
    finally:
        await calls.aclose()
    post = next(s for s in spans.get_finished_spans() if s.name == "POST /realtime/calls/{id}/accept")
    decide = next(s for s in spans.get_finished_spans() if s.name == "decide")
    assert post.kind is SpanKind.CLIENT and post.context.trace_id == decide.context.trace_id
    assert post.attributes is not None
    assert (post.attributes["http.response.status_code"], post.attributes["switchboard.call_id"]) == (200, "rtc_traced")
    assert _ids(openai.traceparents) == [[f"{post.context.trace_id:032x}", f"{post.context.span_id:016x}"]]


async def test_a_sideband_upgrade_is_a_client_span_whose_traceparent_openai_receives(
    openai: FakeOpenAI, spans: InMemorySpanExporter
) -> None:
    """Opening the sideband is ``GET /realtime`` (CLIENT), and the upgrade request carries its traceparent."""
    sideband = await Sideband.open(openai.base_url, "rtc_traced", Secret("sk-test"))
    await sideband.close()
    upgrade = next(s for s in spans.get_finished_spans() if s.name == "GET /realtime")
    assert upgrade.kind is SpanKind.CLIENT
    assert _ids(openai.traceparents) == [[f"{upgrade.context.trace_id:032x}", f"{upgrade.context.span_id:016x}"]]


async def test_untraced_requests_carry_no_traceparent(openai: FakeOpenAI) -> None:
    """With tracing off, OpenAI sees no traceparent header."""
    calls = CallsClient(openai.base_url, Secret("sk-test"))
    try:
        await calls.accept("rtc_plain", {"type": "realtime"})
    finally:
        await calls.aclose()
    assert openai.traceparents == [None]
