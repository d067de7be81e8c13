"""Switchboard's exceptions, one root and a few kinds, each mapped once to an outcome.

SwitchboardError
├── ConfigError          bad or missing configuration (exit at start-up)
├── SignatureError       a webhook that fails verification (ingress → 400)
├── InvalidEvent         a body that is not a usable OpenAI event (ingress → 400)
├── BusUnavailable       NATS cannot take a publish in time (ingress → 503, consumers → retry)
│   └── NoResponder      nobody serves a request subject (a command for a call that is not live)
├── AlreadyRecorded      a conditional publish lost: the subject already has an event
├── LeaseLost            another session worker holds the call now: stop, do nothing more
└── UpstreamError        OpenAI answered with an error (status, error code; retryable or not)
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Root of every error Switchboard raises on purpose."""


class ConfigError(SwitchboardError):
    """Configuration is missing or invalid."""


class SignatureError(SwitchboardError):
    """A webhook delivery failed signature or timestamp verification."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvalidEvent(SwitchboardError):
    """A verified webhook body that is not a usable OpenAI event."""


class BusUnavailable(SwitchboardError):
    """The bus did not acknowledge a publish within the deadline."""


class NoResponder(BusUnavailable):
    """A request found nobody subscribed to its subject."""


class AlreadyRecorded(SwitchboardError):
    """A conditional publish was refused: the subject already holds an event (another replica won)."""


class LeaseLost(SwitchboardError):
    """This worker no longer holds the call: a newer claim's fencing token is stored."""


class UpstreamError(SwitchboardError):
    """OpenAI answered a request with an error, or could not be reached."""

    def __init__(self, status: int | None, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def retryable(self) -> bool:
        """Transport failures, 429 and 5xx may succeed later; other 4xx will not."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def call_gone(self) -> bool:
        """OpenAI no longer knows the call (the caller hung up)."""
        return self.code == "call_id_not_found"

    @property
    def already_handled(self) -> bool:
        """OpenAI says the call was already answered (409 ``call_already_handled``): an earlier request
        of ours that we never saw the answer to went through."""
        return self.status == 409 and self.code == "call_already_handled"
