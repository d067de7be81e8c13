"""`switchboard-projector`: keep the projections in NATS KV up to date."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from switchboard.projector.service import Projector
from switchboard.shared.lifecycle import service_main


def main(argv: Sequence[str] | None = None) -> int:
    return service_main("switchboard-projector", Projector, description=__doc__, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
