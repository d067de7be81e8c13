"""Golden event logs (recorded calls as JSONL) and the projections they must replay into."""

from __future__ import annotations

from pathlib import Path

from switchboard.shared.schema import LogEvent, from_json_line

LOGS = Path(__file__).parent / "logs"


def read_log(path: Path) -> list[LogEvent]:
    """A golden log's events, each at its line number as stream sequence (as when replayed into a fresh stream)."""
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    return [from_json_line(seq, line) for seq, line in enumerate(lines, start=1)]


def expected_path(log: Path) -> Path:
    return log.with_suffix(".expected.json")
