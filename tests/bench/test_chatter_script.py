"""The benchmarks' ``chatter`` caller is a faithful call: every event it makes the emulator send is a valid
openai SDK server event, and the emulator timestamps each event it sends and receives (the relay and
greeting benchmarks time from those)."""

from __future__ import annotations

from switchboard.emulator.scripts import SCRIPTS
from switchboard.emulator.server import Emulator
from tests.fixtures.emulator import WebhookReceiver, connect_sideband, run_agent
from tests.unit.test_emulator_sdk_types import answered_call, validate


async def test_every_chatter_event_parses_with_sdk_types(
    wired_emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    """A whole chatter call (100 turns at pace 0): every server event parses as its own SDK model."""
    call_id = await answered_call(wired_emulator, webhook_receiver, "chatter")
    async with await connect_sideband(wired_emulator, call_id) as ws:
        events = await run_agent(ws, timeout_s=30)
    for event in events:
        validate(event)
    turns = len(SCRIPTS["chatter"].steps) - 1
    types = [e["type"] for e in events]
    assert types.count("conversation.item.input_audio_transcription.completed") == turns
    assert types.count("response.output_audio_transcript.delta") > 30 * turns
    record = await wired_emulator.wait_ended(call_id, 5)
    assert record.end_reason == "caller_hangup"
    assert len(record.server_event_times) == len(record.server_events) == len(events)
    assert record.server_event_times == sorted(record.server_event_times)
    assert len(record.client_event_times) == len(record.client_events) >= 1
