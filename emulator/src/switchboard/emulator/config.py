"""The emulator's configuration: one frozen Struct, built once at the edge (CLI, fixtures, demo)."""

from __future__ import annotations

import msgspec


class EmulatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the OpenAI stand-in listens, authenticates, delivers webhooks and paces its callers."""

    host: str = "127.0.0.1"
    port: int = 8100
    """TCP port for REST, the sideband and the control API; 0 picks a free one (read `Emulator.port`)."""
    api_key: str
    """The bearer key REST calls and sideband connections must present."""
    webhook_url: str | None = None
    """Where `realtime.call.incoming` is POSTed; without it calls cannot be placed."""
    webhook_secret: str
    """``whsec_<base64>`` (or a raw secret) used to sign every delivery attempt."""
    pace: float = 1.0
    """Multiplier on every scripted delay: 0 = as fast as possible, 1 = a realistic call of a few seconds."""
    ring_timeout_s: float = 30.0
    """The caller gives up (``caller_abandoned``) if the call is not answered within this time."""
    webhook_retry_delays_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    """Back-off before each retry of a failed delivery; its length bounds the number of retries."""
    webhook_timeout_s: float = 10.0
    """How long one delivery attempt may take before it counts as a connection error."""

    def __post_init__(self) -> None:
        if self.pace < 0:
            raise ValueError("pace must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not self.webhook_secret:
            raise ValueError("webhook_secret must not be empty")
        if self.ring_timeout_s <= 0 or self.webhook_timeout_s <= 0:
            raise ValueError("ring_timeout_s and webhook_timeout_s must be > 0")
        if any(delay < 0 for delay in self.webhook_retry_delays_s):
            raise ValueError("webhook_retry_delays_s must not contain negative delays")
