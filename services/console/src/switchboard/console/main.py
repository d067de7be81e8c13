"""`switchboard-console`: the operator console on CONSOLE_PORT (live calls, call pages, actions)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from switchboard.console.service import Console
from switchboard.shared.lifecycle import service_main


def main(argv: Sequence[str] | None = None) -> int:
    return service_main("switchboard-console", Console, description=__doc__, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
