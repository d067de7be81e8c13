"""An in-process stand-in for OpenAI's SIP API on both surfaces, Realtime and Live: webhooks, REST call
control, the sideband.

`Emulator` runs it (tests, `switchboard demo`/`up`); `serve` is the ``switchboard emulator`` entry point;
`EmulatorClient` drives a running one over its control API (``switchboard call``).
"""

from switchboard.emulator.calls import CallRecord, SipHeader, Surface
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.errors import EmulatorError
from switchboard.emulator.scripts import SCRIPTS, AskTool, Dtmf, Hangup, Pause, Say, Script
from switchboard.emulator.server import Emulator, serve

__all__ = [
    "SCRIPTS",
    "AskTool",
    "CallRecord",
    "Dtmf",
    "Emulator",
    "EmulatorConfig",
    "EmulatorError",
    "Hangup",
    "Pause",
    "Say",
    "Script",
    "SipHeader",
    "Surface",
    "serve",
]
