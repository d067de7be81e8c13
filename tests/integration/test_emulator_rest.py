"""The emulated REST call control (/v1/realtime/calls/{id}/…): auth, errors and state, as OpenAI answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import openai
import pytest

from switchboard.emulator.server import Emulator
from tests.fixtures.emulator import WebhookReceiver, accept, connect_sideband, read_until_closed, rest
from tests.waiting import eventually


@pytest.fixture
async def sdk(wired_emulator: Emulator) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real openai SDK pointed at the emulator, without retries."""
    async with openai.AsyncOpenAI(
        api_key=wired_emulator.config.api_key, base_url=wired_emulator.base_url, max_retries=0
    ) as client:
        yield client


def ring(emulator: Emulator, script: str = "hold") -> str:
    return emulator.place_call("+14155550100", "+18005551212", script=script)


async def test_missing_bearer_is_401(wired_emulator: Emulator) -> None:
    """A request without Authorization gets 401 invalid_api_key and is recorded as unauthorised."""
    call_id = ring(wired_emulator)
    response = await rest(wired_emulator, call_id, "accept", {"type": "realtime"}, headers={})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert error["param"] is None
    request = wired_emulator.calls[call_id].rest_requests[0]
    assert (request.authorization, request.status) == ("missing", 401)
    assert wired_emulator.calls[call_id].state == "ringing"


async def test_wrong_bearer_is_401_without_echoing_the_key(wired_emulator: Emulator) -> None:
    """A wrong key gets 401 invalid_api_key, and the answer does not contain the presented key."""
    call_id = ring(wired_emulator)
    wrong = "sk-wrong-0123456789abcdef"
    response = await rest(
        wired_emulator, call_id, "accept", {"type": "realtime"}, headers={"Authorization": f"Bearer {wrong}"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert wrong not in response.text and wired_emulator.config.api_key not in response.text
    assert wired_emulator.calls[call_id].rest_requests[0].authorization == "invalid"


async def test_unknown_call_is_404_call_id_not_found(wired_emulator: Emulator) -> None:
    """Any operation on a call id the emulator never issued is 404 call_id_not_found."""
    for op in ("accept", "reject", "refer", "hangup"):
        response = await rest(wired_emulator, "rtc_" + "0" * 32, op, {"type": "realtime"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "call_id_not_found"


async def test_sdk_sees_call_id_not_found(wired_emulator: Emulator, sdk: openai.AsyncOpenAI) -> None:
    """The openai SDK raises NotFoundError with code call_id_not_found for an unknown call."""
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.realtime.calls.accept("rtc_" + "f" * 32, type="realtime")
    assert caught.value.code == "call_id_not_found"


async def test_accept_body_is_recorded_exactly(wired_emulator: Emulator, sdk: openai.AsyncOpenAI) -> None:
    """An accept sent through the openai SDK succeeds and its JSON body is recorded as sent."""
    call_id = ring(wired_emulator)
    await sdk.realtime.calls.accept(
        call_id,
        type="realtime",
        model="gpt-realtime",
        instructions="Be brief.",
        audio={"output": {"voice": "marin"}},
        tools=[{"type": "function", "name": "lookup_order", "parameters": {"type": "object"}}],
    )
    record = wired_emulator.calls[call_id]
    assert record.state == "accepted" and record.answered_at is not None
    assert record.accept_body == {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "audio": {"output": {"voice": "marin"}},
        "tools": [{"type": "function", "name": "lookup_order", "parameters": {"type": "object"}}],
    }
    assert record.rest_requests[-1].status == 200 and record.rest_requests[-1].authorization == "valid"


async def test_accept_without_type_is_400(wired_emulator: Emulator) -> None:
    """An accept without type: "realtime" is 400 with param "type" and the call keeps ringing."""
    call_id = ring(wired_emulator)
    response = await rest(wired_emulator, call_id, "accept", {"model": "gpt-realtime"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "type"
    assert wired_emulator.calls[call_id].state == "ringing"


async def test_accept_with_unknown_parameter_is_400(wired_emulator: Emulator) -> None:
    """An accept with a key CallAcceptParams does not have (e.g. beta's top-level voice) is unknown_parameter."""
    call_id = ring(wired_emulator)
    response = await rest(wired_emulator, call_id, "accept", {"type": "realtime", "voice": "alloy"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_parameter"
    assert response.json()["error"]["param"] == "voice"


async def test_accept_of_accepted_call_is_409(wired_emulator: Emulator) -> None:
    """Accepting a call twice is refused with 409 call_already_handled; the first accept stands."""
    call_id = ring(wired_emulator)
    await accept(wired_emulator, call_id)
    response = await rest(wired_emulator, call_id, "accept", {"type": "realtime", "model": "other"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "call_already_handled"
    assert wired_emulator.calls[call_id].accept_body == {"type": "realtime", "model": "gpt-realtime"}


async def test_reject_defaults_to_603(wired_emulator: Emulator, sdk: openai.AsyncOpenAI) -> None:
    """A reject without a status code declines the call with SIP 603."""
    call_id = ring(wired_emulator)
    await sdk.realtime.calls.reject(call_id)
    record = wired_emulator.calls[call_id]
    assert (record.state, record.end_reason, record.status_code) == ("rejected", "rejected", 603)


async def test_reject_uses_the_given_status(wired_emulator: Emulator, sdk: openai.AsyncOpenAI) -> None:
    """A reject with status_code 486 answers the caller Busy Here; the call is then gone (404)."""
    call_id = ring(wired_emulator)
    await sdk.realtime.calls.reject(call_id, status_code=486)
    assert wired_emulator.calls[call_id].status_code == 486
    response = await rest(wired_emulator, call_id, "accept", {"type": "realtime"})
    assert response.status_code == 404


async def test_refer_requires_tel_or_sip_uri(wired_emulator: Emulator) -> None:
    """A refer to anything but a tel:, sip: or sips: URI is 400 on param target_uri; the call keeps ringing."""
    call_id = ring(wired_emulator)
    for body in ({"target_uri": "https://example.com"}, {"target_uri": "+14155550123"}, {"target_uri": "tel:"}, {}):
        response = await rest(wired_emulator, call_id, "refer", body)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "target_uri"
    assert wired_emulator.calls[call_id].state == "ringing"


async def test_a_refused_refer_target_is_explained_as_switchboard_explains_it(wired_emulator: Emulator) -> None:
    """The 400 for a bad target_uri carries the problem `switchboard.shared.sip` names, and the value."""
    response = await rest(wired_emulator, ring(wired_emulator), "refer", {"target_uri": "mailto:desk@example.com"})
    assert response.json()["error"]["message"] == (
        "Invalid 'target_uri': must start with tel:, sip: or sips: (e.g. tel:+14155550123), "
        "got 'mailto:desk@example.com'."
    )


async def test_refer_to_a_sips_uri_is_recorded(wired_emulator: Emulator, sdk: openai.AsyncOpenAI) -> None:
    """A refer to sips: is accepted like sip:: state referred, target recorded."""
    call_id = ring(wired_emulator)
    await sdk.realtime.calls.refer(call_id, target_uri="sips:desk@pbx.example.com")
    record = wired_emulator.calls[call_id]
    assert (record.state, record.target_uri) == ("referred", "sips:desk@pbx.example.com")


async def test_refer_of_ringing_call_is_recorded(wired_emulator: Emulator, sdk: openai.AsyncOpenAI) -> None:
    """A refer to tel: sends the caller there: state referred, target recorded."""
    call_id = ring(wired_emulator)
    await sdk.realtime.calls.refer(call_id, target_uri="tel:+14155550123")
    record = wired_emulator.calls[call_id]
    assert (record.state, record.end_reason, record.target_uri) == ("referred", "referred", "tel:+14155550123")


async def test_refer_of_answered_call_closes_the_sideband(wired_emulator: Emulator) -> None:
    """Referring an answered call ends it (referred) and its sideband closes normally shortly after."""
    call_id = ring(wired_emulator)
    await accept(wired_emulator, call_id)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await ws.recv()
        response = await rest(wired_emulator, call_id, "refer", {"target_uri": "sip:agent@example.com"})
        assert response.status_code == 200 and response.json() == {}
        await read_until_closed(ws)
        assert ws.close_code == 1000
    assert wired_emulator.calls[call_id].end_reason == "referred"


async def test_hangup_closes_the_sideband(wired_emulator: Emulator, sdk: openai.AsyncOpenAI) -> None:
    """A REST hangup ends an answered call (end_reason hangup) and closes its sideband with 1000."""
    call_id = ring(wired_emulator)
    await accept(wired_emulator, call_id)
    async with await connect_sideband(wired_emulator, call_id) as ws:
        await ws.recv()
        await sdk.realtime.calls.hangup(call_id)
        await read_until_closed(ws)
        assert ws.close_code == 1000
    record = await wired_emulator.wait_ended(call_id, 5)
    assert (record.state, record.end_reason) == ("ended", "hangup")
    assert record.sideband_connections[0].close_code == 1000


async def test_hangup_of_ringing_call_is_400(wired_emulator: Emulator) -> None:
    """Hanging up a call that was never answered is refused (reject it instead)."""
    call_id = ring(wired_emulator)
    response = await rest(wired_emulator, call_id, "hangup")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_call_state"


async def test_injected_accept_faults_then_success(wired_emulator: Emulator) -> None:
    """faults.add(accept, status=500, times=2): two 500 server_error answers, then a normal 200."""
    call_id = ring(wired_emulator)
    wired_emulator.faults.add("accept", status=500, times=2)
    statuses = [(await rest(wired_emulator, call_id, "accept", {"type": "realtime"})).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert [r.status for r in wired_emulator.calls[call_id].rest_requests] == [500, 500, 200]
    assert wired_emulator.calls[call_id].state == "accepted"


async def test_injected_delay_slows_but_succeeds(
    make_emulator: Callable[..., Awaitable[Emulator]], webhook_receiver: WebhookReceiver
) -> None:
    """A delay-only fault makes the answer slow, then the request proceeds normally."""
    emulator = await make_emulator(webhook_url=webhook_receiver.url)
    call_id = ring(emulator)
    emulator.faults.add("reject", delay_s=0.05)
    response = await rest(emulator, call_id, "reject")
    assert response.status_code == 200
    await eventually(lambda: emulator.calls[call_id].state == "rejected")


async def test_the_models_list_is_what_the_sdk_reads(sdk: openai.AsyncOpenAI) -> None:
    """``GET /v1/models`` (the services' start-up check) answers as OpenAI does: the SDK lists its models."""
    models = [model.id async for model in sdk.models.list()]
    assert models == ["gpt-realtime-2"]
