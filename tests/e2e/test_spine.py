"""One real call end to end: webhook in, decision, OpenAI REST, sideband relay, call ended."""

from __future__ import annotations

import json
import time

import httpx

from switchboard.cli.local import LocalSystem
from switchboard.shared.bus import Bus
from switchboard.shared.webhooks import signed_headers
from tests.e2e.conftest import call_events
from tests.waiting import eventually


def _subsequence(wanted: list[str], kinds: list[str]) -> bool:
    it = iter(kinds)
    return all(any(k == w for k in it) for w in wanted)


async def test_accepted_call_is_decided_answered_relayed_and_ended(system: LocalSystem, bus: Bus) -> None:
    """An accept-rule call: the log shows incoming → decided → accepted → claimed → realtime events → ended."""
    assert system.emulator is not None
    call_id = system.emulator.place_call("+14155550101", "+18005550100")
    kinds = [e.kind for e in await call_events(bus, call_id)]
    assert _subsequence(
        ["incoming", "decided", "accepted", "session.claimed", "rt.session.created", "rt.response.done", "ended"],
        kinds,
    ), kinds
    assert kinds.count("decided") == 1 and kinds.count("ended") == 1


async def test_openai_sees_the_agents_accept_body_and_the_bearer_key(system: LocalSystem, bus: Bus) -> None:
    """The emulator received the agent's session as the accept body and an authorised sideband."""
    assert system.emulator is not None
    call_id = system.emulator.place_call("+14155550101", "+18005550100")
    await call_events(bus, call_id)
    record = system.emulator.calls[call_id]
    assert record.accept_body["type"] == "realtime"
    assert record.accept_body["model"] == "gpt-realtime-2"
    assert record.accept_body["audio"] == {"output": {"voice": "marin"}}
    assert [c.authorization for c in record.sideband_connections] == ["valid"]
    greeting = record.client_events[0]
    assert greeting["type"] == "response.create" and "Greet the caller" in greeting["response"]["instructions"]


async def test_every_server_event_is_relayed_once_in_order(system: LocalSystem, bus: Bus) -> None:
    """The rt.* events on the bus are exactly the server events the emulator sent, in order."""
    assert system.emulator is not None
    call_id = system.emulator.place_call("+14155550101", "+18005550100")
    relayed = [e.data for e in await call_events(bus, call_id) if e.kind.startswith("rt.")]
    assert relayed == system.emulator.calls[call_id].server_events


async def test_reject_rule_sends_its_status_code_and_opens_no_sideband(system: LocalSystem, bus: Bus) -> None:
    """A blocked caller is rejected with the rule's 603; no sideband is opened."""
    assert system.emulator is not None
    call_id = system.emulator.place_call("+19005550000", "+18005550100")
    kinds = [e.kind for e in await call_events(bus, call_id)]
    record = system.emulator.calls[call_id]
    assert (record.state, record.status_code) == ("rejected", 603)
    assert record.sideband_connections == []
    assert _subsequence(["incoming", "decided", "rejected", "ended"], kinds)


async def test_refer_rule_transfers_to_its_target(system: LocalSystem, bus: Bus) -> None:
    """The after-hours number is referred to the rule's tel: URI."""
    assert system.emulator is not None
    call_id = system.emulator.place_call("+14155550102", "+18005550199")
    kinds = [e.kind for e in await call_events(bus, call_id)]
    record = system.emulator.calls[call_id]
    assert (record.state, record.target_uri) == ("referred", "tel:+14155550123")
    assert _subsequence(["incoming", "decided", "referred", "ended"], kinds)


def _webhook(system: LocalSystem, call_id: str, webhook_id: str, *, tamper: bool = False) -> tuple[str, dict[str, str]]:
    body = json.dumps({"object": "event", "id": f"evt_{webhook_id}", "type": "realtime.call.incoming",
                       "created_at": int(time.time()), "data": {"call_id": call_id, "sip_headers": [
                           {"name": "From", "value": "sip:+19005550000@sip.example.com"},
                           {"name": "To", "value": "sip:+18005550100@sip.example.com"}]}})  # fmt: skip
    headers = signed_headers(system.settings.webhook_secrets[0].reveal(), webhook_id, int(time.time()), body)
    headers["content-type"] = "application/json"
    if tamper:
        body = body.replace("+1900", "+1800")
    return body, headers


async def _subject_count(bus: Bus, subject: str) -> int:
    info = await bus.js.stream_info("CALLS", subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def test_tampered_webhook_gets_400_and_publishes_nothing(system: LocalSystem, bus: Bus) -> None:
    """A body changed after signing is refused with 400 and nothing lands on the bus."""
    assert system.ingress is not None
    body, headers = _webhook(system, "rtc_tampered", "wh_tampered", tamper=True)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{system.ingress.bound_port}/webhooks/openai", content=body, headers=headers
        )
    assert response.status_code == 400
    assert "signature" in response.json()["error"]
    assert await _subject_count(bus, "calls.rtc_tampered.>") == 0


async def test_the_same_webhook_delivered_twice_makes_one_call(system: LocalSystem, bus: Bus) -> None:
    """Two deliveries of one webhook-id: both answered 200, one incoming event, one decision."""
    assert system.ingress is not None
    body, headers = _webhook(system, "rtc_twice", "wh_twice")
    url = f"http://127.0.0.1:{system.ingress.bound_port}/webhooks/openai"
    async with httpx.AsyncClient() as http:
        first = await http.post(url, content=body, headers=headers)
        second = await http.post(url, content=body, headers=headers)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    await call_events(bus, "rtc_twice", until="decided")
    assert await _subject_count(bus, "calls.rtc_twice.incoming") == 1
    assert await eventually(lambda: _subject_count(bus, "calls.rtc_twice.ended"))
    assert await _subject_count(bus, "calls.rtc_twice.decided") == 1


async def test_ingress_reports_ready_once_connected(system: LocalSystem) -> None:
    """/healthz and /readyz answer 200 when the ingress is connected with the stream in place."""
    assert system.ingress is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.ingress.bound_port}") as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).json() == {"ready": True}
