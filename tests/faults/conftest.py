"""Fixtures of the fault suite: a rig per test, and the scenario's row in the report."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults._harness import Rig, fault_seed
from tests.faults.report import Row, append

_OUTCOME = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    report: pytest.TestReport = yield
    item.stash.setdefault(_OUTCOME, {})[report.when] = report
    return report


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """The rig for one scenario (started piece by piece by the test); everything killed afterwards."""
    built = Rig(tmp_path)
    try:
        yield built
    finally:
        await built.close()


@pytest.fixture
def seed() -> int:
    """The seed of this test's fault timing (set SWITCHBOARD_FAULTS_SEED to replay a run); in its row."""
    return fault_seed()


@pytest.fixture
def rng(seed: int) -> random.Random:
    """Where the fault lands (how long NATS stays down, how long a process is frozen…)."""
    return random.Random(seed)


@pytest.fixture
def fault_row(request: pytest.FixtureRequest, seed: int) -> Iterator[Callable[..., Row]]:
    """`fault_row(scenario, calls=…)` starts this test's row in the report; it is written when the test is
    over, with pytest's verdict, whatever the test got to fill in."""
    rows: list[Row] = []
    started = time.monotonic()

    def start(scenario: str, **fields: Any) -> Row:
        assert not rows, "one row per scenario"
        rows.append(Row(scenario=scenario, test=request.node.nodeid, seed=seed, **fields))
        return rows[0]

    yield start
    if rows:
        row = rows[0]
        reports = request.node.stash.get(_OUTCOME, {})
        call = reports.get("call")
        row.outcome = "error" if call is None else call.outcome
        row.duration_s = round(time.monotonic() - started, 1)
        append(row)
