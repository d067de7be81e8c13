"""`switchboard-ingress`: verify OpenAI's webhooks and store them durably."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from switchboard.ingress.app import Ingress
from switchboard.shared.lifecycle import service_main


def main(argv: Sequence[str] | None = None) -> int:
    return service_main("switchboard-ingress", Ingress, description=__doc__, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
