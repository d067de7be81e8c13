"""The emulator's control API (/_emulator), driven through EmulatorClient as `switchboard call` does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from switchboard.emulator.client import EmulatorClient
from switchboard.emulator.errors import EmulatorError
from switchboard.emulator.server import Emulator
from tests.fixtures.emulator import WebhookReceiver, accept, connect_sideband, run_agent
from tests.waiting import eventually


@pytest.fixture
async def client(wired_emulator: Emulator) -> AsyncIterator[EmulatorClient]:
    async with EmulatorClient(wired_emulator.url, timeout_s=5.0) as control:
        yield control


async def test_place_and_get_a_call(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver, client: EmulatorClient
) -> None:
    """POST /_emulator/calls places a ringing call with extra SIP headers; GET returns its record."""
    call_id = await client.place_call(
        "+14155550100", "+18005551212", sip_headers=[{"name": "X-Tenant", "value": "acme"}], script="hold"
    )
    assert call_id.startswith("rtc_") and len(call_id) == 4 + 32
    await eventually(lambda: webhook_receiver.received)
    record = await client.get_call(call_id)
    assert (record.from_number, record.to_number, record.script) == ("+14155550100", "+18005551212", "hold")
    assert record.state == "ringing" and record.webhook_deliveries[0].status == 200
    assert [h.name for h in record.sip_headers] == ["From", "To", "Call-ID", "X-Tenant"]
    assert [r.call_id for r in await client.list_calls()] == [call_id]


async def test_place_a_live_call(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver, client: EmulatorClient
) -> None:
    """surface=live places a Live session (live_ id, live.transport.incoming); its record says so."""
    session_id = await client.place_call("+14155550100", "+18005551212", script="hold", surface="live")
    assert session_id.startswith("live_")
    await eventually(lambda: webhook_receiver.received)
    assert webhook_receiver.received[0].event["type"] == "live.transport.incoming"
    record = await client.get_call(session_id)
    assert (record.surface, record.twin_id) == ("live", None)


async def test_place_a_call_on_both_surfaces(wired_emulator: Emulator) -> None:
    """surface=both answers the Realtime id and the Live twin's id; each record names the other."""
    async with httpx.AsyncClient(base_url=wired_emulator.url, timeout=5.0) as http:
        body = {"from": "+14155550100", "to": "+18005551212", "surface": "both"}
        placed = (await http.post("/_emulator/calls", json=body)).json()
        refused = await http.post("/_emulator/calls", json={**body, "surface": "sms"})
    assert placed["call_id"].startswith("rtc_") and placed["twin_id"].startswith("live_")
    assert wired_emulator.calls[placed["twin_id"]].twin_id == placed["call_id"]
    assert refused.status_code == 400


async def test_record_json_uses_from_and_to(wired_emulator: Emulator) -> None:
    """The record's JSON names the numbers "from" and "to", like the place-call body."""
    call_id = wired_emulator.place_call("+14155550100", "+18005551212", script="hold")
    async with httpx.AsyncClient(base_url=wired_emulator.url, timeout=5.0) as http:
        record = (await http.get(f"/_emulator/calls/{call_id}")).json()
    assert (record["from"], record["to"], record["state"]) == ("+14155550100", "+18005551212", "ringing")


async def test_wait_ended_after_a_scripted_call(wired_emulator: Emulator, client: EmulatorClient) -> None:
    """EmulatorClient.wait_ended polls until the scripted caller has hung up."""
    call_id = await client.place_call("+14155550100", "+18005551212", script="silent")
    await accept(wired_emulator, call_id)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await run_agent(ws)
    record = await client.wait_ended(call_id, timeout_s=5)
    assert record.end_reason == "caller_hangup"
    assert record.server_event_types()[0] == "session.created"


async def test_caller_hangup_through_control_api(wired_emulator: Emulator, client: EmulatorClient) -> None:
    """POST /_emulator/calls/{id}/hangup ends a ringing call as the caller; a late accept is then 404."""
    call_id = await client.place_call("+14155550100", "+18005551212", script="hold")
    record = await client.hangup(call_id)
    assert (record.state, record.end_reason) == ("ended", "caller_hangup")
    async with httpx.AsyncClient(base_url=wired_emulator.base_url, timeout=5.0) as http:
        headers = {"Authorization": f"Bearer {wired_emulator.config.api_key}"}
        late = await http.post(f"/realtime/calls/{call_id}/accept", json={"type": "realtime"}, headers=headers)
    assert late.json()["error"]["code"] == "call_id_not_found"


async def test_drop_sideband_through_control_api(wired_emulator: Emulator, client: EmulatorClient) -> None:
    """POST /_emulator/calls/{id}/drop_sideband drops the live sideband for another process's failover test."""
    call_id = await client.place_call("+14155550100", "+18005551212", script="hold")
    await accept(wired_emulator, call_id)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await ws.recv()
        assert await client.drop_sideband(call_id) == 1
        await eventually(lambda: ws.close_code == 1006, what="abnormal close seen by the client")


async def test_bad_place_call_bodies_are_400(wired_emulator: Emulator) -> None:
    """Missing numbers, unknown fields and unknown scripts are refused with 400 and a message."""
    async with httpx.AsyncClient(base_url=wired_emulator.url, timeout=5.0) as http:
        for body in (
            {"to": "+18005551212"},
            {"from": "", "to": "+1"},
            {"from": "+1", "to": "+2", "script": "nope"},
            {"from": "+1", "to": "+2", "extra": 1},
            {"from": "+1", "to": "+2", "sip_headers": [{"name": "X"}]},
        ):
            response = await http.post("/_emulator/calls", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]


async def test_place_call_without_webhook_url_is_409(emulator: Emulator) -> None:
    """The control API explains that calls cannot be placed without a webhook_url."""
    async with EmulatorClient(emulator.url, timeout_s=5.0) as control:
        with pytest.raises(EmulatorError, match="webhook_url"):
            await control.place_call("+14155550100", "+18005551212")


async def test_unknown_call_is_404(client: EmulatorClient) -> None:
    """GET of an unknown call id is a clear error."""
    with pytest.raises(EmulatorError, match="404"):
        await client.get_call("rtc_nope")


async def test_faults_over_the_control_api(wired_emulator: Emulator, client: EmulatorClient) -> None:
    """POST /_emulator/faults arms a fault another process can rely on."""
    await client.add_fault("accept", status=503, times=1)
    call_id = await client.place_call("+14155550100", "+18005551212", script="hold")
    async with httpx.AsyncClient(base_url=wired_emulator.base_url, timeout=5.0) as http:
        headers = {"Authorization": f"Bearer {wired_emulator.config.api_key}"}
        first = await http.post(f"/realtime/calls/{call_id}/accept", json={"type": "realtime"}, headers=headers)
        second = await http.post(f"/realtime/calls/{call_id}/accept", json={"type": "realtime"}, headers=headers)
    assert (first.status_code, second.status_code) == (503, 200)
    assert first.json()["error"]["type"] == "server_error"
