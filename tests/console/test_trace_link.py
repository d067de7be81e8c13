"""A call's page links to its trace (the template in SWITCHBOARD_TRACE_URL) while tracing is on."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer
from switchboard.shared import tracing
from switchboard.shared.config import Secret, Settings
from tests.console.conftest import TOKEN, console_url, emulator
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
async def system(nats_server: NatsServer, tmp_path: Path, traced: InMemorySpanExporter) -> AsyncIterator[LocalSystem]:
    """The whole system with the console's trace link set to a Jaeger URL."""
    settings = Settings(
        nats_url=nats_server.url, emulator_port=0, ingress_port=0, ingress_host="127.0.0.1", console_port=0,
        console_token=Secret(TOKEN), trace_url=TRACE_URL,
    )  # fmt: skip
    local = LocalSystem(settings, data_dir=tmp_path, workers=1, pace=0)
    await local.start()
    try:
        yield local
    finally:
        await local.stop()


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
