"""The one consumer runner against a real nats-server: handlers say what happens, the runner settles it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg

from switchboard.shared.bus import Ack, Bus, Delivery, Drop, InProgress, Outcome, Retry, WorkQueue
from switchboard.shared.subscribe import Durable, LogEvent
from tests.waiting import eventually


@pytest.fixture
async def queue(bus: Bus) -> WorkQueue:
    return await bus.work_queue("jobs", "calls.*.job", ack_wait_s=1.0)


@pytest.fixture
async def stop() -> AsyncIterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


async def _jobs(bus: Bus, n: int) -> None:
    for i in range(n):
        await bus.record(f"rtc_{i}", "job", {"i": i})


async def _nothing_left(bus: Bus, name: str) -> bool:
    return await _consumer_state(bus, name) == (0, 0)


def _call(delivery: Delivery) -> str:
    return delivery.subject.split(".")[1]


async def _consumer_state(bus: Bus, name: str) -> tuple[int, int]:
    info = await bus.js.consumer_info("CALLS", name)
    return int(info.num_pending or 0), int(info.num_ack_pending or 0)


async def test_a_message_held_in_progress_takes_its_slot_until_its_owner_settles_it(
    bus: Bus, queue: WorkQueue, stop: asyncio.Event
) -> None:
    """With one slot, a held message keeps the next one waiting; the owner's ack lets the next one in."""
    await _jobs(bus, 2)
    handed: list[str] = []
    held: list[Delivery] = []

    async def handle(delivery: Delivery) -> Outcome:
        handed.append(_call(delivery))
        held.append(delivery)
        return InProgress()

    runner = asyncio.create_task(queue.run(handle, stop, concurrency=1, fetch_wait_s=0.2))
    await eventually(lambda: handed == ["rtc_0"], what="the first job handed over")
    for _ in range(3):  # beaten by its owner past three ack waits: never redelivered, the next never fetched
        await asyncio.sleep(0.5)
        await held[0].in_progress()
    assert handed == ["rtc_0"]
    await held[0].ack()
    await eventually(lambda: handed == ["rtc_0", "rtc_1"], what="the second job after the first was settled")
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_a_retry_is_delivered_again_after_its_delay_and_an_ack_removes_the_message(
    bus: Bus, queue: WorkQueue, stop: asyncio.Event
) -> None:
    """Unordered: Retry naks with the delay (a later attempt comes back), Ack takes it out of the consumer."""
    await _jobs(bus, 1)
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> Outcome:
        attempts.append(delivery.attempt)
        return Retry(delay_s=0.2) if delivery.attempt < 3 else Ack()

    runner = asyncio.create_task(queue.run(handle, stop, fetch_wait_s=0.2))
    await eventually(lambda: attempts == [1, 2, 3], what="three attempts")
    await eventually(lambda: _nothing_left(bus, "jobs"), what="nothing left in the consumer")
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_a_dropped_message_is_never_delivered_again(bus: Bus, queue: WorkQueue, stop: asyncio.Event) -> None:
    """Drop terminates the message: no redelivery after the ack wait, nothing left pending."""
    await _jobs(bus, 1)
    handed: list[int] = []

    async def handle(delivery: Delivery) -> Outcome:
        handed.append(delivery.attempt)
        return Drop(reason="poison")

    runner = asyncio.create_task(queue.run(handle, stop, fetch_wait_s=0.2))
    await eventually(lambda: handed == [1], what="the job handed over")
    await asyncio.sleep(1.5)  # past the 1 s ack wait: a message merely unsettled would be back by now
    assert handed == [1]
    assert await _consumer_state(bus, "jobs") == (0, 0)
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_a_handler_that_raises_gets_the_message_again(bus: Bus, queue: WorkQueue, stop: asyncio.Event) -> None:
    """A crash in a handler is a retry with backoff, never a lost message or a dead runner."""
    await _jobs(bus, 1)
    attempts: list[int] = []

    async def handle(delivery: Delivery) -> Outcome:
        attempts.append(delivery.attempt)
        if delivery.attempt == 1:
            raise RuntimeError("bug")
        return Ack()

    runner = asyncio.create_task(queue.run(handle, stop, fetch_wait_s=0.2))
    await eventually(lambda: attempts == [1, 2], what="the second attempt")
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_an_ordered_retry_waits_in_place_so_later_messages_never_overtake_it(
    bus: Bus, queue: WorkQueue, stop: asyncio.Event
) -> None:
    """Ordered: the message asking for a retry is handled again before the next one is handed over."""
    await _jobs(bus, 3)
    order: list[str] = []

    async def handle(delivery: Delivery) -> Outcome:
        order.append(_call(delivery))
        return Retry(delay_s=0.05) if _call(delivery) == "rtc_1" and order.count("rtc_1") < 3 else Ack()

    runner = asyncio.create_task(queue.run(handle, stop, ordered=True, fetch_wait_s=0.2))
    await eventually(lambda: len(order) == 5, what="five handlings")
    assert order == ["rtc_0", "rtc_1", "rtc_1", "rtc_1", "rtc_2"]
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_an_ordered_consumer_gives_up_on_a_message_after_max_attempts(
    bus: Bus, queue: WorkQueue, stop: asyncio.Event
) -> None:
    """A message that keeps asking for retries is dropped after `max_attempts`, and the rest go on."""
    await _jobs(bus, 2)
    order: list[str] = []

    async def handle(delivery: Delivery) -> Outcome:
        order.append(_call(delivery))
        return Retry(delay_s=0.01) if _call(delivery) == "rtc_0" else Ack()

    runner = asyncio.create_task(queue.run(handle, stop, ordered=True, max_attempts=3, fetch_wait_s=0.2))
    await eventually(lambda: "rtc_1" in order, what="the next message")
    assert order == ["rtc_0", "rtc_0", "rtc_0", "rtc_1"]
    await eventually(lambda: _nothing_left(bus, "jobs"), what="nothing left in the consumer")
    stop.set()
    await asyncio.wait_for(runner, 5)


async def test_a_subscriber_may_say_what_to_do_with_an_event(bus: Bus) -> None:
    """A Durable handler returning Retry gets the event again in place; returning Drop skips it."""
    for i in range(3):
        await bus.record("rtc_s", f"k{i}", {"i": i})
    seen: list[str] = []
    stop = asyncio.Event()

    async def handle(event: LogEvent) -> Outcome | None:
        seen.append(event.kind)
        if event.kind == "k0" and seen.count("k0") == 1:
            return Retry(delay_s=0.05)
        if event.kind == "k1":
            return Drop(reason="not for us")
        if event.kind == "k2":
            stop.set()
        return None

    await asyncio.wait_for(Durable(bus, "says").run(handle, stop), 20)
    assert seen == ["k0", "k0", "k1", "k2"]
    assert await Durable(bus, "says").pending() == 0


async def test_a_lingering_queue_takes_a_trickle_of_messages_in_few_pull_requests(
    bus: Bus, queue: WorkQueue, stop: asyncio.Event
) -> None:
    """With linger_s, twenty messages arriving 20 ms apart are all handled, in a handful of pull requests
    (the server's pull API seen on the wire) rather than one each."""
    pulls: list[bytes] = []

    async def count(msg: Msg) -> None:
        pulls.append(msg.data)

    watcher = await bus.nc.subscribe("$JS.API.CONSUMER.MSG.NEXT.CALLS.jobs", cb=count)
    handled: list[str] = []

    async def handle(delivery: Delivery) -> Outcome:
        handled.append(_call(delivery))
        return Ack()

    runner = asyncio.create_task(queue.run(handle, stop, fetch_wait_s=5.0, linger_s=0.25))
    for i in range(20):
        await bus.record(f"rtc_{i}", "job", {"i": i})
        await asyncio.sleep(0.02)
    await eventually(lambda: len(handled) == 20, what="all twenty handled")
    await eventually(lambda: _nothing_left(bus, "jobs"), what="all twenty acknowledged")
    stop.set()
    await asyncio.wait_for(runner, 10)
    await watcher.unsubscribe()
    assert sorted(handled) == sorted(f"rtc_{i}" for i in range(20))
    assert len(pulls) <= 8
