"""The fault rig: real nats-server processes, the real emulator in this process, Switchboard services as
subprocesses (``python -m switchboard ingress|controller|session|projector``) that a test can kill -9,
freeze with SIGSTOP and restart, and the evidence a test judges them by: the call log on the bus and
what the emulator (playing OpenAI) saw.

Nothing here is mocked: webhooks go over HTTP from the emulator to the ingress, the controller and the
workers talk REST and WebSocket to the emulator, and every service has its own NATS connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import os
import secrets
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats.errors

from switchboard.cli.natsserver import NatsServer, free_port
from switchboard.emulator.calls import CallRecord, RestRequest
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.server import Emulator
from switchboard.shared import events
from switchboard.shared.bus import Bus, StreamSettings
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.events import CloudEvent
from tests.reading import stored
from tests.waiting import eventually

LOOPBACK = "127.0.0.1"
CALLER = "+14155550101"
DIALLED = "+18005550100"
GREETING = "Say: Hello, thanks for calling Acme."
TOOL_TIMEOUT_S = 5.0
POLICY = f"""
version: 1
agents:
  assistant:
    instructions: Help with orders.
    greeting: "{GREETING}"
    tools:
      - {{name: lookup_order, description: Look up an order, timeout_s: {TOOL_TIMEOUT_S},
         parameters: {{type: object, properties: {{order_id: {{type: string}}}}}}}}
default:
  accept: {{agent: assistant}}
"""
WEBHOOK_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0, 5.0, 5.0)
"""OpenAI-style redelivery: retries keep coming for about 30 s after the first failed attempt."""
START_TIMEOUT_S = 30.0


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def fault_seed() -> int:
    """The seed of a scenario's fault timing: SWITCHBOARD_FAULTS_SEED when set (to replay a run), else random."""
    return int(os.environ.get("SWITCHBOARD_FAULTS_SEED") or secrets.randbelow(2**31))


# --- processes ---------------------------------------------------------------------------------------


class Service:
    """One Switchboard service subprocess: spawn, readiness, kill -9, SIGSTOP/SIGCONT, restart."""

    def __init__(self, rig: Rig, kind: str, name: str, env: dict[str, str], ready_url: str) -> None:
        self.rig = rig
        self.kind = kind
        self.name = name
        self.env = env
        self.ready_url = ready_url
        self.log = rig.dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.frozen = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def spawn(self) -> Service:
        with self.log.open("ab") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "switchboard", self.kind,
                env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=sink,
            )  # fmt: skip
        return self

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def readiness(self, timeout_s: float = 1.0) -> int | None:
        """The status /readyz answers now, or None when nothing answers."""
        try:
            async with self.rig.http.get(self.ready_url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        async def ready() -> bool:
            if not self.alive:
                raise AssertionError(f"{self.name} exited with {self.proc and self.proc.returncode}")
            return await self.readiness() == 200

        try:
            await eventually(ready, timeout=timeout_s, interval=0.05, what=f"{self.name} ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log:\n{self.log_tail()}") from None

    async def kill(self) -> float:
        """SIGKILL, as a crash would; returns when it happened (``time.time()``)."""
        at = time.time()
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.frozen = False
        return at

    def freeze(self) -> float:
        """SIGSTOP: the process stops mid-whatever, its sockets stay open; returns when."""
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True
        return time.time()

    def thaw(self) -> float:
        """SIGCONT; returns when."""
        at = time.time()
        os.kill(self.pid, signal.SIGCONT)
        self.frozen = False
        return at

    async def restart(self) -> Service:
        """Start the same service again, with the same environment (so the same ports)."""
        await self.kill()
        await self.spawn()
        await self.wait_ready()
        return self


class Rig:
    """Everything one fault test runs: NATS (one node or a cluster), the emulator, services, and the test's
    own bus connection (its view of the log)."""

    def __init__(self, directory: Path, *, policy: str = POLICY) -> None:
        self.dir = directory
        self.api_key = "sk-faults-" + secrets.token_hex(16)
        self.webhook_secret = new_webhook_secret()
        self.policy_path = directory / "policy.yaml"
        self.policy_path.write_text(policy)
        self.ingress_port = free_port()
        self.replicas = 1
        self.nats: list[NatsServer] = []
        self.services: list[Service] = []
        self._emulator: Emulator | None = None
        self._bus: Bus | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def emulator(self) -> Emulator:
        assert self._emulator is not None, "start_emulator() first"
        return self._emulator

    @property
    def bus(self) -> Bus:
        assert self._bus is not None, "start_nats() first"
        return self._bus

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    @property
    def nats_url(self) -> str:
        return ",".join(server.url for server in self.nats)

    # --- NATS ----------------------------------------------------------------------------------------

    async def start_nats(self, nodes: int = 1) -> None:
        """One nats-server, or a cluster of `nodes` with the CALLS stream (and KV buckets) replicated on all."""
        if nodes == 1:
            self.nats = [NatsServer(self.dir / "nats", name="n1")]
        else:
            cluster_ports = [free_port() for _ in range(nodes)]
            self.nats = [
                NatsServer(self.dir / f"nats-{i + 1}", name=f"n{i + 1}", cluster_port=cluster_ports[i],
                           routes=[p for j, p in enumerate(cluster_ports) if j != i])
                for i in range(nodes)
            ]  # fmt: skip
            self.replicas = nodes
        await asyncio.gather(*(server.start() for server in self.nats))
        self._bus = await Bus.connect(
            self.nats_url, name="faults-test", stream=StreamSettings(replicas=self.replicas), give_up_after_s=10
        )

        async def stream_in_place() -> bool:
            try:
                await self.bus.ensure_stream()  # a new cluster takes a moment to elect its JetStream leader
            except Exception:
                return False
            return True

        await eventually(stream_in_place, timeout=30, interval=0.25, what="the CALLS stream is in place")

    def node(self, name: str) -> NatsServer:
        return next(server for server in self.nats if server.name == name)

    def kill_nats(self, server: NatsServer | None = None) -> float:
        """kill -9 a nats-server (the only one by default); returns when."""
        server = server or self.nats[0]
        at = time.time()
        server.kill()
        return at

    async def restart_nats(self, server: NatsServer | None = None) -> NatsServer:
        """Start a killed nats-server again on its port, with its store directory."""
        old = server or self.nats[0]
        new = NatsServer(
            old.data_dir, port=old.port, name=old.name, cluster_port=old.cluster_port, routes=old.routes,
            cluster_name=old.cluster_name,
        )  # fmt: skip
        await new.start()
        self.nats[self.nats.index(old)] = new
        return new

    async def stream_leader(self) -> str:
        info = await self.bus.js.stream_info(events.STREAM)
        assert info.cluster is not None and info.cluster.leader, info
        return str(info.cluster.leader)

    # --- the emulator --------------------------------------------------------------------------------

    async def start_emulator(self, *, pace: float = 0.0, ring_timeout_s: float = 90.0) -> Emulator:
        self._emulator = Emulator(
            EmulatorConfig(
                port=0,
                pace=pace,
                api_key=self.api_key,
                webhook_url=f"http://{LOOPBACK}:{self.ingress_port}/webhooks/openai",
                webhook_secret=self.webhook_secret,
                webhook_retry_delays_s=WEBHOOK_RETRY_DELAYS_S,
                ring_timeout_s=ring_timeout_s,
            )
        )
        await self._emulator.start()
        return self._emulator

    # --- services ------------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of ARCHITECTURE.md, pointing at this rig's NATS and emulator."""
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "SWITCHBOARD_", "SESSION_", "NATS_", "INGRESS_", "HEALTH_", "LOG_"))
        }
        return {
            **inherited,
            "NATS_URL": self.nats_url,
            "OPENAI_API_KEY": self.api_key,
            "OPENAI_WEBHOOK_SECRET": self.webhook_secret,
            "OPENAI_BASE_URL": self.emulator.base_url,
            "SWITCHBOARD_POLICY": str(self.policy_path),
            "SWITCHBOARD_STREAM_REPLICAS": str(self.replicas),
            "SWITCHBOARD_LOG_FORMAT": "console",
            "LOG_LEVEL": "info",
            **extra,
        }

    def service(self, kind: str, name: str | None = None, **extra: str) -> Service:
        """A service not started yet (`start` starts several at once)."""
        name = name or kind
        if kind == "ingress":
            env = self.env(INGRESS_PORT=str(self.ingress_port), INGRESS_HOST=LOOPBACK, HEALTH_PORT="0", **extra)
            ready = f"http://{LOOPBACK}:{env['INGRESS_PORT']}/readyz"
        else:
            env = self.env(HEALTH_PORT=str(free_port()), **extra)
            if kind == "session":
                env.setdefault("SWITCHBOARD_WORKER", name)
                env.setdefault("SESSION_DRAIN_GRACE_S", "0")
            ready = f"http://{LOOPBACK}:{env['HEALTH_PORT']}/readyz"
        service = Service(self, kind, name, env, ready)
        self.services.append(service)
        return service

    async def start(self, *services: Service) -> list[Service]:
        """Spawn the services together and return once every one answers /readyz 200."""
        await asyncio.gather(*(s.spawn() for s in services))
        await asyncio.gather(*(s.wait_ready() for s in services))
        return list(services)

    async def up(self, *, controllers: int = 1, workers: int = 1, max_calls: int = 100) -> dict[str, Service]:
        """An ingress, `controllers` controllers and `workers` session workers, all ready; by name."""
        wanted = [self.service("ingress")]
        wanted += [self.service("controller", f"controller-{i + 1}") for i in range(controllers)]
        wanted += [self.service("session", f"worker-{i + 1}", SESSION_MAX_CALLS=str(max_calls)) for i in range(workers)]
        await self.start(*wanted)
        return {s.name: s for s in wanted}

    async def close(self) -> None:
        for service in self.services:
            if service.frozen and service.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(service.pid, signal.SIGCONT)
        await asyncio.gather(*(s.kill() for s in self.services), return_exceptions=True)
        if self._bus is not None:
            await self._bus.close()
        if self._emulator is not None:
            await self._emulator.shutdown()
        for server in self.nats:
            await server.stop()
        if self._http is not None:
            await self._http.close()


# --- waiting without failing (so a scenario can still count what went wrong) -------------------------


async def settle(predicate: Callable[[], Any | Awaitable[Any]], timeout: float, what: str = "") -> bool:
    """`eventually`, but False instead of a failure when the time runs out: the scenario goes on to
    count what was lost or doubled, and its assertions say what. A bus error while NATS recovers (the
    test's own reads) counts as "not yet"."""

    async def attempt() -> Any:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
        except (nats.errors.Error, TimeoutError, BusUnavailable):
            return False
        return result

    try:
        await eventually(attempt, timeout=timeout, interval=0.05, what=what)
    except AssertionError:
        return False
    return True


# --- placing calls -----------------------------------------------------------------------------------


async def place_burst(
    emulator: Emulator,
    placed: list[str],
    count: int,
    *,
    concurrency: int,
    interval_s: float = 0.0,
    script: str = "hold",
    prefix: str = "+1415",
) -> None:
    """Place `count` calls, never more than `concurrency` ringing (placed, not yet answered) at once and at
    least `interval_s` apart; their ids are appended to `placed` as they go. A ringing call that is never
    answered holds its slot for at most 15 s, so a stuck system still gets the whole burst."""
    for i in range(count):

        def has_room() -> bool:
            return sum(1 for c in placed if emulator.calls[c].state == "ringing") < concurrency

        await settle(has_room, timeout=15, what="room in the burst")
        placed.append(emulator.place_call(f"{prefix}{i:07d}", DIALLED, script=script))
        await asyncio.sleep(interval_s)


# --- what the emulator (OpenAI) saw ------------------------------------------------------------------


def accepts_ok(record: CallRecord) -> list[RestRequest]:
    """The accept requests OpenAI answered 200."""
    return [r for r in record.rest_requests if r.op == "accept" and r.status == 200]


def accept_attempts(record: CallRecord) -> list[RestRequest]:
    return [r for r in record.rest_requests if r.op == "accept"]


def greetings(record: CallRecord) -> int:
    """How many times the agent was told to greet this caller (``response.create`` with the greeting)."""
    return sum(
        1
        for e in record.client_events
        if isinstance(e, dict)
        and e.get("type") == "response.create"
        and isinstance(e.get("response"), dict)
        and e["response"].get("instructions") == GREETING
    )


def function_outputs(record: CallRecord, tool_call_id: str | None = None) -> list[dict[str, Any]]:
    """The ``function_call_output`` items the client sent (for one function call, if given)."""
    return [
        e["item"]
        for e in record.client_events
        if isinstance(e, dict)
        and e.get("type") == "conversation.item.create"
        and isinstance(e.get("item"), dict)
        and e["item"].get("type") == "function_call_output"
        and (tool_call_id is None or e["item"].get("call_id") == tool_call_id)
    ]


def client_events_since(record: CallRecord, since: float) -> list[Any]:
    return [e for e, at in zip(record.client_events, record.client_event_times, strict=True) if at >= since]


def holder_overlaps(record: CallRecord, now: float | None = None) -> list[tuple[int, int]]:
    """Pairs of sideband connections (by index) that were open at the same time: two holders at once."""
    end_of_time = now or time.time()
    opened = sorted((c.at, c.closed_at or end_of_time, c.index) for c in record.sideband_connections if c.status == 101)
    overlaps = []
    for i, (_, end, index) in enumerate(opened):
        for start2, _, index2 in opened[i + 1 :]:
            if start2 < end:
                overlaps.append((index, index2))
    return overlaps


def response_dones(record: CallRecord) -> list[dict[str, Any]]:
    return [e for e in record.server_events if e.get("type") == "response.done"]


# --- what the log says -------------------------------------------------------------------------------


def event_time(event: CloudEvent) -> float:
    """An event's ``time`` as seconds since the epoch (the recording process's clock: this machine's)."""
    return datetime.fromisoformat(event.time.replace("Z", "+00:00")).timestamp()


class Log:
    """Every event on the bus at one moment, by call."""

    def __init__(self, stored: list[CloudEvent]) -> None:
        self.events = stored
        self.by_call: dict[str, list[CloudEvent]] = defaultdict(list)
        for event in stored:
            self.by_call[event.call_id].append(event)

    def of(self, call_id: str, kind: str | None = None) -> list[CloudEvent]:
        found = self.by_call.get(call_id, [])
        return found if kind is None else [e for e in found if e.kind == kind]

    def count(self, call_id: str, kind: str) -> int:
        return len(self.of(call_id, kind))


async def read_log(bus: Bus, timeout_s: float = 30.0) -> Log:
    """Read the stream from its start up to what it holds now (trying again while NATS recovers)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                info = await bus.js.stream_info(events.STREAM)
                seen: list[CloudEvent] = []
                if info.state.messages:
                    seen = await stored(bus)
                return Log(seen)
            except (nats.errors.Error, TimeoutError, BusUnavailable):
                await asyncio.sleep(0.2)


async def per_call(bus: Bus, kind: str) -> Counter[str]:
    """How many events of `kind` each call has (from the stream's subject counts; cheap)."""
    try:
        info = await bus.js.stream_info(events.STREAM, subjects_filter=f"{events.SUBJECT_ROOT}.*.{kind}")
    except Exception:  # reconnecting
        return Counter()
    return Counter({subject.split(".", 2)[1]: n for subject, n in (info.state.subjects or {}).items()})


async def subject_events(bus: Bus, call_id: str, kind: str) -> list[CloudEvent]:
    counts = await per_call(bus, kind)
    wanted = counts.get(call_id, 0)
    found: list[CloudEvent] = []
    if wanted:
        async with asyncio.timeout(10):
            found = await stored(bus, call_id, kind)
    return found


async def all_have(bus: Bus, call_ids: Iterable[str], kind: str) -> bool:
    counts = await per_call(bus, kind)
    return all(counts.get(c, 0) > 0 for c in call_ids)


# --- commands ----------------------------------------------------------------------------------------


async def say(bus: Bus, call_id: str, text: str = "Say: Still here.", timeout_s: float = 6.0) -> dict[str, Any]:
    """Send ``cmd.<id>.say``; the reply (``{"ok": …}``), or ``{"ok": False, "error": …}`` if none came."""
    try:
        raw = await bus.request(f"cmd.{call_id}.say", msgspec.json.encode({"instructions": text}), timeout_s=timeout_s)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    reply: dict[str, Any] = msgspec.json.decode(raw)
    return reply


async def say_is_relayed(rig: Rig, call_id: str, timeout_s: float = 10.0) -> str | None:
    """A ``say`` to a live call is answered ok and the response it makes is relayed to the bus; None when
    so, else what went wrong."""
    record = rig.emulator.calls[call_id]
    before = len(response_dones(record))
    replies: list[dict[str, Any]] = []

    async def answered_ok() -> bool:
        reply = await say(rig.bus, call_id)
        replies.append(reply)
        return bool(reply.get("ok"))

    if not await settle(answered_ok, timeout=timeout_s, what=f"{call_id} say ok"):
        return f"say not served: {replies[-1] if replies else 'no reply'}"
    if not await settle(lambda: len(response_dones(record)) > before, timeout=timeout_s):
        return "say answered ok, but no response.done of it reached any sideband (was one attached?)"
    event_id = response_dones(record)[before].get("event_id")

    async def stored_ids() -> set[str]:
        stored = await subject_events(rig.bus, call_id, "rt.response.done")
        return {e.data.get("event_id") for e in stored if isinstance(e.data, dict)}

    async def relayed() -> bool:
        return event_id in await stored_ids()

    if not await settle(relayed, timeout=timeout_s):
        later = {e.get("event_id") for e in response_dones(record)[before + 1 :]}
        try:
            resumed = bool(later & await stored_ids())
        except (nats.errors.Error, TimeoutError):
            resumed = False
        return f"the say's response.done {event_id} was never stored" + (
            f" (relaying resumed: a later one was; {len(replies)} says sent)" if resumed else ""
        )
    return None


# --- judging -----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What went wrong per call, sorted into lost (should have happened, did not) and doubled (happened
    more than once, or two holders at once), plus anything else that breaks a promise."""

    lost: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    doubled: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    wrong: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def once(self, call_id: str, what: str, n: int) -> None:
        """`what` must have happened exactly once."""
        if n == 0:
            self.lost[call_id].append(f"no {what}")
        elif n > 1:
            self.doubled[call_id].append(f"{n}x {what}")

    def never(self, call_id: str, what: str, n: int, *, doubled: bool = False) -> None:
        if n:
            (self.doubled if doubled else self.wrong)[call_id].append(f"{n}x {what}")

    def lose(self, call_id: str, why: str) -> None:
        self.lost[call_id].append(why)

    def double(self, call_id: str, why: str) -> None:
        self.doubled[call_id].append(why)

    def wrongly(self, call_id: str, why: str) -> None:
        self.wrong[call_id].append(why)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.wrong)

    def calls(self) -> list[str]:
        """The calls something went wrong with (doubled first)."""
        return list(dict.fromkeys([*self.doubled, *self.lost, *self.wrong]))

    def report(self, limit: int = 15) -> str:
        lines = []
        for title, found in (("lost", self.lost), ("doubled", self.doubled), ("wrong", self.wrong)):
            if found:
                lines.append(f"{title}: {len(found)} calls")
                lines += [f"  {call_id}: {', '.join(why)}" for call_id, why in list(found.items())[:limit]]
        return "\n".join(lines) or "nothing lost or doubled"


def judge_calls(
    tally: Tally,
    log: Log,
    emulator: Emulator,
    call_ids: Iterable[str],
    *,
    claims: int | None = 1,
    ended: bool = True,
    one_holder: bool = True,
) -> None:
    """The guarantees every accepted call has: its webhook stored if answered 200, one decision, one
    successful accept at OpenAI, one ``accepted`` and no ``failed``, greeted once, never two holders at
    once (unless not `one_holder`: a frozen process cannot close its socket), claimed `claims` times (None:
    any number), and (when `ended`) one ``ended``."""
    for call_id in call_ids:
        record = emulator.calls[call_id]
        if any(d.status == 200 for d in record.webhook_deliveries) and not log.count(call_id, "incoming"):
            tally.lose(call_id, "webhook answered 200 but not stored")
        tally.once(call_id, "decided", log.count(call_id, "decided"))
        tally.once(call_id, "accept answered 200 by OpenAI", len(accepts_ok(record)))
        tally.once(call_id, "accepted event", log.count(call_id, "accepted"))
        failed_accept = [e for e in log.of(call_id, "failed") if e.data.get("stage") == "accept"]
        tally.never(call_id, "failed accept", len(failed_accept), doubled=bool(accepts_ok(record)))
        if claims is not None:
            if claims == 1:
                tally.once(call_id, "session.claimed", log.count(call_id, "session.claimed"))
            elif log.count(call_id, "session.claimed") < claims:
                tally.lose(call_id, f"claimed {log.count(call_id, 'session.claimed')}x, expected {claims}")
        tally.once(call_id, "greeting", greetings(record))
        for a, b in holder_overlaps(record) if one_holder else ():
            tally.double(call_id, f"sidebands {a} and {b} open at once")
        if ended:
            tally.once(call_id, "ended event", log.count(call_id, "ended"))


async def hang_up_and_wait(rig: Rig, call_ids: list[str], timeout_s: float = 15.0) -> bool:
    """Every caller hangs up; True once each call has an ``ended`` in the log."""
    for call_id in call_ids:
        await rig.emulator.caller_hangup(call_id)
    return await settle(lambda: all_have(rig.bus, call_ids, "ended"), timeout=timeout_s, what="every call ended")


def answered_at(log: Log, emulator: Emulator, call_id: str) -> float | None:
    """When a call was answered for good: OpenAI accepted it and the log has its ``accepted`` (a worker can
    claim it); None if either is missing."""
    answered = emulator.calls[call_id].answered_at
    accepted = log.of(call_id, "accepted")
    if answered is None or not accepted:
        return None
    return max(answered, event_time(accepted[0]))


def affected(emulator: Emulator, call_ids: Iterable[str], fault_at: float, window_s: float = 1.0) -> list[str]:
    """The calls a fault hit: ringing when it landed, or placed within `window_s` after it."""
    hit = []
    for call_id in call_ids:
        record = emulator.calls[call_id]
        if record.created_at <= fault_at + window_s and (record.answered_at is None or record.answered_at > fault_at):
            hit.append(call_id)
    return hit


def recovered_after(log: Log, emulator: Emulator, call_ids: list[str], fault_at: float) -> float | None:
    """Fault → the last of `call_ids` answered for good (OpenAI 200 and ``accepted`` logged); 0 when none was
    waiting, None when one never was."""
    last = latest(answered_at(log, emulator, c) for c in call_ids)
    if last is None:
        return None
    return round(max(0.0, last - fault_at), 2)


def latest(times: Iterable[float | None]) -> float | None:
    """The last of some moments, or None when one of them never came."""
    values = list(times)
    if any(t is None for t in values):
        return None
    return max((t for t in values if t is not None), default=None)


def timeline(log: Log, emulator: Emulator, call_id: str, marks: dict[str, float] | None = None) -> str:
    """One call's story, for a failure message: its log events (not the relayed rt.*), the sideband
    connections and client events OpenAI saw, and the test's own marks (when a fault landed), in time order."""
    rows: list[tuple[float, str]] = []
    for event in log.of(call_id):
        if event.kind.startswith("rt."):
            continue
        detail = ""
        if event.kind.startswith(("session.", "tool.", "accepted", "failed", "ended")) and isinstance(event.data, dict):
            keep = ("worker", "attempt", "reason", "confirmed_by", "code", "http_status", "tool_call_id", "error")
            detail = " " + " ".join(f"{k}={event.data[k]}" for k in keep if k in event.data)
        lease = f" lease={event.lease}" if event.lease is not None else ""
        rows.append((event_time(event), f"log {event.kind}{lease}{detail}"))
    record = emulator.calls[call_id]
    for c in record.sideband_connections:
        rows.append((c.at, f"openai sideband #{c.index} opened ({c.status})"))
        if c.closed_at is not None:
            rows.append((c.closed_at, f"openai sideband #{c.index} closed ({c.close_code})"))
    for r in record.rest_requests:
        rows.append((r.at, f"openai {r.op} → {r.status}"))
    for e, at in zip(record.client_events, record.client_event_times, strict=True):
        kind = e.get("type") if isinstance(e, dict) else "?"
        rows.append((at, f"openai got {kind}"))
    for name, at in (marks or {}).items():
        rows.append((at, f"*** {name}"))
    rows.sort()
    start = rows[0][0] if rows else 0.0
    return "\n".join(f"  {at - start:8.3f}  {what}" for at, what in rows)


def explain(tally: Tally, log: Log, rig: Rig, marks: dict[str, float] | None = None, *, extra: str = "") -> str:
    """The failure message of a scenario: what was lost or doubled, the story of the first calls concerned,
    and where the services' logs are."""
    parts = [tally.report()]
    if extra:
        parts.append(extra)
    for call_id in tally.calls()[:2]:
        parts.append(f"{call_id}:\n{timeline(log, rig.emulator, call_id, marks)}")
    parts.append(f"service logs in {rig.dir}")
    return "\n".join(parts)
