"""The bus seam against a real nats-server: the stream, dedup, conditional publish, pipelined batches."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from switchboard.cli.natsserver import NatsServer
from switchboard.shared.bus import Bus, client
from switchboard.shared.errors import AlreadyRecorded, BusUnavailable
from tests.fixtures.nats import TamperingProxy
from tests.reading import stored as log_of
from tests.waiting import eventually


async def test_ensure_stream_is_idempotent(bus: Bus) -> None:
    """Creating the CALLS stream twice leaves one stream, no error."""
    await bus.ensure_stream()
    assert await bus.stream_exists()


async def test_same_msg_id_is_stored_once(bus: Bus) -> None:
    """Two publishes with one Nats-Msg-Id store one event; the second is reported as a duplicate."""
    first = await bus.publish(bus.event("rtc_a", "incoming", {"n": 1}), msg_id="wh_1")
    second = await bus.publish(bus.event("rtc_a", "incoming", {"n": 2}), msg_id="wh_1")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.seq == first.seq


async def test_conditional_publish_refuses_a_second_event_on_a_subject(bus: Bus) -> None:
    """With expect_empty_subject, only the first event on a subject is stored."""
    await bus.publish(bus.event("rtc_b", "decided", {"action": "accept"}), expect_empty_subject=True)
    with pytest.raises(AlreadyRecorded):
        await bus.publish(bus.event("rtc_b", "decided", {"action": "reject"}), expect_empty_subject=True)
    last = await bus.last_event("rtc_b", "decided")
    assert last is not None and last.data == {"action": "accept"}


async def test_connecting_to_no_server_gives_up_when_told_with_a_clear_error() -> None:
    """With give_up_after_s, an unreachable NATS ends in BusUnavailable naming the server (no password)."""
    from switchboard.cli.natsserver import free_port

    url = f"nats://svc:s3cret@127.0.0.1:{free_port()}"
    with pytest.raises(BusUnavailable) as info:
        await Bus.connect(url, name="test", give_up_after_s=0.5)
    assert "could not connect to NATS at nats://127.0.0.1:" in str(info.value)
    assert "s3cret" not in str(info.value)


async def test_a_pipelined_batch_is_stored_in_order_and_once(bus: Bus) -> None:
    """send_many + confirm store a batch in order; sending it again stores nothing more (its msg ids)."""
    batch = [(bus.event("rtc_p", f"rt.e{i}", {"i": i}), f"rtc_p:e{i}", None) for i in range(50)]
    await bus.confirm(await bus.send_many(batch))
    await bus.confirm(await bus.send_many(batch))
    stored = [e.data["i"] for e in await log_of(bus, "rtc_p")]
    assert stored == list(range(50))
    info = await bus.js.stream_info("CALLS")
    assert info.state.messages == 50


async def test_a_line_break_in_a_pipelined_message_id_cannot_add_headers(bus: Bus) -> None:
    """A msg id with CR/LF (OpenAI's event_id is outside input) is stored blanked, as one header."""
    hostile = "rtc_h:evt\r\nNats-Expected-Stream: OTHER"
    await bus.confirm(await bus.send_many([(bus.event("rtc_h", "rt.x", {"n": 1}), hostile, None)]))
    stored = await bus.js.get_last_msg("CALLS", "calls.rtc_h.rt.x")
    assert stored.headers == {"Nats-Msg-Id": "rtc_h:evt  Nats-Expected-Stream: OTHER"}


async def test_an_event_too_large_for_the_server_fails_its_batch_and_the_rest_are_stored(bus: Bus) -> None:
    """A pipelined event over the server's max payload makes confirm raise; the events around it land."""
    huge = {"blob": "x" * (bus.nc.max_payload + 1)}
    batch = [(bus.event("rtc_m", "rt.a", {}), "rtc_m:a", None), (bus.event("rtc_m", "rt.b", huge), "rtc_m:b", None),
             (bus.event("rtc_m", "rt.c", {}), "rtc_m:c", None)]  # fmt: skip
    with pytest.raises(BusUnavailable):
        await bus.confirm(await bus.send_many(batch), timeout_s=2.0)
    assert await bus.last_event("rtc_m", "rt.a") is not None
    assert await bus.last_event("rtc_m", "rt.c") is not None
    assert bus.nc.is_connected


async def test_confirming_a_batch_the_stream_cannot_store_raises_bus_unavailable(bus: Bus) -> None:
    """With the CALLS stream gone, confirm fails with BusUnavailable instead of losing events quietly."""
    await bus.js.delete_stream("CALLS")
    sent = await bus.send_many([(bus.event("rtc_q", "rt.x", {}), "rtc_q:x", None)])
    with pytest.raises(BusUnavailable):
        await bus.confirm(sent, timeout_s=1.0)


async def test_a_work_queue_hands_over_a_lone_message_without_waiting_for_a_full_batch(bus: Bus) -> None:
    """A message arriving while fetch(8) waits is handed over at once, not when the pull request expires."""
    queue = await bus.work_queue("lone", "calls.*.lone", ack_wait_s=30)
    fetching = asyncio.create_task(queue.fetch(8, timeout_s=60))

    async def waiting() -> bool:
        return (await bus.js.consumer_info("CALLS", "lone")).num_waiting > 0

    await eventually(waiting, what="the pull request to be waiting")
    await bus.record("rtc_l", "lone", {})
    deliveries = await asyncio.wait_for(fetching, 10)
    assert [d.subject for d in deliveries] == ["calls.rtc_l.lone"]


async def test_a_work_queue_fetches_what_is_pending_in_one_go(bus: Bus) -> None:
    """With several messages waiting, one fetch returns up to the batch size of them, in order."""
    queue = await bus.work_queue("several", "calls.*.several", ack_wait_s=30)
    for i in range(5):
        await bus.record(f"rtc_s{i}", "several", {})
    deliveries = await asyncio.wait_for(queue.fetch(4, timeout_s=60), 10)
    assert [d.subject for d in deliveries] == [f"calls.rtc_s{i}.several" for i in range(4)]


async def test_a_work_queue_whose_bind_request_goes_unanswered_is_bound_on_a_retry(nats_server: NatsServer) -> None:
    """A consumer lookup that times out (a cluster electing the new consumer's leader) is tried again."""
    dropped: list[bytes] = []

    def drop_first_lookup(_: int, chunk: bytes) -> bytes | None:
        if not dropped and b"$JS.API.CONSUMER.INFO." in chunk:
            dropped.append(chunk)
            return None
        return chunk

    async with contextlib.AsyncExitStack() as stack:
        proxy = TamperingProxy(nats_server.port, upstream=drop_first_lookup)
        url = await proxy.start()
        stack.push_async_callback(proxy.close)
        bus = await Bus.connect(url, name="t", give_up_after_s=5)
        stack.push_async_callback(bus.close)
        await bus.ensure_stream()
        queue = await asyncio.wait_for(bus.work_queue("retried", "calls.*.retried", ack_wait_s=30), 20)
        await bus.record("rtc_r", "retried", {})
        deliveries = await asyncio.wait_for(queue.fetch(1, timeout_s=10), 10)
    assert len(dropped) == 1
    assert [d.subject for d in deliveries] == ["calls.rtc_r.retried"]


async def test_binding_a_work_queue_where_jetstream_never_answers_ends_in_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no JetStream behind the server, binding gives up after its bound with a BusUnavailable naming it."""
    monkeypatch.setattr(client, "_BIND_FOR_S", 1.0)
    server = NatsServer(tmp_path / "nats", jetstream=False)
    await server.start()
    try:
        bus = await Bus.connect(server.url, name="t", give_up_after_s=5)
        try:
            with pytest.raises(BusUnavailable, match="could not bind the consumer plain within 1 s"):
                await bus.work_queue("plain", "calls.*.plain", ack_wait_s=30)
        finally:
            await bus.close()
    finally:
        await server.stop()
