"""Session workers: claim accepted calls, hold the sideband, relay every server event onto the bus.

Claiming and the lease: ``calls.*.accepted`` is a durable pull consumer shared by every worker. A worker
fetches only as many messages as it has free slots (`SESSION_MAX_CALLS`), so its cap is exact. It holds
the message for the life of the call and sends ``in_progress`` heartbeats; the message's ack-wait is the
lease. If the worker dies, heartbeats stop, JetStream redelivers the message after the ack-wait and
another worker re-attaches to the same call (attempt = delivery count). When the call ends the message
is acknowledged; on drain it is nak'ed at once so another worker takes over without waiting.

Relayed events are published with ``Nats-Msg-Id = <call_id>:<event_id>``, so an event seen twice across
a re-attach is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import datetime, timedelta
from typing import Any

import msgspec

from switchboard.shared import events
from switchboard.shared.bus import Bus, Delivery, WorkQueue
from switchboard.shared.config import Secret, Settings
from switchboard.shared.errors import BusUnavailable, UpstreamError
from switchboard.shared.logging import get_logger
from switchboard.shared.openai import Sideband

log = get_logger(__name__)

CONSUMER = "session"
LEASE_S = 6.0
_RECONNECT_ATTEMPTS = 5
_RECONNECT_BASE_DELAY_S = 0.2


class SessionWorker:
    """One worker process's share of the live calls."""

    name = "session"

    def __init__(
        self, settings: Settings, *, bus: Bus | None = None, lease_s: float = LEASE_S, worker: str | None = None
    ) -> None:
        self._settings = settings
        self._api_key: Secret = settings.require_api_key()
        self._bus = bus
        self._owns_bus = bus is None
        self.lease_s = lease_s
        self.worker = worker or settings.worker_name
        self.max_calls = settings.session_max_calls
        self.live: dict[str, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._stop = asyncio.Event()
        self._draining = False

    # --- lifecycle -----------------------------------------------------------------------------------

    async def run(self) -> None:
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "session")
        await self._bus.ensure_stream()
        queue = await self._bus.work_queue(
            CONSUMER, f"{events.SUBJECT_ROOT}.*.accepted", ack_wait_s=self.lease_s, max_deliver=-1
        )
        log.info("session_worker_started", worker=self.worker, max_calls=self.max_calls)
        try:
            await self._claim_loop(queue)
        finally:
            if self.live:
                await asyncio.gather(*self.live.values(), return_exceptions=True)
            if self._owns_bus:
                await self._bus.close()

    async def shutdown(self, grace: timedelta = timedelta(seconds=20)) -> None:
        """Stop claiming; let live calls finish within `grace`, then hand the rest over."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._slot_freed.set()
        tasks = list(self.live.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace.total_seconds())
            self._draining = True
            for task in pending:
                task.cancel(msg="handover")
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    async def _claim_loop(self, queue: WorkQueue) -> None:
        while not self._stop.is_set():
            free = self.max_calls - len(self.live)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                deliveries = await queue.fetch(free, timeout_s=1.0)
            except Exception as exc:  # the bus blinked: keep trying, never exit
                log.warning("claim_fetch_failed", worker=self.worker, error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
                continue
            for delivery in deliveries:
                if self._stop.is_set():
                    await delivery.nak(0)
                    continue
                call_id = events.parse_subject(delivery.subject)[0]
                if call_id in self.live:  # our own lease came back to us: keep the running session
                    await delivery.in_progress()
                    continue
                task = asyncio.create_task(self._serve(call_id, delivery), name=f"call-{call_id}")
                self.live[call_id] = task
                task.add_done_callback(functools.partial(self._release_slot, call_id))

    def _release_slot(self, call_id: str, _task: asyncio.Task[None]) -> None:
        self.live.pop(call_id, None)
        self._slot_freed.set()

    # --- one call ------------------------------------------------------------------------------------

    async def _serve(self, call_id: str, delivery: Delivery) -> None:
        assert self._bus is not None
        bus = self._bus
        bound = log.bind(call_id=call_id, worker=self.worker, attempt=delivery.attempt)
        heartbeat = asyncio.create_task(self._heartbeat(delivery))
        try:
            accepted_event = delivery.event()
            accepted = events.payload(accepted_event, events.UpstreamOutcome)
            lease = events.SessionLease(worker=self.worker, attempt=delivery.attempt)
            await bus.record(call_id, "session.claimed", lease, msg_id=f"{call_id}:claimed:{delivery.attempt}")
            bound.info("call_claimed")
            reason = await self._relay(call_id, delivery.attempt, accepted, bound)
            duration = _seconds_since(accepted_event.time)
            await bus.record(call_id, "ended", events.Ended(reason=reason, duration_s=duration))
            released = events.SessionLease(worker=self.worker, attempt=delivery.attempt, reason="ended")
            await bus.record(call_id, "session.released", released, msg_id=f"{call_id}:released:{delivery.attempt}")
            await delivery.ack()
            bound.info("call_ended", reason=reason, duration_s=duration)
        except asyncio.CancelledError:
            if self._draining:
                await self._hand_over(call_id, delivery, bound)
            raise
        except (BusUnavailable, msgspec.ValidationError) as exc:
            # Not acknowledged: the lease runs out and the call is re-attached (or retried) elsewhere.
            bound.error("call_session_failed", error=str(exc))
        finally:
            heartbeat.cancel()

    async def _hand_over(self, call_id: str, delivery: Delivery, bound: Any) -> None:
        assert self._bus is not None
        with contextlib.suppress(Exception):
            released = events.SessionLease(worker=self.worker, attempt=delivery.attempt, reason="drain")
            await self._bus.record(
                call_id, "session.released", released, msg_id=f"{call_id}:released:{delivery.attempt}", timeout_s=2.0
            )
            await delivery.nak(0)
            bound.info("call_handed_over")

    async def _heartbeat(self, delivery: Delivery) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await delivery.in_progress()
            except Exception as exc:  # a missed beat is survivable; the next one may land
                log.warning("lease_heartbeat_failed", subject=delivery.subject, error=str(exc))

    async def _open(self, call_id: str) -> Sideband:
        return await Sideband.open(self._settings.openai_base_url, call_id, self._api_key)

    async def _relay(self, call_id: str, attempt: int, accepted: events.UpstreamOutcome, bound: Any) -> str:
        """Hold the sideband until the call ends; return the end reason."""
        assert self._bus is not None
        greeted = attempt > 1  # a re-attached call was greeted by its first worker
        failures = 0
        while True:
            try:
                sideband = await self._open(call_id)
            except UpstreamError as exc:
                if exc.status is not None and exc.status < 500:
                    bound.warning("sideband_refused", status=exc.status, code=exc.code)
                    failed = events.Failed(stage="sideband", message=str(exc), http_status=exc.status, code=exc.code)
                    await self._bus.record(call_id, "failed", failed, msg_id=f"{call_id}:failed:sideband")
                    return "call_gone" if exc.status == 404 else "sideband_refused"
                failures += 1
                if failures > _RECONNECT_ATTEMPTS:
                    bound.warning("sideband_unreachable", error=str(exc))
                    return "sideband_unreachable"
                await asyncio.sleep(_RECONNECT_BASE_DELAY_S * 2 ** (failures - 1))
                continue
            bound.info("sideband_attached")
            try:
                async for server_event in sideband.events():
                    failures = 0
                    kind = server_event.get("type")
                    if kind == "session.created" and not greeted:
                        greeted = True
                        await sideband.send(_greeting(accepted.greeting))
                    await self._publish_server_event(call_id, server_event)
            finally:
                with contextlib.suppress(Exception):
                    await sideband.close()
            closed = sideband.closed
            if closed is not None and closed.code is not None:
                return closed.reason or "sideband_closed"
            # Dropped without a close frame: the call may still be alive, so re-attach.
            failures += 1
            bound.warning("sideband_dropped", attempt=failures)
            if failures > _RECONNECT_ATTEMPTS:
                return "sideband_lost"
            await asyncio.sleep(_RECONNECT_BASE_DELAY_S * 2 ** (failures - 1))

    async def _publish_server_event(self, call_id: str, server_event: dict[str, Any]) -> None:
        assert self._bus is not None
        type_ = server_event.get("type")
        kind = events.rt_kind(type_) if isinstance(type_, str) and _safe_kind(type_) else "rt.unknown"
        event_id = server_event.get("event_id")
        msg_id = f"{call_id}:{event_id}" if isinstance(event_id, str) else None
        await self._bus.publish(self._bus.event(call_id, kind, server_event), msg_id=msg_id)


def _safe_kind(type_: str) -> bool:
    try:
        events.subject("x", events.rt_kind(type_))
    except ValueError:
        return False
    return True


def _greeting(instructions: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "response.create"}
    if instructions:
        event["response"] = {"instructions": instructions}
    return event


def _seconds_since(timestamp: str) -> float:
    try:
        started = datetime.fromisoformat(timestamp)
    except ValueError:
        return 0.0
    return round((datetime.now(started.tzinfo) - started).total_seconds(), 3)
