"""The log's commands on recorded calls: `calls`, `transcript`, `replay`, `tail`, and the example subscriber."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest

from switchboard.cli.local import LocalSystem
from switchboard.projector.service import SUBSCRIPTION
from switchboard.shared.bus import Bus
from switchboard.shared.subscribe import Durable
from tests.e2e.conftest import call_events
from tests.waiting import eventually

CLI = [sys.executable, "-m", "switchboard"]
ROOT = Path(__file__).resolve().parents[2]


async def switchboard(*args: str, nats_url: str, timeout_s: float = 30.0) -> tuple[int, str]:
    """Run one `switchboard` command to completion; (exit code, stdout)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**os.environ, "NATS_URL": nats_url, "LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return proc.returncode, out.decode()


@pytest.fixture
async def two_calls(system: LocalSystem, bus: Bus) -> tuple[str, str]:
    """An answered two-turn call and a rejected one, both ended and projected."""
    assert system.emulator is not None
    answered = system.emulator.place_call("+14155550101", "+18005550100", script="default")
    rejected = system.emulator.place_call("+19005550000", "+18005550100")
    for call_id in (answered, rejected):
        await call_events(bus, call_id)
    projector = Durable(bus, SUBSCRIPTION)

    async def projected() -> bool:
        return await projector.pending() == 0

    await eventually(projected, timeout=15, what="the projector has applied every event")
    return answered, rejected


async def test_calls_lists_recent_calls_with_state_rule_and_outcome(
    system: LocalSystem, two_calls: tuple[str, str]
) -> None:
    """`switchboard calls` shows both calls, newest first, ended, with their rule and outcome."""
    answered, rejected = two_calls
    assert system.settings.nats_url is not None
    _, out = await switchboard("calls", nats_url=system.settings.nats_url)
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "support-line" in rows[answered] and "answered" in rows[answered] and "ended" in rows[answered]
    assert "blocked-callers" in rows[rejected] and "rejected" in rows[rejected]
    assert out.splitlines()[0].split()[:5] == ["call", "started", "from", "to", "state"]


async def test_transcript_prints_caller_and_agent_turns_in_order(
    system: LocalSystem, two_calls: tuple[str, str]
) -> None:
    """`switchboard transcript ID` prints the greeting, the caller and the agent, alternating."""
    assert system.settings.nats_url is not None
    _, out = await switchboard("transcript", two_calls[0], nats_url=system.settings.nats_url)
    speakers = [line.split()[1] for line in out.splitlines()]
    assert speakers == ["agent", "caller", "agent", "caller", "agent"]
    assert "Hi, I'd like to check on my order." in out.splitlines()[1]


async def test_replay_of_one_call_exports_exactly_its_events_as_jsonl(
    system: LocalSystem, bus: Bus, two_calls: tuple[str, str]
) -> None:
    """`replay --call ID --json` prints that call's stored envelopes, one per line, in order."""
    answered, _ = two_calls
    assert system.settings.nats_url is not None
    stored = await call_events(bus, answered)
    _, out = await switchboard("replay", "--call", answered, "--json", nats_url=system.settings.nats_url)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["id"] for line in lines] == [e.id for e in stored]
    assert {line["subject"] for line in lines} == {answered}


async def test_replay_timeline_filters_kinds_and_hides_deltas(system: LocalSystem, two_calls: tuple[str, str]) -> None:
    """The readable timeline shows each call's end with `--kind ended`, and no .delta lines by default."""
    assert system.settings.nats_url is not None
    _, ends = await switchboard("replay", "--kind", "ended", nats_url=system.settings.nats_url)
    assert [line.split()[2] for line in ends.splitlines()] == ["ended", "ended"]
    _, timeline = await switchboard("replay", "--call", two_calls[0], nats_url=system.settings.nats_url)
    assert "call ended" in timeline and ".delta" not in timeline and 'caller: "Hi' in timeline


async def test_replay_shows_the_readable_view_by_default_and_every_event_with_all(
    system: LocalSystem, bus: Bus, two_calls: tuple[str, str]
) -> None:
    """A call's timeline skips the realtime chatter unless `--all`, which shows every stored event but deltas."""
    answered, _ = two_calls
    url = system.settings.nats_url
    assert url is not None
    stored = [e.kind for e in await call_events(bus, answered)]
    _, readable = await switchboard("replay", "--call", answered[:12], nats_url=url)
    _, everything = await switchboard("replay", "--call", answered[:12], "--all", nats_url=url)
    kinds = [line.split()[2] for line in readable.splitlines()]
    assert "decided" in kinds and "rt.response.output_audio_transcript.done" in kinds
    assert "rt.response.content_part.added" not in kinds and len(kinds) < len(stored) / 2
    assert [line.split()[2] for line in everything.splitlines()] == [k for k in stored if not k.endswith(".delta")]
    assert all(line.split()[0].endswith("Z") for line in readable.splitlines())


async def test_rebuild_recomputes_the_same_calls_table(system: LocalSystem, two_calls: tuple[str, str]) -> None:
    """`replay --rebuild` recomputes the projections from the log; `calls` shows the same calls after."""
    url = system.settings.nats_url
    assert url is not None
    _, before = await switchboard("calls", "--json", nats_url=url)
    _, message = await switchboard("replay", "--rebuild", nats_url=url)
    _, after = await switchboard("calls", "--json", nats_url=url)
    assert message.startswith("rebuilt call_state, call_records and transcripts from ")
    assert after == before and len(after.splitlines()) == 2


async def test_tail_prints_ended_events_of_recorded_calls_as_json(
    system: LocalSystem, two_calls: tuple[str, str]
) -> None:
    """`tail --kind ended --from-start --json` prints each call's ended envelope, then keeps following."""
    assert system.settings.nats_url is not None
    proc = await asyncio.create_subprocess_exec(
        *CLI, "tail", "--kind", "ended", "--from-start", "--json",
        env={**os.environ, "NATS_URL": system.settings.nats_url, "LOG_LEVEL": "warning"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines = [json.loads(await asyncio.wait_for(proc.stdout.readline(), 15)) for _ in range(2)]
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 15)
    assert sorted(line["subject"] for line in lines) == sorted(two_calls)
    assert {line["type"] for line in lines} == {"call.ended"}


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("call_summary", ROOT / "examples" / "call_summary.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_the_example_subscriber_summarises_each_ended_call_once(
    system: LocalSystem, bus: Bus, two_calls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/call_summary.py prints one summary per ended call, with outcome and turns."""
    answered, rejected = two_calls
    summaries = _example().CallSummaries(bus, None)
    stop = asyncio.Event()
    runner = asyncio.create_task(summaries.run(stop))
    printed: list[str] = []

    def two_summaries() -> bool:
        printed.extend(capsys.readouterr().out.splitlines())
        return len(printed) >= 2

    try:
        await eventually(two_summaries, timeout=15, what="two summaries")
    finally:
        stop.set()
        await asyncio.wait_for(runner, 10)
    by_call = {line.split()[1].rstrip(":"): line for line in printed}
    assert sorted(by_call) == sorted(two_calls) and len(printed) == 2
    assert "answered by rule support-line" in by_call[answered] and "5 turns" in by_call[answered]
    assert "rejected by rule blocked-callers" in by_call[rejected]
