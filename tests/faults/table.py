"""Print the fault suite's report (SWITCHBOARD_FAULTS_REPORT, default build/faults.jsonl) as a Markdown table."""

from __future__ import annotations

import sys

from tests.faults.report import Row, read, report_path


def _cell(value: object) -> str:
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown(rows: list[Row]) -> str:
    headers = ("scenario", "calls", "lost", "doubled", "recovery_s", "outcome", "secs", "note")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        cells = (r.scenario, r.calls, r.lost, r.doubled, r.recovery_s, r.outcome, r.duration_s, r.note)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> int:
    rows = read()
    if not rows:
        print(f"no fault scenarios recorded in {report_path()}")
        return 0
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
