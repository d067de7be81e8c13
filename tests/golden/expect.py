"""Write a golden log's expected projections (``NAME.expected.json``) from the current evolve functions.

    .venv/bin/python -m tests.golden.expect tests/golden/logs/NAME.jsonl

Only for a newly recorded log, or when a projection deliberately changes: read the diff before keeping
it. The file maps each projection (KV bucket) to its states by call id.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from switchboard.shared.projections import PROJECTIONS, fold
from tests.golden import expected_path, read_log


def main(log: Path) -> None:
    events = read_log(log)
    expected = {p.name: dict(sorted(fold(p, events).items())) for p in PROJECTIONS}
    out = expected_path(log)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(expected), indent=2) + b"\n")
    print(f"{out}: {', '.join(f'{name} {len(states)}' for name, states in expected.items())}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
