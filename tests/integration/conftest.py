"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from switchboard.cli.natsserver import NatsServer
from switchboard.ingress.app import Ingress
from switchboard.shared.bus import Bus
from tests.integration.test_ingress import settings_for


@pytest.fixture
async def ingress(nats_server: NatsServer, bus: Bus) -> AsyncIterator[Ingress]:
    """A started ingress on a free loopback port, with its own connection to `nats_server`."""
    service = Ingress(settings_for(nats_server.url))
    await service.start()
    try:
        yield service
    finally:
        await service.shutdown()
