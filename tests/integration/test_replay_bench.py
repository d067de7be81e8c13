"""The replay benchmark still runs (on 2,000 events) and reports every measurement."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "replay.py"


async def test_replay_bench_smoke_mode_prints_a_table_and_json() -> None:
    """`bench/replay.py --smoke` exits 0 and ends with a JSON report covering each way of reading."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH), "--smoke", env={**os.environ, "LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    rows = {row["what"]: row for row in report["results"]}
    assert report["events"] == 2000 and len(rows) == 7
    assert rows["replay_stored (raw, replay --json)"]["events"] == 2000
    assert rows["rebuild projections into KV"]["events"] == 2000
    assert "events/s" in out.decode()
