"""`switchboard-session`: a session worker holding calls' sidebands."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta

from switchboard.session.worker import SessionWorker
from switchboard.shared.lifecycle import service_main


def main(argv: Sequence[str] | None = None) -> int:
    # 25 s to hand its calls over on SIGTERM: inside Kubernetes' default 30 s grace period.
    return service_main(
        "switchboard-session", SessionWorker, description=__doc__, argv=argv, grace=timedelta(seconds=25)
    )


if __name__ == "__main__":
    sys.exit(main())
