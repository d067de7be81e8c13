"""Reading the CALLS log in stream order, fast: replay (bounded) and follow (live), without acknowledgements.

- `reader` — `PullReader`: an ephemeral consumer per read, resumed after the last message on any failure.
- `lean` — the fast path: a NATS connection that only pulls and parses (``SWITCHBOARD_NATS_FAST_PATH``).
- `protocol` — pure parsing of what the server sends on that connection; malformed input is a
  `ProtocolError`, never a crash.

`switchboard.shared.subscribe` is the subscriber API on top of it.
"""

from switchboard.shared.pullreader.protocol import ProtocolError, Stored
from switchboard.shared.pullreader.reader import ConsumerGone, PullReader, Start

__all__ = ["ConsumerGone", "ProtocolError", "PullReader", "Start", "Stored"]
