"""`switchboard-controller`: decide each call under the routing policy and tell OpenAI."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from switchboard.controller.policy import load_policy
from switchboard.controller.service import Controller
from switchboard.shared.config import Settings
from switchboard.shared.lifecycle import service_main


def _controller(settings: Settings) -> Controller:
    load_policy(settings.policy_path)  # refuse to start on an invalid policy, with its problems
    return Controller(settings)  # the controller reloads it when it changes


def main(argv: Sequence[str] | None = None) -> int:
    return service_main("switchboard-controller", _controller, description=__doc__, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
