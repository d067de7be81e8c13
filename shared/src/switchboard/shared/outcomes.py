"""What a consumer's handler says should happen to a message, as data (pure: no I/O imports).

`switchboard.shared.bus.consume` turns each into its JetStream acknowledgement; pure decisions such as the
controller's redelivery plan return them without touching NATS.
"""

from __future__ import annotations

import msgspec

__all__ = ["Ack", "Drop", "InProgress", "Outcome", "Retry"]


class Ack(msgspec.Struct, frozen=True):
    """Done: remove the message from the consumer."""


class Retry(msgspec.Struct, frozen=True):
    """Not now: deliver it again after `delay_s` (bounded by the consumer's max_deliver)."""

    delay_s: float
    reason: str = ""


class Drop(msgspec.Struct, frozen=True):
    """Never: the message cannot be handled (poison); do not deliver it again."""

    reason: str


class InProgress(msgspec.Struct, frozen=True):
    """Still being worked on: the handler's owner holds the message and settles it later."""


Outcome = Ack | Retry | Drop | InProgress
