"""The floor: the same NATS hops an answered call makes, with no logic at all (for `bench.capacity`).

Three processes stand in for the three services, each doing only the JetStream traffic the real one
does per call, with payloads of about the real sizes, on a stream configured like CALLS:

- ``--role ingress`` publishes one ``incoming`` event per call at ``--rate`` calls/s (acknowledged);
- ``--role controller`` pulls ``incoming`` (batches), publishes ``decided`` and ``accepted`` (each
  acknowledged) and acks the message;
- ``--role worker`` pulls ``accepted`` (batches), creates the call's lease record (KV), publishes
  ``session.claimed``, marks the greeting in the record (KV update), publishes ``--relayed`` relayed
  events in one pipelined batch, then ``ended`` and ``session.released``, and acks.

``--relay-mode`` changes only how the worker stores the relayed events, to see what the cost follows:
``acked`` (as Switchboard does: each acknowledged), ``last-acked`` (only the last one acknowledged, the
rest plain publishes), ``atomic`` (one JetStream atomic batch: one commit, one acknowledgement; the
stream allows them) or ``one-message`` (all of them as a single message of their combined size).

No HTTP, no signatures, no decisions, no sideband: what is left is what the bus itself costs per call,
in nats-server and in a Python NATS client. ``--calls`` bounds the run; each role exits when it has
seen them all.

    python -m bench._floor --role ingress|controller|worker --nats URL --calls N --report FILE [--rate R] [--relayed K]
        [--relay-mode acked|last-acked|atomic|one-message]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import nats.errors
import uvloop
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

STREAM = "FLOOR"
_INCOMING = b"i" * 1100
_DECIDED = b"d" * 1000
_ACCEPTED = b"a" * 900
_SMALL = b"s" * 350
_RELAYED = b"r" * 450
_BATCH = 64
_WAIT_S = 30.0
RELAY_MODES = ("acked", "last-acked", "atomic", "one-message")


async def _stream(js: nats.js.JetStreamContext, relay_mode: str) -> None:
    config = StreamConfig(
        name=STREAM, subjects=["floor.>"], retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        duplicate_window=120.0, allow_direct=True, allow_atomic=relay_mode == "atomic" or None,
    )  # fmt: skip
    with contextlib.suppress(Exception):
        await js.add_stream(config)


async def ingress(js: nats.js.JetStreamContext, calls: int, rate: float) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending: set[asyncio.Task[object]] = set()
    for i in range(calls):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(
            js.publish(f"floor.c{i}.incoming", _INCOMING, headers={"Nats-Msg-Id": f"c{i}:in"}, timeout=_WAIT_S)
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)


async def _consume(
    js: nats.js.JetStreamContext, durable: str, subject: str, calls: int, work: Callable[[str, Msg], Awaitable[None]]
) -> None:
    config = ConsumerConfig(durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
                            ack_wait=30.0, deliver_policy=DeliverPolicy.ALL, max_ack_pending=10_000)  # fmt: skip
    sub = await js.pull_subscribe(subject, durable=durable, stream=STREAM, config=config)
    done = 0
    tasks: set[asyncio.Task[None]] = set()
    while done < calls:
        try:
            msgs = await sub.fetch(_BATCH, timeout=0.05)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        for msg in msgs:
            call = msg.subject.split(".")[1]
            task = asyncio.ensure_future(work(call, msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        done += len(msgs)
    if tasks:
        await asyncio.gather(*tasks)


async def controller(js: nats.js.JetStreamContext, calls: int) -> None:
    async def work(call: str, msg: Msg) -> None:
        await js.publish(f"floor.{call}.decided", _DECIDED, headers={"Nats-Msg-Id": f"{call}:d"}, timeout=_WAIT_S)
        await js.publish(f"floor.{call}.accepted", _ACCEPTED, headers={"Nats-Msg-Id": f"{call}:a"}, timeout=_WAIT_S)
        await msg.ack()

    await _consume(js, "floor-controller", "floor.*.incoming", calls, work)


async def _relay(nc: NATS, js: nats.js.JetStreamContext, call: str, relayed: int, mode: str) -> None:
    """Store one call's `relayed` events the `mode` way (see the module's docstring)."""
    if mode == "one-message":
        await js.publish(f"floor.{call}.rt", _RELAYED * relayed, headers={"Nats-Msg-Id": f"{call}:rt"})
        return
    if mode == "acked":
        acks = [
            asyncio.ensure_future(js.publish(f"floor.{call}.rt.e{k}", _RELAYED, headers={"Nats-Msg-Id": f"{call}:{k}"}))
            for k in range(relayed)
        ]
        await asyncio.gather(*acks)
        return
    if relayed == 0:
        return
    for k in range(relayed):
        if mode == "atomic":
            headers = {"Nats-Batch-Id": call, "Nats-Batch-Sequence": str(k + 1)}
            if k == relayed - 1:
                headers["Nats-Batch-Commit"] = "1"
        else:
            headers = {"Nats-Msg-Id": f"{call}:{k}"}
        if k < relayed - 1:
            await nc.publish(f"floor.{call}.rt.e{k}", _RELAYED, headers=headers)
        else:
            await js.publish(f"floor.{call}.rt.e{k}", _RELAYED, headers=headers, timeout=_WAIT_S)


async def worker(nc: NATS, js: nats.js.JetStreamContext, calls: int, relayed: int, relay_mode: str) -> None:
    kv = await js.create_key_value(bucket="floor_leases")

    async def work(call: str, msg: Msg) -> None:
        revision = await kv.create(call, _SMALL)
        await js.publish(f"floor.{call}.session.claimed", _SMALL, headers={"Nats-Msg-Id": f"{call}:cl"})
        revision = await kv.update(call, _SMALL, last=revision)
        await _relay(nc, js, call, relayed, relay_mode)
        await kv.update(call, _SMALL, last=revision)
        await js.publish(f"floor.{call}.ended", _SMALL, headers={"Nats-Msg-Id": f"{call}:e"})
        await js.publish(f"floor.{call}.session.released", _SMALL, headers={"Nats-Msg-Id": f"{call}:r"})
        await msg.ack()

    await _consume(js, "floor-worker", "floor.*.accepted", calls, work)


async def _main(args: argparse.Namespace) -> float:
    """Play the role; the CPU seconds it used from the first call to the last."""
    nc = await nats.connect(args.nats, name=f"floor-{args.role}")
    js = nc.jetstream()
    await _stream(js, args.relay_mode)
    started = os.times()
    if args.role == "ingress":
        await ingress(js, args.calls, args.rate)
    elif args.role == "controller":
        await controller(js, args.calls)
    else:
        await worker(nc, js, args.calls, args.relayed, args.relay_mode)
    done = os.times()
    await nc.close()
    return done.user + done.system - started.user - started.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=("ingress", "controller", "worker"), required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--relayed", type=int, default=8)
    parser.add_argument("--relay-mode", choices=RELAY_MODES, default="acked")
    parser.add_argument("--report", required=True, help="file to write this role's CPU seconds to")
    args = parser.parse_args()
    used = uvloop.run(_main(args))
    Path(args.report).write_text(f"{used:.4f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
