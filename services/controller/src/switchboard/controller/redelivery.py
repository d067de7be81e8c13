"""What becomes of a controller message that was not simply handled: retried when, dropped, or resumed.

The controller's three durable consumers hand each delivery to a handler in `service`: ``controller``
(an incoming call: decide it and carry the decision out at OpenAI), ``controller-ended`` (give the call's
capacity slot back) and ``controller-refers`` (watch a refer until its timeout). A handler that is done
returns `Ack`; one that met a `Failure` returns what `plan` makes of it for the delivery's attempt number
(1 for the first delivery):

- `Unreadable`: not an event this consumer can read: `Drop` it (delivering it again cannot help).
- `BusDown`: NATS did not answer a read or a write: `Retry` after the consumer's `Backoff` for that
  attempt. Incoming calls and releases retry every second (a ringing call and a freed slot cannot wait;
  the ``controller`` consumer's ``max_deliver`` bounds the tries); refer watches double from 2 s to 30 s,
  so their `service.REFER_MAX_DELIVER` deliveries outlast over 20 minutes of outage.
- `NotDue`: a refer watch looked at before its timeout has run out: `Retry` when it is due.

A call whose decision another delivery stored first is `plan_duplicate`'s: `Ack` on a first delivery (its
decider carries it out), when nothing can be read back, or when OpenAI's answer is recorded already;
otherwise `Resume`: its decider died between storing the decision and recording OpenAI's answer, so this
redelivery carries out the stored decision (never a new one).

OpenAI refusing a request is not a redelivery matter: the refusal is recorded (``failed``, then ``ended``)
and the message acknowledged, since asking again would only repeat it.

Pure: no clock, no I/O. The outcome types come from `switchboard.shared.bus`, where every consumer's
settling lives.
"""

from __future__ import annotations

import msgspec

from switchboard.shared.outcomes import Ack, Drop, Outcome, Retry


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """Retry delays that double from `first_s` on each attempt, up to `max_s`."""

    first_s: float
    max_s: float

    def delay_s(self, attempt: int) -> float:
        """The delay before delivery `attempt` + 1 (attempt 1 waits `first_s`)."""
        doublings = min(max(attempt, 1) - 1, 64)  # far past any max_s, and no float overflow
        return min(self.first_s * 2.0**doublings, self.max_s)


DECISION_RETRY = Backoff(first_s=1.0, max_s=1.0)
"""Incoming calls: every second, since OpenAI stops ringing a call nobody answers."""
RELEASE_RETRY = Backoff(first_s=1.0, max_s=1.0)
"""Capacity releases: every second, since an ended call's slot keeps a new call out."""
REFER_WATCH_RETRY = Backoff(first_s=2.0, max_s=30.0)
"""Refer watches: 2 s, 4 s, … 30 s; nothing waits on them but the flag."""


class Unreadable(msgspec.Struct, frozen=True):
    """The message is not an event this consumer can read (a poison message)."""

    reason: str


class BusDown(msgspec.Struct, frozen=True):
    """NATS did not answer a read or a write the handling needed."""


class NotDue(msgspec.Struct, frozen=True):
    """A refer watch looked at `wait_s` seconds before its refer timeout runs out."""

    wait_s: float


Failure = Unreadable | BusDown | NotDue


class Resume(msgspec.Struct, frozen=True):
    """Carry out the stored decision: an earlier delivery stored it and did not record OpenAI's answer."""


def plan(attempt: int, failure: Failure, *, backoff: Backoff) -> Outcome:
    """What happens to a message whose delivery `attempt` (1 for the first) met `failure`."""
    if isinstance(failure, Unreadable):
        return Drop(reason=failure.reason)
    if isinstance(failure, NotDue):
        return Retry(delay_s=failure.wait_s, reason="refer watch not due")
    return Retry(delay_s=backoff.delay_s(attempt), reason="bus unavailable")


def plan_duplicate(attempt: int, *, stored: bool, carried_out: bool) -> Ack | Resume:
    """What happens to an incoming call whose decision was stored already, by another delivery.

    `stored`: that decision could be read back; `carried_out`: OpenAI's answer to it is recorded.
    """
    if attempt == 1 or not stored or carried_out:
        return Ack()
    return Resume()
