"""One live call held by a session worker: the sideband, the relay, the lease, tools and commands.

`CallSession.run()` returns how the call ended (an `end_reason.SessionEnd`: how the sideband ended and
what this holder did to end the call), from which the worker decides the end reason; it is cancelled with
``"lost"`` when another worker claims the call (stop at once, record nothing more) or ``"handover"``
when this worker drains (release the lease so another worker re-attaches).

Everything it does besides relaying OpenAI's events is fenced by its `Lease`: before it sends a client
event, runs a tool, serves a command or records an event, the lease must still be this worker's
(`Lease.fence`), and the greeting and every tool in flight are marked in the call's lease record by a
compare-and-set first — so the greeting goes out once per call cluster-wide, a tool runs for one holder
only, and a new holder finishes the tools its predecessor left unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.subscription import Subscription

from switchboard.session import end_reason, turns
from switchboard.session.fence import Lease
from switchboard.session.lease import InFlightTool
from switchboard.session.relay import Publisher, Relay
from switchboard.session.telemetry import SessionMetrics
from switchboard.shared import events, tracing
from switchboard.shared.bus import Bus
from switchboard.shared.commands import take_operator
from switchboard.shared.errors import BusUnavailable, LeaseLost, NoResponder, UpstreamError
from switchboard.shared.logging import get_logger
from switchboard.shared.openai import CallsClient, ServerEvent, Sideband
from switchboard.shared.sip import target_uri_problem

log = get_logger(__name__)

DEFAULT_TOOL_TIMEOUT_S = 10.0
_RECONNECT_ATTEMPTS = 5
_RECONNECT_BASE_DELAY_S = 0.2

SidebandOpener = Callable[[str], Awaitable[Sideband]]
_CONTROLLER_VERBS = ("hangup", "refer")


class CallSession:
    """The worker-side state of one call while this worker holds its lease."""

    def __init__(
        self,
        *,
        bus: Bus,
        call_id: str,
        lease: Lease,
        worker: str,
        accepted: events.UpstreamOutcome,
        greet: bool,
        open_sideband: SidebandOpener,
        calls: CallsClient,
        metrics: SessionMetrics | None = None,
        publisher: Publisher | None = None,
        accepted_at: float | None = None,
        relay: Relay | None = None,
        watch_outcomes: bool = True,
    ) -> None:
        self.bus = bus
        self.call_id = call_id
        self.lease = lease
        self.attempt = attempt = lease.token
        self.worker = worker
        self.accepted = accepted
        self._greet = greet
        self._accepted_at = time.time() if accepted_at is None else accepted_at  # epoch seconds
        self._protocol = turns.protocol(accepted.surface)
        self._closed_reason: str | None = None  # why the session closed, when the surface says (Live)
        self._trace = tracing.traceparent()  # the call's span (the worker's hold), parent of what follows
        self._turn_started_ns: int | None = None
        self._turn_events = 0
        self._open_sideband = open_sideband
        self._calls = calls
        # Function calls a previous holder started and never answered: finished once attached.
        self._unanswered = [
            turns.FunctionCall(tool_call_id=tool_call_id, name=tool.name, arguments=tool.arguments)
            for tool_call_id, tool in lease.record.tools.items()
        ]
        self._metrics = metrics or SessionMetrics()
        # The worker's shared publisher; a session on its own (in tests) runs a private one.
        self._own_publisher: Publisher | None = None
        if publisher is None:
            publisher = self._own_publisher = Publisher(bus, self._metrics)
        self._relay_out = relay if relay is not None else publisher.relay(call_id, attempt, self._trace)
        # A worker routes its calls' recorded command outcomes to `on_command_recorded` from one
        # subscription of its own; a session on its own watches its call's.
        self._watch_outcomes = watch_outcomes
        self._sideband: Sideband | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []
        self._ended_by: end_reason.EndedBy | None = None  # set when we ended the call (hangup, transfer)
        self._hangup_after_response = False
        self._controller_commands = 0  # hangup/refer requests seen whose outcome is not recorded yet
        self.controller_commands_seen = 0
        """Hangup/refer requests seen for the call while this session held it."""
        self._controller_commands_settled = asyncio.Event()
        self._controller_commands_settled.set()
        self.log = log.bind(call_id=call_id, worker=worker, attempt=attempt)

    # --- the relay -----------------------------------------------------------------------------------

    async def run(self) -> end_reason.SessionEnd:
        """Hold the sideband until the call ends; say how it ended once its events are stored and the
        outcome of every hangup or refer seen for it is recorded."""
        await self._serve_commands()
        if self._own_publisher is not None:
            self._own_publisher.start()
        if self.accepted.max_duration_s is not None:
            self._spawn(self._end_at_max_duration(self.accepted.max_duration_s))
        try:
            sideband = await self._relay()
            await self._relay_out.flush()
            await self._commands_settled()
            if isinstance(sideband, end_reason.Closed) and not sideband.reason and self._closed_reason:
                sideband = end_reason.Closed(sideband.code, self._closed_reason)
            return end_reason.SessionEnd(sideband, self._ended_by)
        finally:
            if self._own_publisher is not None:
                await self._own_publisher.stop()
            for sub in self._subscriptions:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=2.0)

    async def _relay(self) -> end_reason.SidebandEnd:
        failures = 0
        while True:
            try:
                attaching = {"switchboard.surface": self.accepted.surface, "switchboard.reconnects": failures}
                with tracing.span("attach sideband", attributes=attaching):
                    sideband = await self._open_sideband(self.call_id)
            except UpstreamError as exc:
                if exc.status is not None and exc.status < 500:
                    self.log.warning("sideband_refused", status=exc.status, code=exc.code)
                    failed = events.Failed(stage="sideband", message=str(exc), http_status=exc.status, code=exc.code)
                    await self.lease.fence()
                    await self.bus.record(
                        self.call_id, "failed", failed, msg_id=f"{self.call_id}:failed:sideband", lease=self.attempt
                    )
                    return end_reason.Refused(exc.status)
                failures += 1
                if failures > _RECONNECT_ATTEMPTS:
                    self.log.warning("sideband_unreachable", error=str(exc))
                    return end_reason.Unreachable()
                await asyncio.sleep(_RECONNECT_BASE_DELAY_S * 2 ** (failures - 1))
                continue
            self._sideband = sideband
            self.log.info("sideband_attached", reconnects=failures)
            if failures:
                self._metrics.reconnects.inc()
            if self._greet and self._protocol.greet_on is None:
                self._greet = False
                await self._send_greeting()
            if self._unanswered:
                unanswered, self._unanswered = self._unanswered, []
                self.log.info("tools_resumed", tools=[c.name for c in unanswered])
                self._spawn(self._answer_tools(unanswered))
            try:
                async for server_event in sideband.events():
                    failures = 0
                    await self._on_server_event(server_event)
            finally:
                self._sideband = None
                with contextlib.suppress(Exception):
                    await sideband.close()
            closed = sideband.closed
            if closed is not None and closed.code is not None:
                # OpenAI closes the sideband when the call is over: the call ended, whoever ended it.
                return end_reason.Closed(closed.code, closed.reason)
            # Dropped without a close frame (network, 1006): the call may still be alive, so re-attach.
            failures += 1
            self.log.warning("sideband_dropped", reconnects=failures)
            if failures > _RECONNECT_ATTEMPTS:
                return end_reason.Lost()
            await asyncio.sleep(_RECONNECT_BASE_DELAY_S * 2 ** (failures - 1))

    async def _on_server_event(self, server_event: ServerEvent) -> None:
        type_, protocol = server_event.type, self._protocol
        if type_ == protocol.greet_on and self._greet:
            self._greet = False
            await self._send_greeting()
        if protocol.relayed(type_):
            self._relay_out.put(server_event)
        else:
            self._metrics.audio_dropped.inc()
        if self._trace is not None:
            self._count_turn(type_, server_event)
        if type_ == protocol.response_done:
            if self._hangup_after_response and protocol.is_response_done(type_, server_event):
                self._hangup_after_response = False
                self._spawn(self._hang_up("end_call"))
            calls = protocol.function_calls(type_, server_event)
            if calls:
                self._spawn(self._answer_tools(calls))
        elif (closed := protocol.closed_reason(type_, server_event)) is not None:
            self._closed_reason = closed

    def _count_turn(self, type_: str | None, server_event: ServerEvent) -> None:
        """One span per agent turn (from its first event to its response's end), with its event count."""
        if self._turn_started_ns is None:
            self._turn_started_ns, self._turn_events = time.time_ns(), 0
        self._turn_events += 1
        if self._protocol.is_response_done(type_, server_event):
            tracing.record_span("agent turn", start_ns=self._turn_started_ns, parent=self._trace,
                                attributes={"switchboard.events": self._turn_events})  # fmt: skip
            self._turn_started_ns = None

    async def _send_greeting(self) -> None:
        """Greet, once per call cluster-wide: the lease record says whether any holder already did."""
        if self.lease.record.greeted:
            return
        try:
            await self.lease.change(greeted=True)
        except BusUnavailable as exc:  # cannot be sure no other holder greets: better silent than twice
            self.log.warning("greeting_not_sent", error=str(exc))
            return
        greeting = self._protocol.greeting(self.accepted.greeting)
        if greeting is None:
            return
        try:
            await self.send(greeting)
        except UpstreamError as exc:
            # The sideband dropped as it came up: greet on the next one instead (this holder, or the next).
            self.log.warning("greeting_deferred", error=str(exc))
            with contextlib.suppress(BusUnavailable):
                await self.lease.change(greeted=False)
                self._greet = True

    async def send(self, client_event: dict[str, Any]) -> None:
        """Send a client event on the sideband, while this worker holds the call; raises `UpstreamError`
        when it is not attached, `LeaseLost` when another worker holds the call."""
        await self.lease.fence()
        sideband = self._sideband
        if sideband is None:
            raise UpstreamError(None, None, "the sideband is not attached right now")
        await sideband.send(client_event)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- tools ---------------------------------------------------------------------------------------

    async def _answer_tools(self, calls: list[turns.FunctionCall]) -> None:
        """Run the function calls, send their outputs and a ``response.create``, then mark them answered.

        Each is marked in flight in the lease record first (a compare-and-set: only the holder can), so a
        holder that dies mid-way leaves them to the next, which runs them again and answers them once.
        """
        try:
            tracked = {**self.lease.record.tools}
            tracked.update({c.tool_call_id: InFlightTool(c.name, c.arguments) for c in calls})
            await self.lease.change(tools=tracked)
        except (LeaseLost, BusUnavailable) as exc:
            self.log.info("tools_not_ours", tools=[c.name for c in calls], error=str(exc))
            return
        results = await asyncio.gather(*(self._run_tool(c) for c in calls), return_exceptions=True)
        answered = [r for r in results if isinstance(r, tuple)]
        for failure in (r for r in results if isinstance(r, BaseException)):
            self.log.warning("tool_not_completed", error=str(failure) or type(failure).__name__)
        if len(answered) < len(results):
            return  # lost the call mid-way (or the bus): the next holder answers them
        try:
            for client_event in self._protocol.answers(answered):
                await self.send(client_event)
            done = {c.tool_call_id for c in calls}
            await self.lease.change(tools={k: v for k, v in self.lease.record.tools.items() if k not in done})
        except (UpstreamError, TimeoutError, OSError, LeaseLost, BusUnavailable) as exc:
            self.log.warning("tool_output_not_sent", error=str(exc))

    async def _run_tool(self, call: turns.FunctionCall) -> tuple[str, str]:
        """Run one function call: (tool_call_id, output); `LeaseLost` if the call was lost meanwhile."""
        if self._trace is None:
            return await self._run_tool_untraced(call)
        with tracing.span(f"tool {call.name}", kind=tracing.SpanKind.CLIENT, parent=self._trace,
                          attributes={"switchboard.tool_call_id": call.tool_call_id}):  # fmt: skip
            return await self._run_tool_untraced(call)

    async def _run_tool_untraced(self, call: turns.FunctionCall) -> tuple[str, str]:
        requested = events.ToolRequested(tool_call_id=call.tool_call_id, name=call.name, arguments=call.arguments)
        await self.bus.record(
            self.call_id, "tool.requested", requested, msg_id=f"{self.call_id}:tool:{call.tool_call_id}:req",
            lease=self.attempt,
        )  # fmt: skip
        started = time.perf_counter()
        output, error = await self._execute(call)
        await self.lease.fence()
        completed = events.ToolCompleted(
            tool_call_id=call.tool_call_id,
            name=call.name,
            output=output,
            error=error,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        await self.bus.record(
            self.call_id, "tool.completed", completed, msg_id=f"{self.call_id}:tool:{call.tool_call_id}:done",
            lease=self.attempt,
        )  # fmt: skip
        self.log.info("tool_completed", tool=call.name, error=error, latency_ms=completed.latency_ms)
        (self._metrics.tool_ok if error is None else self._metrics.tool_error).inc()
        return call.tool_call_id, output

    async def _execute(self, call: turns.FunctionCall) -> tuple[str, str | None]:
        if call.name == turns.TRANSFER_CALL:
            return await self._transfer(turns.parse_arguments(call.arguments))
        if call.name == turns.END_CALL:
            # Let the model say goodbye first: hang up when that response is done.
            self._hangup_after_response = True
            return turns.output_text({"output": {"ok": True, "note": "say goodbye; the call ends after it"}})
        timeout_s = (self.accepted.tool_timeouts_s or {}).get(call.name, DEFAULT_TOOL_TIMEOUT_S)
        request = {"call_id": self.call_id, "name": call.name, "arguments": call.arguments,
                   "tool_call_id": call.tool_call_id}  # fmt: skip
        try:
            raw = await self.bus.request(f"tools.{call.name}", msgspec.json.encode(request), timeout_s=timeout_s)
            reply = msgspec.json.decode(raw)
        except NoResponder:
            return turns.output_text({"error": f"the tool {call.name} is not available"})
        except BusUnavailable:
            return turns.output_text({"error": f"the tool {call.name} did not answer within {timeout_s:g} s"})
        except msgspec.DecodeError:
            return turns.output_text({"error": f"the tool {call.name} answered with something that is not JSON"})
        if not isinstance(reply, dict):
            return turns.output_text({"output": reply})
        return turns.output_text(reply)

    async def _transfer(self, arguments: dict[str, Any]) -> tuple[str, str | None]:
        target = arguments.get("target_uri")
        target = target if isinstance(target, str) else ""
        problem = target_uri_problem(target)
        if problem is not None:
            return turns.output_text({"error": f"target_uri {problem}"})
        await self.lease.fence()
        try:
            await self._calls.refer(self.call_id, target, surface=self.accepted.surface)
        except UpstreamError as exc:
            return turns.output_text({"error": f"the transfer failed: {exc}"})
        self._ended_by = "transfer_call"
        return turns.output_text({"output": {"ok": True, "transferred_to": target}})

    async def _end_at_max_duration(self, max_duration_s: float) -> None:
        """Hang up a call that reaches its rule's maximum duration (which also frees its capacity slot)."""
        await asyncio.sleep(max(0.0, self._accepted_at + max_duration_s - time.time()))
        self.log.warning("max_duration_reached", max_duration_s=max_duration_s)
        await self._hang_up("max_duration")

    async def _hang_up(self, ended_by: end_reason.EndedBy) -> None:
        try:
            await self.lease.fence()
        except (LeaseLost, BusUnavailable) as exc:
            self.log.warning("hangup_not_sent", error=str(exc))
            return
        self._ended_by = ended_by
        try:
            await self._calls.hangup(self.call_id, surface=self.accepted.surface)
        except UpstreamError as exc:
            self.log.warning("hangup_failed", status=exc.status, code=exc.code)

    # --- commands (served by the holder of the call) -------------------------------------------------

    async def _serve_commands(self) -> None:
        """Serve ``say`` and ``send``; watch the controller's ``hangup`` and ``refer`` go by.

        The controller serves those two and records their outcome only after OpenAI has answered, by
        which time OpenAI may already have closed the sideband. Counting the requests seen against the
        outcomes recorded lets the worker wait for the verdict before it names the end reason.
        """
        self._subscriptions.append(await self.bus.serve(f"cmd.{self.call_id}.*", self.on_command))
        if self._watch_outcomes:
            outcomes = events.subject(self.call_id, "command") + ".*"
            self._subscriptions.append(await self.bus.watch(outcomes, self.on_command_recorded))

    async def _commands_settled(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until every hangup or refer seen for this call has its outcome recorded."""
        try:
            await asyncio.wait_for(self._controller_commands_settled.wait(), timeout_s)
        except TimeoutError:
            self.log.warning("command_outcome_not_recorded", pending=self._controller_commands)

    async def on_command_recorded(self, subject: str, payload: bytes) -> None:
        """A command of this call was recorded (``calls.<id>.command.<verb>``)."""
        if subject.rsplit(".", 1)[-1] in _CONTROLLER_VERBS and self._controller_commands > 0:
            self._controller_commands -= 1
            if self._controller_commands == 0:
                self._controller_commands_settled.set()

    async def on_command(self, subject: str, payload: bytes) -> bytes | None:
        """A command for this call (``cmd.<id>.<verb>``): the reply, or None when another service answers."""
        if self._trace is None:
            return await self._serve_command(subject, payload)
        with tracing.span(f"command {subject.rsplit('.', 1)[-1]}", kind=tracing.SpanKind.SERVER, parent=self._trace):
            return await self._serve_command(subject, payload)

    async def _serve_command(self, subject: str, payload: bytes) -> bytes | None:
        verb = subject.rsplit(".", 1)[-1]
        if verb in _CONTROLLER_VERBS:
            self.controller_commands_seen += 1
            self._controller_commands += 1
            self._controller_commands_settled.clear()
            return None  # the controller answers these
        try:
            await self.lease.fence()
        except (LeaseLost, BusUnavailable):
            return None  # not ours to answer: the worker that holds the call does
        if verb not in ("say", "send"):
            return msgspec.json.encode({"ok": False, "error": f"unknown command {verb!r}"})
        try:
            command = msgspec.json.decode(payload) if payload else {}
        except msgspec.DecodeError:
            command = None
        error: str | None = None
        operator: str | None = None
        if isinstance(command, dict):
            command, operator = take_operator(command)
        if not isinstance(command, dict):
            error = "the command must be a JSON object"
            command = {}
        elif verb == "say":
            instructions = command.get("instructions")
            if not isinstance(instructions, str) or not instructions:
                error = "say needs a non-empty 'instructions' string"
            else:
                error = await self._try_send(self._protocol.say(instructions))
        else:
            if not isinstance(command.get("type"), str):
                error = "send needs a client event with a 'type'"
            else:
                error = await self._try_send(command)
        record = events.CommandRecord(
            verb=verb, command=command, ok=error is None, error=error, served_by=self.worker, operator=operator
        )
        with contextlib.suppress(BusUnavailable):
            await self.bus.record(
                self.call_id, f"command.{verb}", record, msg_id=f"{self.call_id}:cmd:{uuid.uuid4().hex}",
                lease=self.attempt,
            )  # fmt: skip
        reply: dict[str, Any] = {"ok": True} if error is None else {"ok": False, "error": error}
        return msgspec.json.encode(reply)

    async def _try_send(self, client_event: dict[str, Any]) -> str | None:
        try:
            await self.send(client_event)
        except (UpstreamError, TimeoutError, OSError, LeaseLost, BusUnavailable) as exc:
            return str(exc) or type(exc).__name__
        return None
