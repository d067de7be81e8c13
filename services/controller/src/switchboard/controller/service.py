"""The controller: consumes ``calls.*.incoming``, decides each call once, and carries it out at OpenAI.

Exactly once, cluster-wide: the decision is published to ``calls.<id>.decided`` conditionally on that
subject being empty (JetStream's expected-last-subject-sequence 0), so whatever the duplicates or
replicas, one decision is stored; a replica that loses the race does nothing visible. The incoming
message is acknowledged only after OpenAI's answer is recorded, so if the winner dies in between, the
redelivered message lets another replica finish the stored decision (never a new one).

A replica fetches only as many calls as it has free handlers, marks each one it is still working on in
progress every `DECISION_HEARTBEAT_S`, and the ack wait is a short `DECISION_ACK_WAIT_S`: the calls of
a replica killed mid-burst are redelivered to another within about 3 s, while a living replica waiting
seconds for OpenAI keeps its calls. A resumed accept whose first attempt did reach OpenAI meets 409
``call_already_handled`` and is recorded as ``accepted`` (``confirmed_by: conflict``), so a worker
still claims and greets the call.

Capacity is counted cluster-wide (`capacity.Capacity`): a call is admitted to a capped rule before its
decision is stored, and released when its ``ended`` event arrives (a second durable consumer,
``controller-ended``), or, if no end is ever recorded, once its maximum duration (and a grace) has run
out. Every accepted call carries that maximum duration (``max_duration_s`` in ``decided`` and
``accepted``); the session worker hangs up a call that reaches it.

The controller also serves ``cmd.<id>.hangup`` and ``cmd.<id>.refer`` (one replica answers each, via a
queue group) and records them as ``command.<verb>``. Every refer OpenAI answered 200 (``referred``, from a
refer decision or a refer command) is watched through a third durable consumer, ``controller-refers``:
its message is handed back with a delay until ``SWITCHBOARD_REFER_TIMEOUT_S`` after the ``referred``
event, then a call still not ended gets ``refer.suspected_failed``. The watch lives in JetStream, not in
a replica: whichever replica holds the message when it is due finishes it, so a controller that stops or
dies mid-watch loses nothing, and the flag is recorded once (a message id per ``referred`` event, and no
second flag for a refer already flagged).

A replica remembers, for the calls it decided, which capped rule (if any) each was admitted to, so the
``ended`` of a call it decided releases its slot (or, mostly, nothing) without reading the decision back;
a call decided elsewhere, or before a restart, or forgotten past `_ADMITTED_MAX`, reads it as before.

What becomes of a message whose handling met a failure (dropped, retried after how long, or a stored
decision resumed) is decided by `redelivery`, pure and tested on its own; the handlers here do the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
from nats.aio.subscription import Subscription

from switchboard.controller import redelivery
from switchboard.controller.capacity import BUCKET as CAPACITY_BUCKET
from switchboard.controller.capacity import Capacity
from switchboard.controller.decider import capacity_limits, capacity_max_ages, decide, occupies
from switchboard.controller.policy import Policy, facts_from_incoming
from switchboard.controller.policy_source import PolicySource
from switchboard.controller.redelivery import (
    DECISION_RETRY,
    REFER_WATCH_RETRY,
    RELEASE_RETRY,
    BusDown,
    NotDue,
    Unreadable,
)
from switchboard.shared import events, tracing
from switchboard.shared.bus import Ack, Bus, Delivery, Outcome, connected
from switchboard.shared.commands import take_operator
from switchboard.shared.config import Settings
from switchboard.shared.errors import AlreadyRecorded, BusUnavailable, UpstreamError
from switchboard.shared.health import HealthServer
from switchboard.shared.lifecycle import cancel_and_wait
from switchboard.shared.logging import get_logger
from switchboard.shared.metrics import Metrics
from switchboard.shared.openai import CallResult, CallsClient, warn_if_unusable
from switchboard.shared.sip import target_uri_problem

log = get_logger(__name__)

CONSUMER = "controller"
ENDED_CONSUMER = "controller-ended"
REFERS_CONSUMER = "controller-refers"
REFER_ACK_WAIT_S = 5.0
"""Ack wait of a refer watch being checked (a check is two reads and maybe one write)."""
REFER_MAX_DELIVER = 50
"""Deliveries of one refer watch: about two normally (before and at its due time); the rest are retries
with backoff up to 30 s while the bus is unavailable (over 20 minutes of them)."""
DECISION_ACK_WAIT_S = 3.0
"""Ack wait of an incoming call: a dead replica's calls go to another one within about this long."""
DECISION_HEARTBEAT_S = 1.0
"""How often a call still being worked on (OpenAI slow to answer) is marked in progress."""
RELEASE_LINGER_S = 0.2
"""Ended calls gather this long between pulls: their capacity comes back up to this much later, for a
pull request per batch of ended calls instead of one per call."""
_OUTCOME_KINDS = ("accepted", "rejected", "referred", "failed")
_ADMITTED_MAX = 100_000
"""Calls whose admission this replica remembers until their end (the oldest are forgotten past this)."""


class _Telemetry:
    def __init__(self) -> None:
        self.metrics = m = Metrics("controller")
        self.decisions = m.counter("decisions", "Calls decided, by action.", ["action"])
        self.duplicates = m.counter("duplicate_decisions", "Deliveries that found the call already decided.")
        self.openai = m.histogram("openai_seconds", "OpenAI REST latency, by operation.", ["op"])
        self.openai_errors = m.counter("openai_errors", "OpenAI refusals, by operation and code.", ["op", "code"])
        self.commands = m.counter("commands", "Commands served, by verb and outcome.", ["verb", "ok"])


class Controller:
    name = "controller"

    def __init__(
        self,
        settings: Settings,
        policy: Policy | PolicySource | None = None,
        *,
        bus: Bus | None = None,
        calls: CallsClient | None = None,
        concurrency: int = 64,
    ) -> None:
        self._settings = settings
        self._fixed_policy = policy if isinstance(policy, Policy) else None
        self._source = policy if isinstance(policy, PolicySource) else None
        self._bus = bus
        self._owns_bus = bus is None
        self._calls = calls or CallsClient(settings.openai_base_url, settings.require_api_key())
        self._concurrency = concurrency
        self._refer_timeout_s = settings.refer_timeout_s
        self._stop = asyncio.Event()
        self._capacity: Capacity | None = None
        self._admitted: dict[str, str | None] = {}  # call id → the capped rule it was admitted to, or None
        self.ready = False
        self.telemetry = _Telemetry()
        self._health = (
            HealthServer(self.telemetry.metrics, lambda: self.ready and connected(self._bus), port=settings.health_port)
            if settings.health_port is not None
            else None
        )

    @property
    def policy(self) -> Policy:
        """The policy in force now (a reloading source's current one, or the fixed one)."""
        if self._source is not None:
            return self._source.current
        assert self._fixed_policy is not None
        return self._fixed_policy

    @property
    def policy_origin(self) -> str | None:
        """Where the policy in force came from (a file, ``built-in``, ``kv:…``); None for a fixed policy."""
        return self._source.origin if self._source is not None else None

    async def run(self) -> None:
        if self._bus is None:
            self._bus = await Bus.for_service(self._settings, "controller")
        bus = self._bus
        subscriptions: list[Subscription] = []
        checking: asyncio.Task[None] | None = None
        try:
            await bus.ensure_stream()
            if self._source is None and self._fixed_policy is None:
                self._source = PolicySource(self._settings.policy_path, bus=bus)
            if self._source is not None:
                await self._source.start()
            self._capacity = Capacity(await bus.key_value(CAPACITY_BUCKET))
            incoming = await bus.work_queue(
                CONSUMER, f"{events.SUBJECT_ROOT}.*.incoming", ack_wait_s=DECISION_ACK_WAIT_S, max_deliver=20
            )
            ended = await bus.work_queue(ENDED_CONSUMER, f"{events.SUBJECT_ROOT}.*.ended", ack_wait_s=30.0)
            refers = await bus.work_queue(
                REFERS_CONSUMER,
                f"{events.SUBJECT_ROOT}.*.referred",
                ack_wait_s=REFER_ACK_WAIT_S,
                max_deliver=REFER_MAX_DELIVER,
            )
            for verb in ("hangup", "refer"):
                subscriptions.append(await bus.serve(f"cmd.*.{verb}", self._on_command, queue=CONSUMER))
            if self._health is not None:
                await self._health.start()
            self.ready = True
            log.info("controller_started", rules=len(self.policy.rules))
            checking = asyncio.create_task(warn_if_unusable(self._calls, service="controller"))
            await asyncio.gather(
                incoming.run(self.handle, self._stop, concurrency=self._concurrency, heartbeat_s=DECISION_HEARTBEAT_S),
                ended.run(self._release, self._stop, concurrency=64, linger_s=RELEASE_LINGER_S),
                refers.run(self._watch_refer, self._stop, concurrency=16, heartbeat_s=DECISION_HEARTBEAT_S),
            )
        finally:
            self.ready = False
            if checking is not None:
                await cancel_and_wait(checking)
            for sub in subscriptions:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            if self._health is not None:
                await self._health.stop()
            if self._source is not None:
                await self._source.stop()
            await self._calls.aclose()
            if self._owns_bus:
                await bus.close()

    async def shutdown(self, grace: timedelta = timedelta(seconds=10)) -> None:
        self.ready = False
        self._stop.set()

    # --- one incoming call ---------------------------------------------------------------------------

    async def _decide(
        self, call_id: str, sip_headers: list[events.SipHeader], received: datetime, surface: events.Surface
    ) -> tuple[events.Decided, str | None]:
        """Decide under the policy in force, admitting the call to its rule's capacity when it has one:
        (the decision, the capped rule the call was admitted to or None)."""
        assert self._capacity is not None
        policy = self.policy  # one version for the whole decision
        limits, max_ages = capacity_limits(policy), capacity_max_ages(policy)
        facts = facts_from_incoming(call_id, sip_headers, surface)
        live = await self._capacity.live(max_ages) if limits else {}
        decision = decide(policy, facts, now=received, live=live)
        rule = occupies(decision)
        if (
            rule is not None
            and rule in limits
            and not await self._capacity.admit(rule, call_id, limits[rule], max_ages[rule])
        ):
            # Another replica took the last slot between our read and our admission.
            decision = decide(policy, facts, now=received, live={**live, rule: limits[rule]})
        admitted = occupies(decision)
        return decision, admitted if admitted is not None and admitted in limits else None

    async def handle(self, delivery: Delivery) -> Outcome:
        if not tracing.enabled():
            return await self._handle(delivery)
        call_id = delivery.subject.split(".")[1]
        headers = delivery.headers
        fallback = None if tracing.extract(headers) else _traceparent(delivery)
        with tracing.consumer_span(call_id, "incoming", headers, fallback=fallback):
            return await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> Outcome:
        assert self._bus is not None
        bus = self._bus
        try:
            event = delivery.event()
            incoming = msgspec.convert(event.data.get("data", {}), events.IncomingCallData)
            surface = events.INCOMING_SURFACES.get(event.data.get("type"), "realtime")
            received = datetime.fromisoformat(event.time)
        except (msgspec.ValidationError, msgspec.DecodeError, AttributeError, ValueError) as exc:
            log.error("incoming_unreadable", subject=delivery.subject, error=str(exc))
            return redelivery.plan(delivery.attempt, Unreadable(str(exc)), backoff=DECISION_RETRY)
        call_id = event.call_id
        bound = log.bind(call_id=call_id)
        try:
            with tracing.span("decide"):
                decision, admitted = await self._decide(call_id, incoming.sip_headers, received, surface)
            with tracing.producer_span(call_id, "decided", f"{call_id}:decided"):
                await bus.publish(
                    bus.event(call_id, "decided", decision), msg_id=f"{call_id}:decided", expect_empty_subject=True
                )
            self._remember_admission(call_id, admitted)
            self.telemetry.decisions.labels(action=decision.action).inc()
            tracing.annotate({"switchboard.action": decision.action, "switchboard.rule": decision.rule,
                              "switchboard.surface": decision.surface})  # fmt: skip
            bound.info("call_decided", action=decision.action, rule=decision.rule, full=decision.capacity_full)
        except AlreadyRecorded:
            self.telemetry.duplicates.inc()
            stored = await self._stored_decision(call_id)
            await self._release_unless_stored(call_id, decision, stored)
            carried_out = stored is not None and await self._has_outcome(call_id)
            step = redelivery.plan_duplicate(delivery.attempt, stored=stored is not None, carried_out=carried_out)
            if isinstance(step, Ack):
                if delivery.attempt == 1:
                    bound.info("decision_exists")  # another replica or delivery decided; it carries it out
                return step
            assert stored is not None  # a stored decision is what is resumed
            bound.info("decision_resumed", action=stored.action, attempt=delivery.attempt)
            decision = stored
        except BusUnavailable as exc:
            bound.warning("decision_not_stored", error=str(exc))
            return redelivery.plan(delivery.attempt, BusDown(), backoff=DECISION_RETRY)
        try:
            await self._carry_out(call_id, decision)
        except BusUnavailable as exc:
            bound.warning("outcome_not_stored", error=str(exc))
            return redelivery.plan(delivery.attempt, BusDown(), backoff=DECISION_RETRY)
        return Ack()

    async def _stored_decision(self, call_id: str) -> events.Decided | None:
        assert self._bus is not None
        stored = await self._bus.last_event(call_id, "decided")
        return None if stored is None else events.payload(stored, events.Decided)

    async def _has_outcome(self, call_id: str) -> bool:
        assert self._bus is not None
        for kind in _OUTCOME_KINDS:
            if await self._bus.last_event(call_id, kind) is not None:
                return True
        return False

    async def _release_unless_stored(self, call_id: str, ours: events.Decided, stored: events.Decided | None) -> None:
        """Our admission lost to another decision: give the slot back unless the stored one holds it."""
        assert self._capacity is not None
        rule = occupies(ours)
        if rule is not None and (stored is None or occupies(stored) != rule):
            await self._capacity.release(rule, call_id, self._max_age(rule))

    def _remember_admission(self, call_id: str, rule: str | None) -> None:
        if len(self._admitted) >= _ADMITTED_MAX:
            del self._admitted[next(iter(self._admitted))]  # the oldest: its end reads the decision back
        self._admitted[call_id] = rule

    async def _release(self, delivery: Delivery) -> Outcome:
        """A call ended: count it back off its rule's capacity."""
        assert self._capacity is not None
        call_id = events.parse_subject(delivery.subject)[0]
        try:
            if call_id in self._admitted:  # decided here: the rule it holds (mostly none) is known
                rule = self._admitted[call_id]
            else:
                stored = await self._stored_decision(call_id)
                rule = None if stored is None else occupies(stored)
            if rule is not None:
                await self._capacity.release(rule, call_id, self._max_age(rule))
            self._admitted.pop(call_id, None)
        except BusUnavailable:
            return redelivery.plan(delivery.attempt, BusDown(), backoff=RELEASE_RETRY)
        except msgspec.ValidationError as exc:
            return redelivery.plan(delivery.attempt, Unreadable(str(exc)), backoff=RELEASE_RETRY)
        return Ack()

    def _max_age(self, rule: str) -> float:
        """How long capacity counts a call of `rule` (its maximum duration under the policy in force)."""
        policy = self.policy
        return capacity_max_ages(policy).get(rule, policy.max_call_duration_s)

    def _request(self, call_id: str, decision: events.Decided) -> Any:
        """The REST call that carries out `decision`, on its surface."""
        surface = decision.surface
        if decision.action == "accept":
            assert decision.accept is not None
            return self._calls.accept(call_id, decision.accept, surface=surface)
        if decision.action == "reject":
            return self._calls.reject(call_id, decision.status_code, surface=surface)
        assert decision.target_uri is not None
        return self._calls.refer(call_id, decision.target_uri, surface=surface)

    async def _carry_out(self, call_id: str, decision: events.Decided) -> None:
        """Make the decision's REST call and record OpenAI's answer (and ``ended`` for reject/refer).

        A 409 ``call_already_handled`` means one of our own earlier requests for this decision went
        through unseen (a replica died before recording it, or a retry followed a lost answer): there is
        only ever one decision per call, so the call is in the state it names. It is recorded as that
        outcome with ``confirmed_by: conflict`` — never as a failure of a call OpenAI has answered.
        """
        assert self._bus is not None
        bus = self._bus
        bound = log.bind(call_id=call_id)
        if decision.set_aside:
            # Offered on both surfaces: the call's other id carries the decision out, this one is left alone.
            bound.warning("call_set_aside", answered_on=decision.surface, sip_call_id=decision.sip_call_id,
                          hint=f"answered under its {decision.surface} id; if the project sends only this "
                               f"surface's webhooks, name this surface in the policy (surface:)")  # fmt: skip
            await bus.record(call_id, "ended", events.Ended(reason="other_surface", duration_s=0.0))
            return
        started = time.perf_counter()
        confirmed_by: Literal["conflict"] | None = None
        try:
            result = await self._timed(decision.action, self._request(call_id, decision))
        except UpstreamError as exc:
            if not exc.already_handled:
                bound.warning("openai_refused", action=decision.action, status=exc.status, code=exc.code)
                failed = events.Failed(stage=decision.action, message=str(exc), http_status=exc.status, code=exc.code)
                await bus.record(call_id, "failed", failed)
                reason = "caller_gone" if exc.call_gone else f"{decision.action}_failed"
                await bus.record(call_id, "ended", events.Ended(reason=reason, duration_s=0.0))
                return
            bound.info("outcome_confirmed_by_conflict", action=decision.action)
            result = CallResult(exc.status or 409, round((time.perf_counter() - started) * 1000, 2))
            confirmed_by = "conflict"
        outcome = self._outcome(result, decision, confirmed_by)
        if decision.action == "accept":
            await bus.record(call_id, "accepted", outcome)
            bound.info("call_accepted", latency_ms=result.latency_ms, agent=decision.agent)
        elif decision.action == "reject":
            await bus.record(call_id, "rejected", outcome)
            await bus.record(call_id, "ended", events.Ended(reason="rejected", duration_s=0.0))
            bound.info("call_rejected", status_code=decision.status_code)
        else:
            await bus.record(call_id, "referred", outcome)
            await bus.record(call_id, "ended", events.Ended(reason="referred", duration_s=0.0))
            bound.info("call_referred", target_uri=decision.target_uri)

    async def _timed(self, op: str, request: Any) -> CallResult:
        try:
            result: CallResult = await request
        except UpstreamError as exc:
            self.telemetry.openai_errors.labels(op=op, code=exc.code or str(exc.status)).inc()
            raise
        self.telemetry.openai.labels(op=op).observe(result.latency_ms / 1000)
        return result

    @staticmethod
    def _outcome(
        result: CallResult, decision: events.Decided, confirmed_by: Literal["conflict"] | None = None
    ) -> events.UpstreamOutcome:
        return events.UpstreamOutcome(
            http_status=result.http_status,
            latency_ms=result.latency_ms,
            agent=decision.agent,
            surface=decision.surface,
            greeting=decision.greeting,
            tool_timeouts_s=decision.tool_timeouts_s,
            status_code=decision.status_code,
            target_uri=decision.target_uri,
            confirmed_by=confirmed_by,
            max_duration_s=decision.max_duration_s,
        )

    # --- commands: hangup and refer ------------------------------------------------------------------

    async def _on_command(self, subject: str, payload: bytes) -> bytes:
        if not tracing.enabled():
            return await self._serve_command(subject, payload)
        _, call_id, verb = subject.split(".", 2)
        with tracing.span(f"command {verb}", kind=tracing.SpanKind.SERVER, parent=await self._call_trace(call_id)):
            return await self._serve_command(subject, payload)

    async def _call_trace(self, call_id: str) -> str | None:
        """The ``traceparent`` the call's first event was stamped with, to put a command in its trace."""
        assert self._bus is not None
        if not events.is_safe_call_id(call_id):
            return None
        try:
            incoming = await self._bus.last_event(call_id, "incoming")
        except BusUnavailable:
            return None
        return None if incoming is None else incoming.traceparent

    async def _serve_command(self, subject: str, payload: bytes) -> bytes:
        assert self._bus is not None
        _, call_id, verb = subject.split(".", 2)
        try:
            command = msgspec.json.decode(payload) if payload else {}
        except msgspec.DecodeError:
            command = None
        error: str | None = None
        if not events.is_safe_call_id(call_id):
            return msgspec.json.encode({"ok": False, "error": "not a valid call id"})
        operator: str | None = None
        if isinstance(command, dict):
            command, operator = take_operator(command)
        if not isinstance(command, dict):
            error, command = "the command must be a JSON object", {}
        elif verb == "refer":
            target = command.get("target_uri")
            target = target if isinstance(target, str) else ""
            problem = target_uri_problem(target)
            if problem is not None:
                error = f"target_uri {problem}"
            else:
                surface = await self._surface_of(call_id)
                refer = self._calls.refer(call_id, target, surface=surface)
                error = await self._command_rest(call_id, "referred", refer, target)
        else:
            hangup = self._calls.hangup(call_id, surface=await self._surface_of(call_id))
            error = await self._command_rest(call_id, "hungup", hangup)
        record = events.CommandRecord(
            verb=verb, command=command, ok=error is None, error=error, served_by=CONSUMER, operator=operator
        )
        with contextlib.suppress(BusUnavailable):
            await self._bus.record(call_id, f"command.{verb}", record, msg_id=f"{call_id}:cmd:{uuid.uuid4().hex}")
        self.telemetry.commands.labels(verb=verb, ok=str(error is None).lower()).inc()
        log.info("command_served", call_id=call_id, verb=verb, operator=operator, error=error)
        return msgspec.json.encode({"ok": True} if error is None else {"ok": False, "error": error})

    async def _surface_of(self, call_id: str) -> events.Surface:
        """The surface a call was answered on, as its decision says (Realtime when it cannot be read)."""
        try:
            stored = await self._stored_decision(call_id)
        except (BusUnavailable, msgspec.ValidationError):
            return "realtime"
        return "realtime" if stored is None else stored.surface

    async def _command_rest(self, call_id: str, kind: str, request: Any, target_uri: str | None = None) -> str | None:
        """Make the REST call; on success record OpenAI's answer as `kind` (``hungup``/``referred``)."""
        assert self._bus is not None
        try:
            result: CallResult = await request
        except UpstreamError as exc:
            return "the call is not live" if exc.call_gone else str(exc)
        answer = events.UpstreamOutcome(
            http_status=result.http_status, latency_ms=result.latency_ms, target_uri=target_uri
        )
        with contextlib.suppress(BusUnavailable):
            await self._bus.record(call_id, kind, answer, msg_id=f"{call_id}:{kind}:{uuid.uuid4().hex}")
        return None

    async def _watch_refer(self, delivery: Delivery) -> Outcome:
        """OpenAI's 200 to a refer (``referred``) says nothing of the transfer: a call that has not ended
        `SWITCHBOARD_REFER_TIMEOUT_S` after it is suspect. Until then the watch is handed back to JetStream
        with a delay (whichever replica holds it when it is due finishes it); a call that ends meanwhile
        is dropped from the watch at its next check."""
        assert self._bus is not None
        bus = self._bus
        try:
            event = delivery.event()
            referred = events.payload(event, events.UpstreamOutcome)
            referred_at = _timestamp(event.time)
        except (msgspec.ValidationError, msgspec.DecodeError, AttributeError, ValueError) as exc:
            log.error("referred_unreadable", subject=delivery.subject, error=str(exc))
            return redelivery.plan(delivery.attempt, Unreadable(str(exc)), backoff=REFER_WATCH_RETRY)
        call_id = event.call_id
        try:
            if await bus.last_event(call_id, "ended") is not None:
                return Ack()  # transferred, or over some other way: nothing to flag
            wait_s = referred_at + self._refer_timeout_s - time.time()
            if wait_s > 0:
                return redelivery.plan(delivery.attempt, NotDue(wait_s), backoff=REFER_WATCH_RETRY)
            flagged = await bus.last_event(call_id, "refer.suspected_failed")
            if flagged is not None and _timestamp(flagged.time) >= referred_at:
                return Ack()  # this refer (or a later one) is flagged already
            waited_s = round(time.time() - referred_at, 3)
            await bus.record(
                call_id, "refer.suspected_failed",
                {"target_uri": referred.target_uri, "waited_s": waited_s},
                msg_id=f"{call_id}:refer_suspected:{event.id}",
            )  # fmt: skip
        except BusUnavailable as exc:
            log.warning("refer_watch_postponed", call_id=call_id, error=str(exc))
            return redelivery.plan(delivery.attempt, BusDown(), backoff=REFER_WATCH_RETRY)
        log.warning("refer_suspected_failed", call_id=call_id, target_uri=referred.target_uri, waited_s=waited_s)
        return Ack()


def _timestamp(rfc3339: str) -> float:
    """An event's ``time`` as Unix seconds (a time without an offset is UTC)."""
    when = datetime.fromisoformat(rfc3339)
    return (when if when.utcoffset() is not None else when.replace(tzinfo=UTC)).timestamp()


def _traceparent(delivery: Delivery) -> str | None:
    """The ``traceparent`` an incoming event was stamped with (for one stored without the header)."""
    try:
        return delivery.event().traceparent
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
