"""Every benchmark still runs: each script's ``--smoke`` mode (tiny sizes, real processes on loopback)
exits 0 and writes its JSON. Not a performance test: the numbers are not looked at."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_smoke(module: str, out: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{module} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    name = module.rsplit(".", 1)[1]
    results: dict[str, object] = json.loads((out / f"{name}.json").read_text())
    return results


@pytest.mark.timeout(120)
def test_intake_smoke(tmp_path: Path) -> None:
    """The intake benchmark stores and answers webhooks, and the Flask baseline answers them too."""
    results = run_smoke("bench.intake", tmp_path)
    durable = results["durable"]
    assert isinstance(durable, list) and durable[0]["stored"] == durable[0]["ok"] > 0
    answer = results["answer"]
    assert isinstance(answer, list) and {r["kind"] for r in answer} == {"switchboard", "baseline"}
    assert all(r["greeted"] > 0 for r in answer)


@pytest.mark.timeout(120)
def test_relay_smoke(tmp_path: Path) -> None:
    """The relay benchmark times relayed events from the emulator to the stream."""
    results = run_smoke("bench.relay", tmp_path)
    sweep = results["sweep"]
    assert isinstance(sweep, list) and sweep[0]["sampled_events"] > 0 and sweep[0]["latency"]["count"] > 0


@pytest.mark.timeout(120)
def test_failover_smoke(tmp_path: Path) -> None:
    """The failover benchmark sees another worker take the call after a kill -9."""
    results = run_smoke("bench.failover", tmp_path)
    repeats = results["repeats"]
    assert isinstance(repeats, list) and len(repeats) == 1 and repeats[0]["taken_by"] != repeats[0]["killed"]


@pytest.mark.timeout(120)
def test_console_smoke(tmp_path: Path) -> None:
    """The console benchmark's SSE clients read row updates while calls come and go."""
    results = run_smoke("bench.console", tmp_path)
    result = results["result"]
    assert isinstance(result, dict) and result["console_alive"] and result["latency"]["count"] > 0


@pytest.mark.timeout(120)
def test_capacity_smoke(tmp_path: Path) -> None:
    """The capacity benchmark answers calls on both systems, counts CPU and wake-ups per call, runs the floors."""
    results = run_smoke("bench.capacity", tmp_path)
    rates = results["rates"]
    assert isinstance(rates, list) and {r["kind"] for r in rates} == {"switchboard", "baseline"}
    assert all(r["greeted"] > 0 and r["cpu_ms_per_call_system"] is not None for r in rates)
    assert all(min(r["wakeups_per_call"]["nats-server"]) > 0 for r in rates if r["kind"] == "switchboard")
    floor = results["floor"]
    assert isinstance(floor, dict) and not floor["failed"] and floor["cpu_ms_per_call_total"] > 0
    variants = results["floor_variants"]
    assert isinstance(variants, list) and [v["relay_mode"] for v in variants] == ["last-acked", "atomic", "one-message"]
    assert all(not v["failed"] and v["cpu_ms_per_call_total"] > 0 for v in variants)
    tracing = results["tracing"]
    assert isinstance(tracing, dict) and tracing["on"]["greeted"] > 0 and tracing["exported_bytes"] > 0
