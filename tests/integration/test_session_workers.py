"""Session workers against a real nats-server and the emulator: cap, failover, drain, tools, commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import msgspec
import pytest

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer, free_port
from switchboard.emulator.scripts import AskTool, Hangup, Pause, Say, Script
from switchboard.emulator.server import Emulator
from switchboard.session.call import CallSession
from switchboard.session.end_reason import resolve_end_reason
from switchboard.session.fence import LEASES_BUCKET, Leases
from switchboard.session.worker import LEASE_S, SessionWorker
from switchboard.shared.bus import Bus
from switchboard.shared.errors import NoResponder, UpstreamError
from switchboard.shared.events import CloudEvent, SessionLease, UpstreamOutcome, payload
from switchboard.shared.openai import CallsClient, Sideband, sideband_session
from tests.e2e.conftest import attached_call, call_events
from tests.fixtures.system import running
from tests.processes import Proc, spawn
from tests.reading import stored
from tests.waiting import eventually

POLICY = """
version: 1
agents:
  assistant:
    instructions: Help with orders.
    greeting: Say hello.
    tools:
      - {name: lookup_order, description: Look up an order, timeout_s: 0.5,
         parameters: {type: object, properties: {order_id: {type: string}}}}
      - {name: end_call, description: End the call after saying goodbye}
      - {name: transfer_call, description: Transfer the caller,
         parameters: {type: object, properties: {target_uri: {type: string}}}}
default:
  accept: {agent: assistant}
"""

GOODBYE = Script("goodbye", (Say("Hello!"), AskTool("That's all, bye.", "end_call", {}), Pause(30)))


@pytest.fixture
async def front(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """Ingress, controller and emulator (no session workers): accepted calls wait to be claimed."""
    async with running(nats_server, tmp_path, workers=0, policy=POLICY, sample_tools=False, session_max_calls=2,
                       session_drain_grace_s=0.0) as system:  # fmt: skip
        yield system


@pytest.fixture
async def start_worker(front: LocalSystem) -> AsyncIterator[Callable[[str], Awaitable[SessionWorker]]]:
    """Start in-process session workers with the front's settings; all stopped after the test."""
    workers: list[tuple[SessionWorker, asyncio.Task[None]]] = []

    async def start(name: str) -> SessionWorker:
        worker = SessionWorker(front.settings, worker=name)
        workers.append((worker, asyncio.create_task(worker.run())))
        await eventually(lambda: worker.ready, what=f"{name} ready")
        return worker

    yield start
    for worker, task in workers:
        await worker.shutdown()
        await asyncio.wait_for(task, 10)


def worker_env(front: LocalSystem, name: str) -> dict[str, str]:
    s = front.settings
    assert s.openai_api_key is not None and s.nats_url is not None
    return {"NATS_URL": s.nats_url, "OPENAI_API_KEY": s.openai_api_key.reveal(), "OPENAI_BASE_URL":
            s.openai_base_url, "SWITCHBOARD_WORKER": name, "SESSION_DRAIN_GRACE_S": "0",
            "HEALTH_PORT": str(free_port())}  # fmt: skip


def claims(events: list[CloudEvent]) -> list[SessionLease]:
    return [msgspec.convert(e.data, SessionLease) for e in events if e.kind == "session.claimed"]


async def held_call(
    front: LocalSystem, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> tuple[Emulator, str]:
    """Worker w1 running, and a new call it holds with the sideband attached and the greeting sent, so
    what a test sends next is the call's last client event: (emulator, call id)."""
    emulator = front.emulator
    assert emulator is not None
    await start_worker("w1")
    call_id = await attached_call(emulator)
    await eventually(lambda: emulator.calls[call_id].client_events, what=f"{call_id} greeted")
    return emulator, call_id


async def kinds_of(bus: Bus, call_id: str, kind: str) -> list[CloudEvent]:
    info = await bus.js.stream_info("CALLS", subjects_filter=f"calls.{call_id}.{kind}")
    if not sum((info.state.subjects or {}).values()):
        return []
    return await stored(bus, call_id, kind)


async def test_a_burst_never_exceeds_any_workers_cap_and_every_call_is_served(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """12 calls on 2 workers capped at 2: never more than 2 live per worker, all served as slots free."""
    emulator = front.emulator
    assert emulator is not None
    workers = [await start_worker("w1"), await start_worker("w2")]
    peak = {w.worker: 0 for w in workers}
    peak_sockets = 0

    async def sample() -> None:
        nonlocal peak_sockets
        while True:
            for w in workers:
                peak[w.worker] = max(peak[w.worker], len(w.live))
            open_sockets = sum(1 for c in emulator.calls.values() for s in c.sideband_connections
                               if s.status == 101 and s.closed_at is None)  # fmt: skip
            peak_sockets = max(peak_sockets, open_sockets)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    call_ids = [emulator.place_call(f"+1415555{i:04d}", "+18005550100", script="hold") for i in range(12)]
    served: set[str] = set()
    while len(served) < len(call_ids):
        live = await eventually(
            lambda: [c for w in workers for c in w.live if c not in served and emulator.calls[c].sideband_count],
            what="a call is live",
        )
        for call_id in live:
            await emulator.caller_hangup(call_id)
            served.add(call_id)
    for call_id in call_ids:
        await call_events(bus, call_id)
    sampler.cancel()
    assert max(peak.values()) == 2 and min(peak.values()) >= 1, peak
    assert peak_sockets <= 4


async def test_a_killed_workers_call_is_reattached_and_no_event_is_lost_or_doubled(
    front: LocalSystem, bus: Bus, procs: list[Proc]
) -> None:
    """kill -9 mid-call: another worker re-attaches (session.lost, claimed attempt 2) and relays on."""
    emulator = front.emulator
    assert emulator is not None
    first = await spawn("session", env=worker_env(front, "doomed"))
    procs.append(first)
    call_id = emulator.place_call("+14155550101", "+18005550100", script="hold")
    # Kill between turns: what a dying process had read but not yet published is gone with it.
    await eventually(lambda: kinds_of(bus, call_id, "rt.response.done"), what="greeting relayed")
    second = await spawn("session", env=worker_env(front, "survivor"))
    procs.append(second)
    await first.kill()
    await eventually(lambda: emulator.calls[call_id].sideband_count == 2, timeout=10, what="re-attached")
    reply = await bus.request(f"cmd.{call_id}.say", b'{"instructions": "Say: still here"}', timeout_s=5)
    assert msgspec.json.decode(reply) == {"ok": True}
    await eventually(lambda: emulator.calls[call_id].server_event_types().count("response.done") == 2)
    await emulator.caller_hangup(call_id)
    events = await call_events(bus, call_id)
    assert [(c.worker, c.attempt) for c in claims(events)] == [("doomed", 1), ("survivor", 2)]
    lost = [e.data for e in events if e.kind == "session.lost"]
    assert lost == [{"worker": "doomed", "attempt": 1, "reason": "lease_expired"}]
    relayed = [e.data for e in events if e.kind.startswith("rt.")]
    sent = emulator.calls[call_id].server_events
    assert [e["type"] for e in relayed] == [e["type"] for e in sent]
    assert relayed == sent
    assert [e.kind for e in events].count("ended") == 1


async def test_sigterm_hands_a_live_call_over_and_exits_zero(front: LocalSystem, bus: Bus, procs: list[Proc]) -> None:
    """SIGTERM mid-call: the worker releases the call, exits 0, and another worker takes it at once."""
    emulator = front.emulator
    assert emulator is not None
    first = await spawn("session", env=worker_env(front, "leaving"))
    procs.append(first)
    call_id = await attached_call(emulator)
    second = await spawn("session", env=worker_env(front, "staying"))
    procs.append(second)
    assert await first.stop() == 0
    await eventually(lambda: emulator.calls[call_id].sideband_count == 2, timeout=10, what="taken over")
    await emulator.caller_hangup(call_id)
    events = await call_events(bus, call_id)
    assert [(c.worker, c.attempt) for c in claims(events)] == [("leaving", 1), ("staying", 2)]
    released = [e.data for e in events if e.kind == "session.released"]
    assert released[0] == {"worker": "leaving", "attempt": 1, "reason": "drain"}
    assert not [e for e in events if e.kind == "session.lost"]
    assert [e.kind for e in events].count("rt.response.created") == 1  # greeted once, not again


async def test_a_tool_served_on_the_bus_answers_the_model(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """A model function call becomes a request on tools.<name>; the reply goes back and the model speaks."""
    emulator = front.emulator
    assert emulator is not None
    requests: list[dict[str, object]] = []

    async def lookup(subject: str, payload: bytes) -> bytes:
        requests.append(msgspec.json.decode(payload))
        return b'{"output": {"status": "shipped"}}'

    await bus.serve("tools.lookup_order", lookup)
    await start_worker("w1")
    call_id = emulator.place_call("+14155550101", "+18005550100", script="order_lookup")
    events = await call_events(bus, call_id)
    assert len(requests) == 1
    assert requests[0]["name"] == "lookup_order" and requests[0]["call_id"] == call_id
    assert msgspec.json.decode(str(requests[0]["arguments"])) == {"order_id": "A1234"}
    outputs = [e["item"] for e in emulator.calls[call_id].client_events
               if e.get("type") == "conversation.item.create"]  # fmt: skip
    assert [o["output"] for o in outputs] == ['{"status":"shipped"}']
    completed = [e.data for e in events if e.kind == "tool.completed"]
    assert completed[0]["output"] == '{"status":"shipped"}' and "error" not in completed[0]
    assert emulator.calls[call_id].server_event_types().count("response.done") == 3  # greeting, call, follow-up


async def test_a_tool_that_never_answers_gives_the_model_an_error_and_the_call_goes_on(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """No reply within the tool's timeout: an error output goes to the model, and the call ends normally."""
    emulator = front.emulator
    assert emulator is not None

    async def silent(subject: str, payload: bytes) -> bytes:
        await asyncio.sleep(30)
        return b"{}"

    await bus.serve("tools.lookup_order", silent)
    await start_worker("w1")
    call_id = emulator.place_call("+14155550101", "+18005550100", script="order_lookup")
    events = await call_events(bus, call_id)
    completed = [e.data for e in events if e.kind == "tool.completed"]
    assert completed[0]["error"] == "the tool lookup_order did not answer within 0.5 s"
    ended = [e.data for e in events if e.kind == "ended"]
    assert ended[0]["reason"] == "caller_hangup"


async def test_end_call_hangs_up_after_the_goodbye(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """The built-in end_call lets the model say goodbye, then hangs up: ended with reason end_call."""
    emulator = front.emulator
    assert emulator is not None
    await start_worker("w1")
    call_id = emulator.place_call("+14155550101", "+18005550100", script=GOODBYE)
    events = await call_events(bus, call_id)
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["end_call"]
    record = emulator.calls[call_id]
    assert record.end_reason == "hangup"
    assert record.server_event_types()[-1] == "response.done"  # the goodbye finished before the hangup


async def test_transfer_call_to_a_sips_uri_refers_the_call(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """The built-in transfer_call with a sips: target refers the call there: ended with reason referred."""
    emulator = front.emulator
    assert emulator is not None
    await start_worker("w1")
    target = {"target_uri": "sips:desk@pbx.example.com"}
    script = Script("transfer", (Say("Hello!"), AskTool("Put me through.", "transfer_call", target), Pause(30)))
    call_id = emulator.place_call("+14155550101", "+18005550100", script=script)
    events = await call_events(bus, call_id)
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["referred"]
    assert emulator.calls[call_id].target_uri == "sips:desk@pbx.example.com"


async def test_transfer_call_to_a_bad_target_tells_the_model_why_and_the_call_goes_on(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """transfer_call with a target the shared check refuses answers the model with that problem; no refer."""
    emulator = front.emulator
    assert emulator is not None
    await start_worker("w1")
    ask = AskTool("Put me through.", "transfer_call", {"target_uri": "desk"})
    call_id = emulator.place_call("+14155550101", "+18005550100", script=Script("bad", (Say("Hi"), ask, Hangup())))
    events = await call_events(bus, call_id)
    completed = [e.data for e in events if e.kind == "tool.completed"]
    assert completed[0]["error"] == "target_uri must start with tel:, sip: or sips: (e.g. tel:+14155550123)"
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["caller_hangup"]


async def test_say_reaches_the_worker_holding_the_call_and_is_recorded(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """cmd.<id>.say becomes a response.create on that call's sideband; command.say is in the log."""
    emulator, call_id = await held_call(front, start_worker)
    reply = await bus.request(f"cmd.{call_id}.say", b'{"instructions": "Say: one moment"}', timeout_s=5)
    assert msgspec.json.decode(reply) == {"ok": True}
    sent = emulator.calls[call_id].client_events[-1]
    assert sent == {"type": "response.create", "response": {"instructions": "Say: one moment"}}
    recorded = await eventually(lambda: kinds_of(bus, call_id, "command.say"))
    assert recorded[0].data["ok"] is True and recorded[0].data["served_by"] == "w1"
    bad = msgspec.json.decode(await bus.request(f"cmd.{call_id}.say", b"{}", timeout_s=5))
    assert bad == {"ok": False, "error": "say needs a non-empty 'instructions' string"}
    await emulator.caller_hangup(call_id)


async def test_an_unknown_command_on_a_live_call_is_refused_by_name(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """cmd.<id>.<verb> for a verb nobody serves answers ok false naming the verb, and sends nothing."""
    emulator, call_id = await held_call(front, start_worker)
    record = emulator.calls[call_id]
    await eventually(lambda: record.client_events)  # the greeting
    reply = msgspec.json.decode(await bus.request(f"cmd.{call_id}.dance", b"{}", timeout_s=5))
    assert reply == {"ok": False, "error": "unknown command 'dance'"}
    assert [e["type"] for e in record.client_events] == ["response.create"]
    await emulator.caller_hangup(call_id)


async def test_a_command_for_a_call_that_is_not_live_fails_clearly(
    bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """A say for a call no worker holds fails at once with NoResponder, not a hang."""
    await start_worker("w1")
    with pytest.raises(NoResponder):
        await bus.request("cmd.rtc_nobody.say", b'{"instructions": "hi"}', timeout_s=5)


async def test_a_dropped_sideband_is_reattached_while_the_call_lives(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """An abnormal close (1006) makes the worker reconnect to the same call; the call then ends normally."""
    emulator, call_id = await held_call(front, start_worker)
    emulator.drop_sideband(call_id, 1006)
    await eventually(lambda: emulator.calls[call_id].sideband_count == 2, what="reconnected")
    await emulator.caller_hangup(call_id)
    events = await call_events(bus, call_id)
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["caller_hangup"]
    assert len(claims(events)) == 1


async def test_a_tool_call_runs_once_even_when_two_holders_see_it(front: LocalSystem, bus: Bus) -> None:
    """Two workers briefly attached to one call both see the function call; only the newer claim's
    holder runs the tool, and the other learns it lost the call."""
    emulator = front.emulator
    assert emulator is not None
    requests: list[bytes] = []

    async def lookup(subject: str, payload: bytes) -> bytes:
        requests.append(payload)
        return b'{"output": "ok"}'

    await bus.serve("tools.lookup_order", lookup)
    script = Script("twice", (Pause(0.5), AskTool("Order A1?", "lookup_order", {"order_id": "A1"}), Hangup()))
    call_id = emulator.place_call("+14155550101", "+18005550100", script=script)
    accepted = await eventually(lambda: kinds_of(bus, call_id, "accepted"))
    outcome = payload(accepted[0], UpstreamOutcome)
    calls = CallsClient(front.settings.openai_base_url, front.settings.require_api_key())

    async def open_sideband(cid: str) -> Sideband:
        return await Sideband.open(front.settings.openai_base_url, cid, front.settings.require_api_key())

    lost: list[str] = []
    sessions = []
    for name in ("old", "new"):  # "new" claims second: its token is higher and the record is its own
        leases = Leases(bus, await bus.key_value(LEASES_BUCKET), worker=name, lease_s=LEASE_S)
        lease, _ = await leases.claim(call_id, lambda name=name: lost.append(name))  # type: ignore[misc]
        assert lease is not None
        sessions.append(CallSession(bus=bus, call_id=call_id, lease=lease, worker=name, accepted=outcome,
                                    greet=False, open_sideband=open_sideband, calls=calls))  # fmt: skip
    await asyncio.wait_for(asyncio.gather(*(s.run() for s in sessions)), 15)
    assert len(requests) == 1
    outputs = [e for e in emulator.calls[call_id].client_events if e.get("type") == "conversation.item.create"]
    assert len(outputs) == 1
    assert lost == ["old"]
    await calls.aclose()


async def test_a_refused_sideband_says_why_with_openais_status_and_code(front: LocalSystem) -> None:
    """Opening the sideband of a call OpenAI does not know fails with 404 and its code call_id_not_found."""
    settings = front.settings
    async with sideband_session() as http:
        with pytest.raises(UpstreamError) as refused:
            await Sideband.open(settings.openai_base_url, "rtc_nobody", settings.require_api_key(), http=http)
    assert (refused.value.status, refused.value.code) == (404, "call_id_not_found")
    assert refused.value.call_gone


async def test_a_worker_reports_ready_and_its_live_calls_on_its_health_port(front: LocalSystem, bus: Bus) -> None:
    """/readyz is 200 once the worker takes calls; /metrics shows the call it holds and its cap."""
    emulator = front.emulator
    assert emulator is not None
    port = free_port()
    worker = SessionWorker(msgspec.structs.replace(front.settings, health_port=port), worker="w1")
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: worker.ready)
        call_id = await attached_call(emulator)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/readyz")).status_code == 200
            metrics = (await http.get("/metrics")).text
        assert "switchboard_session_live_calls 1.0" in metrics
        assert "switchboard_session_max_calls 2.0" in metrics
        await emulator.caller_hangup(call_id)
    finally:
        await worker.shutdown()
        await asyncio.wait_for(task, 10)


async def test_an_unreadable_accepted_event_is_taken_out_of_the_queue(
    front: LocalSystem, bus: Bus, start_worker: Callable[[str], Awaitable[SessionWorker]]
) -> None:
    """An `accepted` event whose data is not an answer is dropped once, not redelivered forever."""
    await start_worker("w1")
    await bus.record("rtc_garbled", "accepted", {"http_status": "not a number"})

    async def settled() -> bool:
        info = await bus.js.consumer_info("CALLS", "session")
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(settled, what="the event left the session queue")
    assert await bus.last_event("rtc_garbled", "session.claimed") is None


async def test_a_call_that_reaches_its_maximum_duration_is_hung_up(front: LocalSystem, bus: Bus) -> None:
    """An accepted call whose max_duration_s runs out is hung up at OpenAI and ends as max_duration."""
    emulator = front.emulator
    assert emulator is not None
    call_id = emulator.place_call("+14155550101", "+18005550100", script="hold")
    accepted = await eventually(lambda: kinds_of(bus, call_id, "accepted"))
    outcome = msgspec.structs.replace(payload(accepted[0], UpstreamOutcome), max_duration_s=1.0)
    calls = CallsClient(front.settings.openai_base_url, front.settings.require_api_key())

    async def open_sideband(cid: str) -> Sideband:
        return await Sideband.open(front.settings.openai_base_url, cid, front.settings.require_api_key())

    leases = Leases(bus, await bus.key_value(LEASES_BUCKET), worker="w1", lease_s=LEASE_S)
    lease, _ = await leases.claim(call_id, lambda: None)
    assert lease is not None
    session = CallSession(bus=bus, call_id=call_id, lease=lease, worker="w1", accepted=outcome, greet=False,
                          open_sideband=open_sideband, calls=calls)  # fmt: skip
    assert resolve_end_reason(await asyncio.wait_for(session.run(), 10)) == "max_duration"
    assert emulator.calls[call_id].end_reason == "hangup"
    await calls.aclose()


async def test_sending_on_a_sideband_that_has_gone_is_an_upstream_error(front: LocalSystem, bus: Bus) -> None:
    """A client event sent on a closed sideband raises UpstreamError (what the session handles), not a socket error."""
    emulator = front.emulator
    assert emulator is not None
    call_id = emulator.place_call("+14155550101", "+18005550100", script="hold")
    await eventually(lambda: kinds_of(bus, call_id, "accepted"))
    async with sideband_session() as http:
        sideband = await Sideband.open(
            front.settings.openai_base_url, call_id, front.settings.require_api_key(), http=http
        )
        await sideband.close()
        with pytest.raises(UpstreamError, match="sideband send failed"):
            await sideband.send({"type": "response.create"})
