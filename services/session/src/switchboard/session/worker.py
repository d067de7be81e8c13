"""Session workers: claim accepted calls, hold each call's sideband, and hand calls over.

Claiming and the lease — liveness is JetStream redelivery with in-progress heartbeats: the work queue
gives one holder per message, expiry when the holder stops renewing, and redelivery to another worker.
Fencing is the call's record in KV (`fence.Leases`): each claim is a compare-and-set that raises its
token by one, and the token — not the delivery count, which a crashed nats-server can hand out again —
is the lease number (``attempt``) in ``session.claimed`` and on the holder's events.
``calls.*.accepted`` is a durable pull consumer shared by all workers; a worker asks for calls only
while it has free slots, so its cap (`SESSION_MAX_CALLS`) is exact whatever the burst, and waiting pull
requests from several workers spread claims across them. A worker that sees a claim of its call with a
higher token, or reads one in the record when its heartbeats can no longer vouch for its lease (after a
pause or a reconnect), has lost the call and stops at once, without writing more.

Drain (SIGTERM): stop claiming, let calls end within the grace period, then hand the rest over —
record ``session.released`` and nak the delivery so another worker re-attaches immediately.

What a new call costs the worker is kept to the round trips that make it safe: the claim (one KV
compare-and-set), the greeting mark and the end mark (one each). Its own events (``session.claimed``,
``ended``, ``session.released``) go out through the worker's one `Publisher`, in order with the call's
relayed events and in the same pipelined batches. A call has one subscription of its own (``cmd.<id>.*``,
for ``say`` and ``send``: a command for a call nobody holds still meets "no responders" at once); the
outcomes of the controller's commands (``calls.*.command.*``) come through one subscription of the
worker's, routed to the call by id, and the worker watches every ``hangup`` and ``refer`` asked
(``cmd.*.hangup``, ``cmd.*.refer``, served by the controller), so it knows when none was asked for a
call and its end reason needs no reading of the log (`_ending_commands`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from datetime import datetime, timedelta

import aiohttp
import msgspec
from nats.aio.subscription import Subscription

from switchboard.session.call import CallSession
from switchboard.session.end_reason import (
    ENDING_COMMANDS,
    EndingCommand,
    commands_known_absent,
    resolve_end_reason,
)
from switchboard.session.fence import Lease, Leases
from switchboard.session.lease import LeaseRecord, superseded
from switchboard.session.relay import Publisher
from switchboard.session.telemetry import SessionMetrics
from switchboard.shared import events, tracing
from switchboard.shared.bus import Bus, Delivery, InProgress, Outcome, Retry, WorkQueue, connected
from switchboard.shared.config import Secret, Settings
from switchboard.shared.errors import BusUnavailable, LeaseLost
from switchboard.shared.health import HealthServer
from switchboard.shared.lifecycle import cancel_and_wait
from switchboard.shared.logging import get_logger
from switchboard.shared.openai import CallsClient, Sideband, sideband_session, warn_if_unusable

log = get_logger(__name__)

CONSUMER = "session"
LEASE_S = 1.5
"""Ack-wait of a held call: a dead worker's calls are re-attached elsewhere after about this long."""
_FETCH_WAIT_S = 1.0
_CLAIM_BATCH_MAX = 8
_BEATS_PER_TURN = 100  # a thousand beats at once would hold the event loop for ~10 ms
_VERIFY_AT_ONCE = 32  # lease records read together after a pause or a reconnect
_COMMANDED_MAX = 100_000
"""Calls remembered as having had a hangup or refer asked; past this the memory starts again (and calls
accepted before that moment read the log for their end reason)."""
TAKEOVER_GRACE_S = 0.3
"""After claiming a call whose record says another worker still holds it, how long to wait before
attaching: a holder that is alive (its lease ran out in a nats-server restart, not with its process)
sees the claim and closes its sideband within milliseconds, so the two never hold the call at once."""


class SessionWorker:
    """One worker process's share of the live calls."""

    name = "session"

    def __init__(
        self,
        settings: Settings,
        *,
        bus: Bus | None = None,
        lease_s: float = LEASE_S,
        worker: str | None = None,
    ) -> None:
        self._settings = settings
        self._api_key: Secret = settings.require_api_key()
        self._bus = bus
        self._owns_bus = bus is None
        self.lease_s = lease_s
        self.worker = worker or settings.worker_name
        self.max_calls = settings.session_max_calls
        self.live: dict[str, CallSession] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, Delivery] = {}  # the deliveries the heartbeat keeps alive (the latest of each)
        self._leases_held: dict[str, Lease] = {}
        self._stop = asyncio.Event()
        self._claiming_stopped = asyncio.Event()
        self._draining = False
        self._calls = CallsClient(settings.openai_base_url, self._api_key)
        self._sidebands: aiohttp.ClientSession | None = None  # one connector for all held sidebands
        # Calls for which a hangup or refer was asked since the worker listened (at `_listening_since`,
        # epoch seconds, with the connection's disconnect count then); None until it listens.
        self._commanded: dict[str, None] = {}
        self._listening_since: float | None = None
        self._listening_epoch = 0
        self.ready = False
        self.telemetry = SessionMetrics()
        self.telemetry.max_calls.set(self.max_calls)
        self.telemetry.live_calls.set_function(lambda: len(self._tasks))
        self._health = (
            HealthServer(self.telemetry.metrics, lambda: self.ready and connected(self._bus), port=settings.health_port)
            if settings.health_port is not None
            else None
        )

    # --- lifecycle -----------------------------------------------------------------------------------

    async def run(self) -> None:
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "session")
        bus = self._bus
        await bus.ensure_stream()
        queue = await bus.work_queue(CONSUMER, f"{events.SUBJECT_ROOT}.*.accepted", ack_wait_s=self.lease_s)
        self._leases = await Leases.open(
            bus, worker=self.worker, lease_s=self.lease_s, ttl_s=self._settings.stream_max_age_s
        )
        claims: Subscription = await bus.watch(f"{events.SUBJECT_ROOT}.*.session.claimed", self._on_claim_seen)
        asked = [await bus.watch(f"cmd.*.{verb}", self._command_asked) for verb in ENDING_COMMANDS]
        recorded = await bus.watch(f"{events.SUBJECT_ROOT}.*.command.*", self._route_command_recorded)
        self._listening_since, self._listening_epoch = time.time(), bus.disconnects
        if self._health is not None:
            await self._health.start()
        self._publisher = Publisher(bus, self.telemetry)
        self._publisher.start()
        sidebands = self._sidebands = sideband_session()
        waiting = asyncio.create_task(self._watch_waiting(queue))
        heartbeats = asyncio.create_task(self._heartbeats())
        self.ready = True
        log.info("session_worker_started", worker=self.worker, max_calls=self.max_calls)
        checking = asyncio.create_task(warn_if_unusable(self._calls, service="session"))
        try:
            try:
                await self._claim_loop(queue)
            finally:
                self._claiming_stopped.set()
            if self._tasks:
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        finally:
            self.ready = False
            await cancel_and_wait(checking)
            await cancel_and_wait(waiting)
            await cancel_and_wait(heartbeats)
            await self._publisher.stop()
            await sidebands.close()
            if self._health is not None:
                await self._health.stop()
            for sub in (claims, *asked, recorded):
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await self._calls.aclose()
            if self._owns_bus:
                await bus.close()

    async def shutdown(self, grace: timedelta = timedelta(seconds=20)) -> None:
        """Stop claiming; let live calls finish (up to SESSION_DRAIN_GRACE_S, within `grace`), then hand
        the rest over."""
        if self._stop.is_set():
            return
        self.ready = False
        self._stop.set()
        # Our last pull request must expire before calls are handed over, or the server could hand a
        # released call straight back to this leaving worker.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._claiming_stopped.wait(), _FETCH_WAIT_S + 2)
        wait_s = min(grace.total_seconds(), self._settings.session_drain_grace_s)
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=wait_s)
        self._draining = True
        for task in pending:
            task.cancel(msg="handover")
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    async def _claim_loop(self, queue: WorkQueue) -> None:
        # A few at a time, never more than the free slots: one round trip serves a burst, and waiting
        # pull requests from all workers still share the claims out. A held call's message is one slot.
        await queue.run(
            self._on_accepted, self._stop, concurrency=self.max_calls, fetch_batch=_CLAIM_BATCH_MAX,
            fetch_wait_s=_FETCH_WAIT_S,
        )  # fmt: skip

    async def _on_accepted(self, delivery: Delivery) -> Outcome:
        """An accepted call to hold: claim it in a task of its own, which settles the message when done."""
        call_id = events.parse_subject(delivery.subject)[0]
        if call_id in self._tasks:  # our own call came back (a beat was late)
            lease = self._leases_held.get(call_id)
            if lease is None or lease.lost:  # being let go: claim it afresh once that is done
                return Retry(delay_s=self.lease_s / 2, reason="being let go")
            self._held[call_id] = delivery  # keep holding: beat (and finally ack) this delivery
            lease.redelivered(asyncio.get_running_loop().time())
            return InProgress()
        task = asyncio.create_task(self._hold(call_id, delivery), name=f"call-{call_id}")
        self._tasks[call_id] = task
        task.add_done_callback(functools.partial(self._release_slot, call_id))
        return InProgress()

    async def _watch_waiting(self, queue: WorkQueue) -> None:
        """Keep the calls-waiting gauge current (the consumer's unclaimed backlog)."""
        while True:
            with contextlib.suppress(Exception):
                self.telemetry.calls_waiting.set(await queue.pending())
            await asyncio.sleep(2.0)

    def _release_slot(self, call_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(call_id, None)
        self.live.pop(call_id, None)

    async def _on_claim_seen(self, subject: str, payload: bytes) -> None:
        """Someone claimed a call: if it is one of ours with a newer lease, we lost it — stop at once."""
        call_id = events.parse_subject(subject)[0]
        lease = self._leases_held.get(call_id)
        if lease is None:
            return
        try:
            claim = events.payload(events.decode(payload), events.SessionLease)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return
        if superseded(lease.token, claim):
            log.warning("claim_seen", call_id=call_id, new_worker=claim.worker, new_attempt=claim.attempt)
            lease.lose()

    async def _command_asked(self, subject: str, payload: bytes) -> None:
        """A ``cmd.<id>.hangup`` or ``.refer`` went by (the controller serves it): remember the call."""
        parts = subject.split(".")
        if len(parts) == 3:
            self._remember_commanded(parts[1])

    async def _route_command_recorded(self, subject: str, payload: bytes) -> None:
        session = self.live.get(events.parse_subject(subject)[0])
        if session is not None:
            await session.on_command_recorded(subject, payload)

    def _remember_commanded(self, call_id: str) -> None:
        if len(self._commanded) >= _COMMANDED_MAX:
            self._commanded.clear()
            self._listening_since = time.time()  # what came before is forgotten: as if listening from now
        self._commanded[call_id] = None

    def _lost(self, call_id: str, task: asyncio.Task[None] | None) -> None:
        """Another worker holds `call_id` now: stop holding it at once, recording nothing more."""
        log.warning("lease_lost", call_id=call_id, worker=self.worker)
        self.telemetry.lost.inc()
        if task is not None and task is not asyncio.current_task():
            task.cancel(msg="lost")

    # --- holding one call ----------------------------------------------------------------------------

    async def _hold(self, call_id: str, delivery: Delivery) -> None:
        """Hold one call, in a span of the call's trace (the accepted message's) while tracing is on."""
        if not tracing.enabled():
            return await self._hold_call(call_id, delivery)
        with tracing.consumer_span(call_id, "accepted", delivery.headers, fallback=None):
            tracing.annotate({"switchboard.worker": self.worker})
            return await self._hold_call(call_id, delivery)

    async def _hold_call(self, call_id: str, delivery: Delivery) -> None:
        assert self._bus is not None
        bus = self._bus
        bound = log.bind(call_id=call_id, worker=self.worker)
        self._held[call_id] = delivery
        lease: Lease | None = None
        session: CallSession | None = None
        task = asyncio.current_task()
        try:
            accepted_event = delivery.event()
            accepted = events.payload(accepted_event, events.UpstreamOutcome)
            accepted_at = _epoch_seconds(accepted_event.time)
            with tracing.span("claim"):
                lease, plan = await self._leases.claim(call_id, functools.partial(self._lost, call_id, task))
            if lease is None:
                if plan.skip:
                    await self._ensure_ended(call_id, plan.record)
                    await delivery.ack()
                    bound.info("claim_skipped_call_ended")
                else:  # another worker's claim landed first; its heartbeats keep the message
                    bound.info("claim_lost_race")
                return
            self._leases_held[call_id] = lease
            bound = bound.bind(attempt=lease.token)
            if plan.lost is not None:
                await bus.record(
                    call_id, "session.lost", plan.lost, msg_id=f"{call_id}:lost:{plan.lost.attempt}", lease=lease.token
                )
                bound.warning("call_taken_over", previous_worker=plan.lost.worker)
                self.telemetry.claimed_takeover.inc()
            elif lease.token == 1:
                self.telemetry.claimed_first.inc()
            else:
                self.telemetry.claimed_after_handover.inc()
            self.telemetry.claim_wait.observe(_seconds_since(accepted_event.time))
            # The call's events, from its claim to its end, go through the worker's publisher in order.
            relay = self._publisher.relay(call_id, lease.token, tracing.traceparent())
            claimed = events.SessionLease(worker=self.worker, attempt=lease.token)
            relay.record("session.claimed", claimed, msg_id=f"{call_id}:claimed:{lease.token}")
            bound.info("call_claimed")
            if plan.lost is not None:
                await relay.flush()  # the old holder stops on seeing it: stored before the grace starts
                await asyncio.sleep(TAKEOVER_GRACE_S)
                await lease.fence()  # the old holder may have claimed it back meanwhile (a race of claims)
            session = CallSession(
                bus=bus,
                call_id=call_id,
                lease=lease,
                worker=self.worker,
                accepted=accepted,
                greet=True,
                open_sideband=functools.partial(self._open_sideband, surface=accepted.surface),
                calls=self._calls,
                metrics=self.telemetry,
                publisher=self._publisher,
                accepted_at=accepted_at,
                relay=relay,
                watch_outcomes=False,
            )
            self.live[call_id] = session
            end = await session.run()
            absent = commands_known_absent(
                token=lease.token, seen=bool(session.controller_commands_seen) or call_id in self._commanded,
                listening_since=self._listening_since, accepted_at=accepted_at,
                disconnects_then=self._listening_epoch, disconnects_now=bus.disconnects,
            )  # fmt: skip
            reason = resolve_end_reason(end, frozenset() if absent else await _ending_commands(bus, call_id))
            duration = _seconds_since(accepted_event.time)
            # Ending is a change of the lease record like any other: only the holder can make it.
            await lease.change(state="ended", reason=reason, duration_s=duration)
            relay.record("ended", events.Ended(reason=reason, duration_s=duration))
            released = events.SessionLease(worker=self.worker, attempt=lease.token, reason="ended")
            relay.record("session.released", released, msg_id=f"{call_id}:released:{lease.token}")
            await relay.flush()
            await self._held.get(call_id, delivery).ack()
            self.telemetry.ended.labels(reason=reason).inc()
            bound.info("call_ended", reason=reason, duration_s=duration)
        except asyncio.CancelledError:
            if self._draining and lease is not None and not lease.lost and session is not None:
                await self._hand_over(call_id, lease, self._held.get(call_id, delivery))
            raise
        except LeaseLost as exc:
            bound.warning("call_stopped_lease_lost", error=str(exc))  # the new holder carries on; we write nothing
        except BusUnavailable as exc:
            # Not acknowledged: the lease runs out and the call is re-attached (or retried) elsewhere.
            bound.error("call_session_failed", error=str(exc))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            # An `accepted` event no worker can read would come back forever: take it out of the queue.
            bound.error("accepted_event_unreadable", error=str(exc))
            with contextlib.suppress(Exception):
                await delivery.term()
        finally:
            delivery.let_go()  # settled above, or left for the server to deliver again: its slot is free
            self._held.pop(call_id, None)
            if lease is not None and self._leases_held.get(call_id) is lease:
                del self._leases_held[call_id]

    async def _ensure_ended(self, call_id: str, record: LeaseRecord) -> None:
        """A holder ended the call but may have died before recording ``ended``: record it from the lease."""
        assert self._bus is not None
        if await self._bus.last_event(call_id, "ended") is None:
            ended = events.Ended(reason=record.reason or "ended", duration_s=record.duration_s or 0.0)
            await self._bus.record(call_id, "ended", ended, lease=record.token)

    async def _hand_over(self, call_id: str, lease: Lease, delivery: Delivery) -> None:
        assert self._bus is not None
        with contextlib.suppress(Exception):
            await lease.change(state="released", reason="drain")
            released = events.SessionLease(worker=self.worker, attempt=lease.token, reason="drain")
            await self._bus.record(
                call_id, "session.released", released, msg_id=f"{call_id}:released:{lease.token}",
                lease=lease.token, timeout_s=2.0,
            )  # fmt: skip
            await delivery.nak(0)
            self.telemetry.handovers.inc()
            log.info("call_handed_over", call_id=call_id, worker=self.worker)

    async def _heartbeats(self) -> None:
        """Every quarter lease, extend the lease of every call held: one timer for the whole worker, not
        one per call, and one flush for all the beats. A round the server is seen to receive (the flush)
        keeps each lease's proof fresh; a lease whose proof lapsed (the worker was paused, or the
        connection dropped) has its record read again at once, so a call lost meanwhile stops now."""
        assert self._bus is not None
        bus = self._bus
        loop = asyncio.get_running_loop()
        verifying: asyncio.Task[None] | None = None
        while True:
            await asyncio.sleep(self.lease_s / 4)
            sent_at = loop.time()
            for i, (call_id, delivery) in enumerate(list(self._held.items()), 1):
                try:
                    await delivery.in_progress()
                except Exception as exc:  # a missed beat is survivable; the next one may land
                    log.warning("lease_heartbeat_failed", call_id=call_id, error=str(exc))
                if i % _BEATS_PER_TURN == 0:
                    await asyncio.sleep(0)  # let the calls' events through between chunks of beats
            landed = False
            if self._held and bus.connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(bus.nc.flush(), self.lease_s / 2)
                    landed = True
            stale: list[Lease] = []
            for lease in list(self._leases_held.values()):
                if landed:
                    lease.beat_landed(sent_at)
                if not lease.fresh(loop.time()) and not lease.lost:
                    stale.append(lease)
            if stale and bus.connected and (verifying is None or verifying.done()):
                verifying = asyncio.create_task(self._verify(stale))

    async def _verify(self, leases: list[Lease]) -> None:
        """Read the records of leases the heartbeats cannot vouch for; a lost one stops its call."""
        slots = asyncio.Semaphore(_VERIFY_AT_ONCE)

        async def one(lease: Lease) -> None:
            async with slots:
                with contextlib.suppress(LeaseLost, BusUnavailable):  # lost: `lose` stopped the call
                    await lease.verify()

        await asyncio.gather(*(one(lease) for lease in leases))

    async def _open_sideband(self, call_id: str, *, surface: events.Surface = "realtime") -> Sideband:
        return await Sideband.open(
            self._settings.openai_base_url, call_id, self._api_key, http=self._sidebands, surface=surface
        )


async def _ending_commands(bus: Bus, call_id: str) -> frozenset[EndingCommand]:
    """The hangup and refer commands recorded as successful for the call (they name its end reason)."""
    succeeded: set[EndingCommand] = set()
    for verb in ENDING_COMMANDS:
        event = await bus.last_event(call_id, f"command.{verb}")
        if event is not None and isinstance(event.data, dict) and event.data.get("ok"):
            succeeded.add(verb)
    return frozenset(succeeded)


def _epoch_seconds(timestamp: str) -> float | None:
    try:
        return datetime.fromisoformat(timestamp).timestamp()
    except ValueError:
        return None


def _seconds_since(timestamp: str) -> float:
    try:
        started = datetime.fromisoformat(timestamp)
    except ValueError:
        return 0.0
    return round((datetime.now(started.tzinfo) - started).total_seconds(), 3)
