"""The seam to NATS JetStream: every service and subscriber reaches NATS through this package.

- `client` — `Bus`: connect, the CALLS stream, publish and record events, request/reply, KV buckets,
  the newest event of a subject, binding durable consumers.
- `consume` — the one way to consume acknowledged messages: `WorkQueue.run` hands each `Delivery` to a
  handler that returns an `Outcome` (`Ack`, `Retry`, `Drop`, `InProgress`, from the pure
  `switchboard.shared.outcomes`) and settles it.
- `pipeline` — pipelined publishing (`Bus.send_many` / `Bus.confirm`), by a fast path or nats-py's
  public API (``SWITCHBOARD_NATS_FAST_PATH``).
- `urls` — credentials out of NATS URLs.

Reading the log without acknowledgements (replay, live follow) is `switchboard.shared.pullreader`'s,
and the subscriber API on top of both is `switchboard.shared.subscribe`.
"""

from switchboard.shared.bus.client import ONE_SHOT_CONNECT_S, Bus, PublishResult, StreamSettings, connected
from switchboard.shared.bus.consume import Delivery, Handler, WorkQueue, sleep_or_stop
from switchboard.shared.bus.pipeline import SentBatch
from switchboard.shared.bus.urls import split_credentials
from switchboard.shared.outcomes import Ack, Drop, InProgress, Outcome, Retry

__all__ = [
    "ONE_SHOT_CONNECT_S",
    "Ack",
    "Bus",
    "Delivery",
    "Drop",
    "Handler",
    "InProgress",
    "Outcome",
    "PublishResult",
    "Retry",
    "SentBatch",
    "StreamSettings",
    "WorkQueue",
    "connected",
    "sleep_or_stop",
    "split_credentials",
]
