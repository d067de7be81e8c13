"""The controller against a real nats-server and the emulator: once per call, capacity, retries, commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from switchboard.cli.local import LocalSystem
from switchboard.cli.natsserver import NatsServer
from switchboard.controller.capacity import BUCKET as CAPACITY_BUCKET
from switchboard.controller.service import REFERS_CONSUMER, Controller
from switchboard.shared.bus import Bus
from switchboard.shared.webhooks import signed_headers
from tests.e2e.conftest import attached_call, call_events
from tests.fixtures.system import running
from tests.waiting import eventually

POLICY = """
version: 1
agents:
  helper: {instructions: Help.}
rules:
  - name: small-line
    when: {dialled: "+18005550100"}
    max_live_calls: 2
    accept: {agent: helper}
default:
  accept: {agent: helper}
"""


UNENDING = """
version: 1
agents:
  helper: {instructions: Help.}
rules:
  - name: one-line
    when: {dialled: "+18005550100"}
    max_live_calls: 1
    max_call_duration_s: 1
    accept: {agent: helper}
default:
  accept: {agent: helper}
"""


def local_system(
    nats_server: NatsServer, tmp_path: Path, *, policy: str = POLICY, workers: int = 1, refer_timeout_s: float = 0.5
) -> contextlib.AbstractAsyncContextManager[LocalSystem]:
    """Ingress, one controller, `workers` session workers and the emulator, under `policy`."""
    return running(nats_server, tmp_path, policy=policy, workers=workers, refer_timeout_s=refer_timeout_s)


@pytest.fixture
async def system(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """Ingress, one controller, one session worker and the emulator, with a capped rule."""
    async with local_system(nats_server, tmp_path) as local:
        yield local


@pytest.fixture
async def unclaimed(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """No session workers (accepted calls are never claimed, so never end), and a rule of one 1 s call."""
    async with local_system(nats_server, tmp_path, policy=UNENDING, workers=0) as local:
        yield local


@pytest.fixture
async def slow_refers(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[LocalSystem]:
    """Like `system`, with a 3 s refer timeout: long enough to stop a controller within it."""
    async with local_system(nats_server, tmp_path, refer_timeout_s=3.0) as local:
        yield local


def kinds(events: list[object]) -> list[str]:
    return [e.kind for e in events]  # type: ignore[attr-defined]


async def decision(bus: Bus, call_id: str) -> dict[str, object]:
    decided = await eventually(lambda: bus.last_event(call_id, "decided"), what=f"{call_id} decided")
    data: dict[str, object] = decided.data
    return data


def stored_at(event: object) -> float:
    """An event's ``time`` as Unix seconds."""
    return datetime.fromisoformat(event.time).timestamp()  # type: ignore[attr-defined]


async def test_three_replicas_and_duplicate_webhooks_decide_each_call_once(system: LocalSystem, bus: Bus) -> None:
    """With 3 controllers and each call's webhook stored twice (two ids), each call has one decision and
    OpenAI sees one accept."""
    emulator = system.emulator
    assert emulator is not None and system.ingress is not None
    extra = [Controller(system.settings) for _ in range(2)]
    tasks = [asyncio.create_task(c.run()) for c in extra]
    try:
        await eventually(lambda: all(c.ready for c in extra))
        call_ids = [emulator.place_call(f"+1415555{i:04d}", "+18005550111", script="silent") for i in range(6)]
        async with httpx.AsyncClient() as http:
            for call_id in call_ids:  # a second, differently-identified delivery of the same call
                body = json.dumps(
                    {
                        "object": "event",
                        "id": f"evt_{call_id}",
                        "type": "realtime.call.incoming",
                        "created_at": int(time.time()),
                        "data": {"call_id": call_id, "sip_headers": []},
                    }
                )
                headers = signed_headers(system.settings.webhook_secrets[0].reveal(), f"wh_dup_{call_id}",
                                         int(time.time()), body)  # fmt: skip
                response = await http.post(
                    f"http://127.0.0.1:{system.ingress.bound_port}/webhooks/openai",
                    content=body,
                    headers={**headers, "content-type": "application/json"},
                )
                assert response.status_code == 200
        for call_id in call_ids:
            events = await call_events(bus, call_id)
            assert kinds(events).count("incoming") == 2
            assert kinds(events).count("decided") == 1
            accepts = [r for r in emulator.calls[call_id].rest_requests if r.op == "accept"]
            assert len(accepts) == 1
    finally:
        for c in extra:
            await c.shutdown()
        await asyncio.gather(*tasks)


async def test_a_full_rule_turns_the_third_call_away_busy_and_takes_a_fourth_after_one_ends(
    system: LocalSystem, bus: Bus
) -> None:
    """max_live_calls 2: the 3rd concurrent call is rejected 486; after one ends, a 4th is accepted."""
    emulator = system.emulator
    assert emulator is not None
    first = emulator.place_call("+14155550001", "+18005550100", script="hold")
    second = emulator.place_call("+14155550002", "+18005550100", script="hold")
    for call_id in (first, second):
        assert (await decision(bus, call_id))["action"] == "accept"
    third = emulator.place_call("+14155550003", "+18005550100", script="hold")
    turned_away = await decision(bus, third)
    assert (turned_away["action"], turned_away["status_code"], turned_away["capacity_full"]) == ("reject", 486, True)
    assert (await emulator.wait_ended(third, 10)).status_code == 486
    await eventually(lambda: emulator.calls[first].sideband_count == 1)
    await emulator.caller_hangup(first)
    await call_events(bus, first)

    async def released() -> bool:  # the controller counts the ended call off its rule (asynchronously)
        info = await bus.js.consumer_info("CALLS", "controller-ended")
        return not (info.num_pending or info.num_ack_pending)

    await eventually(released, what="the ended call released from the rule's capacity")
    fourth = emulator.place_call("+14155550004", "+18005550100", script="hold")
    assert (await decision(bus, fourth))["action"] == "accept"
    for call_id in (second, fourth):
        await eventually(lambda cid=call_id: emulator.calls[cid].sideband_count == 1)  # type: ignore[misc]
        await emulator.caller_hangup(call_id)


async def test_a_call_whose_end_is_never_recorded_frees_its_slot_once_its_max_duration_has_run_out(
    unclaimed: LocalSystem, bus: Bus
) -> None:
    """max_live_calls 1, max_call_duration_s 1, no worker to end calls: the 2nd call is busy, and a 3rd
    once the 1st call's duration (and its 1 s grace) is over is accepted, the 1st still never ended."""
    emulator = unclaimed.emulator
    assert emulator is not None
    first = emulator.place_call("+14155550001", "+18005550100", script="hold")
    accepted = await eventually(lambda: bus.last_event(first, "accepted"), what="the first call accepted")
    assert accepted.data["max_duration_s"] == 1.0
    second = emulator.place_call("+14155550002", "+18005550100", script="hold")
    busy = await decision(bus, second)
    assert (busy["action"], busy["status_code"], busy["capacity_full"]) == ("reject", 486, True)
    first_decided = await bus.last_event(first, "decided")
    assert first_decided is not None
    over = stored_at(first_decided) + 1.0 + 1.0  # its max duration, then the grace
    await eventually(lambda: time.time() > over, what="the first call's max duration and grace are over")
    third = emulator.place_call("+14155550003", "+18005550100", script="hold")
    taken = await decision(bus, third)
    assert (taken["action"], taken["rule"], taken["max_duration_s"]) == ("accept", "one-line", 1.0)
    assert await bus.last_event(first, "ended") is None
    assert [r.op for r in emulator.calls[third].rest_requests] == ["accept"]


async def test_capacity_kept_as_a_list_by_an_older_controller_still_counts(system: LocalSystem, bus: Bus) -> None:
    """A rule's capacity key in the old form (a JSON list of call ids) counts its calls: the rule is full."""
    kv = await bus.key_value(CAPACITY_BUCKET)
    await kv.put("rule_small-line", b'["rtc_old_1", "rtc_old_2"]')
    emulator = system.emulator
    assert emulator is not None
    call_id = emulator.place_call("+14155550001", "+18005550100", script="hold")
    turned_away = await decision(bus, call_id)
    assert (turned_away["action"], turned_away["status_code"], turned_away["capacity_full"]) == ("reject", 486, True)


async def test_openai_500_twice_then_200_accepts_the_call_once(system: LocalSystem, bus: Bus) -> None:
    """Transient 500s are retried with backoff: the third try succeeds and one accepted is recorded."""
    emulator = system.emulator
    assert emulator is not None
    emulator.faults.add("accept", status=500, times=2)
    call_id = emulator.place_call("+14155550101", "+18005550222", script="silent")
    events = await call_events(bus, call_id)
    assert kinds(events).count("accepted") == 1 and "failed" not in kinds(events)
    statuses = [r.status for r in emulator.calls[call_id].rest_requests if r.op == "accept"]
    assert statuses == [500, 500, 200]


async def test_a_caller_gone_before_accept_is_recorded_as_failed_without_retry(system: LocalSystem, bus: Bus) -> None:
    """404 call_id_not_found: one try, `failed` with that code, and the call ends as caller_gone."""
    emulator = system.emulator
    assert emulator is not None
    emulator.faults.add("accept", status=404, code="call_id_not_found")
    call_id = emulator.place_call("+14155550101", "+18005550222", script="silent")
    events = await call_events(bus, call_id)
    failed = [e.data for e in events if e.kind == "failed"]
    assert failed[0]["code"] == "call_id_not_found" and failed[0]["http_status"] == 404
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["caller_gone"]
    assert len([r for r in emulator.calls[call_id].rest_requests if r.op == "accept"]) == 1


async def test_the_hangup_command_ends_a_live_call(system: LocalSystem, bus: Bus) -> None:
    """cmd.<id>.hangup hangs up at OpenAI, is recorded, and the call ends with reason hangup."""
    emulator = system.emulator
    assert emulator is not None
    call_id = await attached_call(emulator, "+18005550222")
    reply = await bus.request(f"cmd.{call_id}.hangup", b"{}", timeout_s=5)
    assert msgspec.json.decode(reply) == {"ok": True}
    events = await call_events(bus, call_id)
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["hangup"]
    assert [e.data["ok"] for e in events if e.kind == "command.hangup"] == [True]
    assert [e.data["http_status"] for e in events if e.kind == "hungup"] == [200]
    assert emulator.calls[call_id].end_reason == "hangup"


async def test_a_refer_command_for_an_unknown_call_fails_clearly(system: LocalSystem, bus: Bus) -> None:
    """Referring a call OpenAI does not know answers ok false, saying the call is not live."""
    reply = await bus.request("cmd.rtc_unknown.refer", b'{"target_uri": "tel:+14155550123"}', timeout_s=5)
    assert msgspec.json.decode(reply) == {"ok": False, "error": "the call is not live"}
    bad = await bus.request("cmd.rtc_unknown.refer", b'{"target_uri": "mailto:x"}', timeout_s=5)
    assert msgspec.json.decode(bad)["error"] == "target_uri must start with tel:, sip: or sips: (e.g. tel:+14155550123)"


async def test_a_refer_the_carrier_never_completes_is_flagged(system: LocalSystem, bus: Bus) -> None:
    """A refer answered 200 whose call has not ended after the refer timeout gets refer.suspected_failed."""
    emulator = system.emulator
    assert emulator is not None
    call_id = await attached_call(emulator, "+18005550222")
    emulator.faults.add("refer", code="carrier_silent", call_id=call_id)
    reply = await bus.request(f"cmd.{call_id}.refer", b'{"target_uri": "tel:+14155550123"}', timeout_s=5)
    assert msgspec.json.decode(reply) == {"ok": True}
    flagged = await eventually(lambda: bus.last_event(call_id, "refer.suspected_failed"))
    assert flagged.data["target_uri"] == "tel:+14155550123"
    await emulator.caller_hangup(call_id)


async def test_a_refer_watch_started_by_a_controller_that_stops_is_finished_by_another(
    slow_refers: LocalSystem, bus: Bus
) -> None:
    """A controller stopped 3 s refer timeout or less after a refer's 200: a controller started later flags
    the still-live call once the timeout is over, exactly once."""
    emulator, first = slow_refers.emulator, slow_refers.controller
    assert emulator is not None and first is not None
    first_task = next(t for t in slow_refers._tasks if t.get_name() == "controller")
    call_id = await attached_call(emulator, "+18005550222")
    emulator.faults.add("refer", code="carrier_silent", call_id=call_id)
    reply = await bus.request(f"cmd.{call_id}.refer", b'{"target_uri": "tel:+14155550123"}', timeout_s=5)
    assert msgspec.json.decode(reply) == {"ok": True}
    referred = await eventually(lambda: bus.last_event(call_id, "referred"), what="referred recorded")
    await first.shutdown()
    await asyncio.wait_for(first_task, 10)
    assert time.time() - stored_at(referred) < 3.0, "the first controller stopped only after the refer was due"
    assert await bus.last_event(call_id, "refer.suspected_failed") is None
    second = Controller(slow_refers.settings)
    task = asyncio.create_task(second.run())
    try:
        flagged = await eventually(lambda: bus.last_event(call_id, "refer.suspected_failed"), what="flagged")
        assert flagged.data["target_uri"] == "tel:+14155550123"
        assert stored_at(flagged) - stored_at(referred) >= 3.0
        await emulator.caller_hangup(call_id)
        events = await call_events(bus, call_id)
        assert kinds(events).count("refer.suspected_failed") == 1
    finally:
        await second.shutdown()
        await asyncio.wait_for(task, 10)


async def test_a_refer_that_completes_is_not_flagged(system: LocalSystem, bus: Bus) -> None:
    """A refer the carrier completes ends the call as referred; once its watch is done, nothing is flagged."""
    emulator = system.emulator
    assert emulator is not None
    call_id = await attached_call(emulator, "+18005550222")
    reply = await bus.request(f"cmd.{call_id}.refer", b'{"target_uri": "tel:+14155550123"}', timeout_s=5)
    assert msgspec.json.decode(reply) == {"ok": True}
    events = await call_events(bus, call_id)
    assert [e.data["reason"] for e in events if e.kind == "ended"] == ["referred"]

    async def watch_done() -> bool:
        info = await bus.js.consumer_info("CALLS", REFERS_CONSUMER)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(watch_done, what="the refer watch finished")
    assert await bus.last_event(call_id, "refer.suspected_failed") is None


async def test_a_replica_dying_mid_accept_has_its_call_confirmed_accepted_by_another(
    system: LocalSystem, bus: Bus
) -> None:
    """A controller that dies while OpenAI takes its accept: another replica resumes within 5 s, meets 409
    call_already_handled, records `accepted` confirmed by the conflict, and a worker claims the call."""
    emulator = system.emulator
    assert emulator is not None
    dying = next(t for t in system._tasks if t.get_name() == "controller")
    emulator.faults.add("accept", delay_s=1.0)  # slow enough to die during it, then it goes through
    call_id = emulator.place_call("+14155550101", "+18005550222", script="hold")
    await eventually(lambda: not emulator.faults.pending(), what="the accept is in flight")
    dying.cancel()  # what a kill -9 leaves: no answer recorded, no ack
    died = time.monotonic()
    survivor = Controller(system.settings)
    task = asyncio.create_task(survivor.run())
    try:
        accepted = await eventually(lambda: bus.last_event(call_id, "accepted"), what="accepted recorded")
        assert time.monotonic() - died <= 5.0
        assert accepted.data["confirmed_by"] == "conflict"
        await eventually(lambda: emulator.calls[call_id].sideband_count == 1, what="a worker claimed it")
        statuses = [r.status for r in emulator.calls[call_id].rest_requests if r.op == "accept"]
        assert statuses == [200, 409]
        await emulator.caller_hangup(call_id)
        events = await call_events(bus, call_id)
        assert "failed" not in kinds(events)
        assert [e.data["reason"] for e in events if e.kind == "ended"] == ["caller_hangup"]
    finally:
        await survivor.shutdown()
        await asyncio.wait_for(task, 10)
