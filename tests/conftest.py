"""Shared test helpers: waiting for conditions, and the fixtures that start real servers."""

from __future__ import annotations

pytest_plugins = ["tests.fixtures.emulator", "tests.fixtures.nats", "tests.fixtures.system", "tests.fixtures.tracing"]
