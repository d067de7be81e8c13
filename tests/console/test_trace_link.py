"""A call's page links to its trace (the template in SWITCHBOARD_TRACE_URL) while tracing is on."""

from __future__ import annotations

import re
from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.cli.local import LocalSystem
from switchboard.shared import tracing
from tests.console.conftest import console_url, emulator
from tests.waiting import eventually

TRACE_URL = "http://jaeger.example.com/trace/{trace_id}"


@pytest.fixture
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, spans kept in memory."""
    exporter = InMemorySpanExporter()
    tracing.configure("test", environ={}, processor=SimpleSpanProcessor(exporter))
    yield exporter
    tracing.shutdown()


@pytest.fixture
def trace_url(traced: InMemorySpanExporter) -> str:
    """A Jaeger link template, with tracing on."""
    return TRACE_URL


async def test_a_calls_page_links_to_its_trace(system: LocalSystem, operator: aiohttp.ClientSession) -> None:
    """The call record's trace id appears on the call's page as a link made from the template."""
    call_id = emulator(system).place_call("+14155550101", "+18005550100", script="short")
    hub = system.console.hub  # type: ignore[union-attr]
    await eventually(lambda: getattr(hub.board.records.get(call_id), "trace_id", None), timeout=20)
    trace_id = hub.board.records[call_id].trace_id
    async with operator.get(f"{console_url(system)}/calls/{call_id}") as r:
        page = await r.text()
    link = re.search(r'<dd id="trace"><a href="([^"]+)"', page)
    assert link is not None and link.group(1) == TRACE_URL.replace("{trace_id}", trace_id)
