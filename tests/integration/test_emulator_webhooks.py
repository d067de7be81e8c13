"""The emulator's webhook sender: signed deliveries, retries with one webhook-id, and the ring timeout."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from switchboard.emulator.errors import EmulatorError
from switchboard.emulator.server import Emulator
from switchboard.shared.webhooks import verify
from tests.fixtures.emulator import WebhookReceiver, accept, rest
from tests.waiting import eventually


def ring(emulator: Emulator) -> str:
    return emulator.place_call("+14155550100", "+18005551212", script="hold")


async def test_webhook_is_retried_with_the_same_id_after_a_500(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """A 500 answer makes the emulator retry with the same webhook-id and body, freshly signed, until 200."""
    webhook_receiver.statuses = [500]
    call_id = ring(wired_emulator)
    deliveries = wired_emulator.calls[call_id].webhook_deliveries
    await eventually(lambda: len(deliveries) == 2, what="a retry")
    first, second = webhook_receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.headers["webhook-id"].startswith("wh_")
    assert first.body == second.body
    for webhook in (first, second):
        secrets = [wired_emulator.config.webhook_secret]
        assert verify(webhook.headers, webhook.body, secrets, now=time.time()) == webhook.headers["webhook-id"]
    assert [(d.attempt, d.status) for d in deliveries] == [(1, 500), (2, 200)]


async def test_connection_errors_are_retried_then_given_up(make_emulator: Callable[..., Awaitable[Emulator]]) -> None:
    """With nothing listening, every attempt is recorded as an error and the retries are bounded."""
    emulator = await make_emulator(webhook_url="http://127.0.0.1:9/nothing", webhook_retry_delays_s=(0.01, 0.01))
    call_id = ring(emulator)
    deliveries = emulator.calls[call_id].webhook_deliveries
    await eventually(lambda: len(deliveries) == 3, what="three attempts")
    assert all(d.status is None and d.error for d in deliveries)
    assert len({d.webhook_id for d in deliveries}) == 1


async def test_injected_webhook_fault_is_retried(wired_emulator: Emulator, webhook_receiver: WebhookReceiver) -> None:
    """An injected webhook fault drops the first attempt unsent; the retry is delivered."""
    wired_emulator.faults.add("webhook", status=503)
    call_id = ring(wired_emulator)
    deliveries = wired_emulator.calls[call_id].webhook_deliveries
    await eventually(lambda: len(deliveries) == 2)
    assert deliveries[0].error is not None and deliveries[1].status == 200
    assert len(webhook_receiver.received) == 1


async def test_duplicate_fault_delivers_twice_with_one_id(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """code="duplicate" delivers the same event twice with the same webhook-id, as OpenAI sometimes does."""
    wired_emulator.faults.add("webhook", code="duplicate")
    ring(wired_emulator)
    await eventually(lambda: len(webhook_receiver.received) == 2)
    first, second = webhook_receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body


async def test_ring_timeout_abandons_the_call(
    make_emulator: Callable[..., Awaitable[Emulator]], webhook_receiver: WebhookReceiver
) -> None:
    """Unanswered past ring_timeout_s, the call ends caller_abandoned and a late accept is 404."""
    emulator = await make_emulator(webhook_url=webhook_receiver.url, ring_timeout_s=0.1)
    call_id = ring(emulator)
    record = await emulator.wait_ended(call_id, 5)
    assert (record.state, record.end_reason) == ("ended", "caller_abandoned")
    response = await rest(emulator, call_id, "accept", {"type": "realtime"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "call_id_not_found"


async def test_accept_stops_retries(wired_emulator: Emulator, webhook_receiver: WebhookReceiver) -> None:
    """Once the call is answered, failed deliveries are not retried any more."""
    webhook_receiver.statuses = [500] * 10
    call_id = ring(wired_emulator)
    await eventually(lambda: webhook_receiver.received)
    await accept(wired_emulator, call_id)
    attempts = len(wired_emulator.calls[call_id].webhook_deliveries)
    assert attempts <= 2
    live = wired_emulator.live(call_id)
    assert live is not None
    await eventually(lambda: all(t.done() for t in live.ringing_tasks), what="webhook sender and ring timer stopped")
    assert len(wired_emulator.calls[call_id].webhook_deliveries) == attempts


async def test_place_call_without_webhook_url_raises(emulator: Emulator) -> None:
    """Placing a call on an emulator with no webhook_url is a clear error, not a silent no-op."""
    with pytest.raises(EmulatorError, match="webhook_url"):
        ring(emulator)
