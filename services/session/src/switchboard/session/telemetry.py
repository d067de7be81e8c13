"""The session worker's Prometheus metrics (see `switchboard.shared.metrics`)."""

from __future__ import annotations

from switchboard.shared.metrics import Metrics


class SessionMetrics:
    def __init__(self) -> None:
        self.metrics = m = Metrics("session")
        self.live_calls = m.gauge("live_calls", "Calls this worker holds now.")
        self.max_calls = m.gauge("max_calls", "This worker's cap on live calls (SESSION_MAX_CALLS).")
        self.calls_waiting = m.gauge("calls_waiting", "Accepted calls no worker has claimed yet (cluster-wide).")
        self.claims = m.counter("claims", "Calls claimed, by how.", ["how"])
        self.claim_wait = m.histogram(
            "claim_wait_seconds", "From the call's acceptance to its claim by this worker.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )  # fmt: skip
        self.ended = m.counter("calls_ended", "Calls that ended on this worker, by reason.", ["reason"])
        self.handovers = m.counter("handovers", "Calls released to another worker on drain.")
        self.lost = m.counter("leases_lost", "Calls taken away because another worker claimed them.")
        self.reconnects = m.counter("sideband_reconnects", "Sideband re-attaches after a drop.")
        self.events_relayed = m.counter("events_relayed", "Realtime server events published to the bus.")
        self.audio_dropped = m.counter(
            "audio_events_dropped", "Live's reflected audio events (caller and agent) counted and not relayed."
        )
        self.relay_seconds = m.histogram("relay_seconds", "From receiving a server event to its bus acknowledgement.")
        self.tool_calls = m.counter("tool_calls", "Function calls answered, by outcome.", ["outcome"])
        self.claimed_first = self.claims.labels(how="first")
        self.claimed_takeover = self.claims.labels(how="takeover")
        self.claimed_after_handover = self.claims.labels(how="after_handover")
        self.tool_ok = self.tool_calls.labels(outcome="ok")
        self.tool_error = self.tool_calls.labels(outcome="error")
