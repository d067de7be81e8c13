"""The controller: consumes ``calls.*.incoming``, decides each call once, and carries it out at OpenAI.

Exactly once, cluster-wide: the decision is published to ``calls.<id>.decided`` conditionally on that
subject being empty (JetStream's expected-last-subject-sequence 0), so whatever the duplicates or
replicas, one decision is stored; a replica that loses the race does nothing visible. The incoming
message is acknowledged only after OpenAI's answer is recorded, so if the winner dies in between, the
redelivered message lets another replica finish the stored decision (never a new one).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from switchboard.services.controller.decider import decide
from switchboard.services.controller.policy import Policy, facts_from_incoming
from switchboard.shared import events
from switchboard.shared.bus import Ack, Bus, Delivery, Drop, Outcome, Retry
from switchboard.shared.config import Settings
from switchboard.shared.errors import AlreadyRecorded, BusUnavailable, UpstreamError
from switchboard.shared.logging import get_logger
from switchboard.shared.openai import CallResult, CallsClient

log = get_logger(__name__)

CONSUMER = "controller"
_OUTCOME_KINDS = ("accepted", "rejected", "referred", "failed")


class Controller:
    name = "controller"

    def __init__(
        self,
        settings: Settings,
        policy: Policy,
        *,
        bus: Bus | None = None,
        calls: CallsClient | None = None,
        concurrency: int = 64,
    ) -> None:
        self._settings = settings
        self.policy = policy
        self._bus = bus
        self._owns_bus = bus is None
        self._calls = calls or CallsClient(settings.openai_base_url, settings.require_api_key())
        self._concurrency = concurrency
        self._stop = asyncio.Event()

    async def run(self) -> None:
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "controller")
        await self._bus.ensure_stream()
        queue = await self._bus.work_queue(
            CONSUMER, f"{events.SUBJECT_ROOT}.*.incoming", ack_wait_s=60.0, max_deliver=20
        )
        log.info("controller_started", rules=len(self.policy.rules))
        try:
            await queue.run(self.handle, self._stop, concurrency=self._concurrency)
        finally:
            await self._calls.aclose()
            if self._owns_bus:
                await self._bus.close()

    async def shutdown(self, grace: timedelta = timedelta(seconds=10)) -> None:
        self._stop.set()

    # --- one incoming call ---------------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> Outcome:
        assert self._bus is not None
        bus = self._bus
        try:
            event = delivery.event()
            incoming = msgspec.convert(event.data.get("data", {}), events.IncomingCallData)
        except (msgspec.ValidationError, msgspec.DecodeError, AttributeError) as exc:
            log.error("incoming_unreadable", subject=delivery.subject, error=str(exc))
            return Drop(reason=str(exc))
        call_id = event.call_id
        bound = log.bind(call_id=call_id)
        decision = decide(self.policy, facts_from_incoming(call_id, incoming.sip_headers))
        try:
            await bus.publish(
                bus.event(call_id, "decided", decision), msg_id=f"{call_id}:decided", expect_empty_subject=True
            )
            bound.info("call_decided", action=decision.action, rule=decision.rule)
        except AlreadyRecorded:
            if delivery.attempt == 1:
                bound.info("decision_exists")  # another replica or delivery decided; it carries it out
                return Ack()
            stored = await self._unfinished_decision(call_id)
            if stored is None:
                return Ack()
            bound.info("decision_resumed", action=stored.action, attempt=delivery.attempt)
            decision = stored
        except BusUnavailable as exc:
            bound.warning("decision_not_stored", error=str(exc))
            return Retry(delay_s=1.0, reason="bus unavailable")
        try:
            await self._carry_out(call_id, decision, received_at=event.time)
        except BusUnavailable as exc:
            bound.warning("outcome_not_stored", error=str(exc))
            return Retry(delay_s=1.0, reason="bus unavailable")
        return Ack()

    async def _unfinished_decision(self, call_id: str) -> events.Decided | None:
        """The stored decision if no outcome was recorded for it yet (its executor died)."""
        assert self._bus is not None
        for kind in _OUTCOME_KINDS:
            if await self._bus.last_event(call_id, kind) is not None:
                return None
        stored = await self._bus.last_event(call_id, "decided")
        return None if stored is None else events.payload(stored, events.Decided)

    async def _carry_out(self, call_id: str, decision: events.Decided, *, received_at: str) -> None:
        assert self._bus is not None
        bus = self._bus
        bound = log.bind(call_id=call_id)
        try:
            if decision.action == "accept":
                assert decision.accept is not None
                result = await self._calls.accept(call_id, decision.accept)
                await bus.record(call_id, "accepted", self._outcome(result, decision))
                bound.info("call_accepted", latency_ms=result.latency_ms, agent=decision.agent)
            elif decision.action == "reject":
                result = await self._calls.reject(call_id, decision.status_code)
                await bus.record(call_id, "rejected", self._outcome(result, decision))
                await bus.record(call_id, "ended", events.Ended(reason="rejected", duration_s=0.0))
                bound.info("call_rejected", status_code=decision.status_code)
            else:
                assert decision.target_uri is not None
                result = await self._calls.refer(call_id, decision.target_uri)
                await bus.record(call_id, "referred", self._outcome(result, decision))
                await bus.record(call_id, "ended", events.Ended(reason="referred", duration_s=0.0))
                bound.info("call_referred", target_uri=decision.target_uri)
        except UpstreamError as exc:
            bound.warning("openai_refused", action=decision.action, status=exc.status, code=exc.code)
            failed = events.Failed(stage=decision.action, message=str(exc), http_status=exc.status, code=exc.code)
            await bus.record(call_id, "failed", failed)
            reason = "caller_gone" if exc.call_gone else f"{decision.action}_failed"
            await bus.record(call_id, "ended", events.Ended(reason=reason, duration_s=0.0))

    @staticmethod
    def _outcome(result: CallResult, decision: events.Decided) -> events.UpstreamOutcome:
        return events.UpstreamOutcome(
            http_status=result.http_status,
            latency_ms=result.latency_ms,
            agent=decision.agent,
            greeting=decision.greeting,
            status_code=decision.status_code,
            target_uri=decision.target_uri,
        )
