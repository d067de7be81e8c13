"""The fault suite's reporting table: one row per scenario, appended as JSON lines.

Each row says how many calls the scenario placed, how many were lost (answered 200 but not stored, or
never decided, answered, greeted or ended) or doubled (more than one decision, successful accept,
greeting or `ended`, or two holders at once), and how long the system took to recover from the fault.
The file is SWITCHBOARD_FAULTS_REPORT (default build/faults.jsonl); `python -m tests.faults.table`
prints it as Markdown.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

DEFAULT_REPORT = Path("build") / "faults.jsonl"


def report_path() -> Path:
    return Path(os.environ.get("SWITCHBOARD_FAULTS_REPORT") or DEFAULT_REPORT)


class Row(msgspec.Struct, kw_only=True):
    """One scenario's result; `lost`/`doubled`/`recovery_s` stay None when the run never got to count."""

    scenario: str
    calls: int = 0
    lost: int | None = None
    doubled: int | None = None
    recovery_s: float | None = None
    outcome: str = "unknown"
    """passed / failed / error, from pytest."""
    duration_s: float | None = None
    seed: int | None = None
    note: str = ""
    test: str = ""


def append(row: Row, path: Path | None = None) -> None:
    path = path or report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        out.write(msgspec.json.encode(row) + b"\n")


def read(path: Path | None = None) -> list[Row]:
    path = path or report_path()
    if not path.exists():
        return []
    return [msgspec.json.decode(line, type=Row) for line in path.read_bytes().splitlines() if line.strip()]
