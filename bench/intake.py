"""Intake and answer: signed webhooks at concurrency C against the running system, side by side with the
naive approach (bench/baseline_flask.py), in one run.

Two measurements, each stated exactly:

- **durable intake** — N synthetic, validly signed ``realtime.call.incoming`` webhooks (pre-signed by this
  process) POSTed at concurrency C to 1, 2 or 4 ingress processes (round-robin, as a load balancer would)
  with nothing else running: the controller is off, so each 200 means "verified, validated and
  acknowledged by JetStream (file storage)", and nothing more. The stored count is checked afterwards.
  The same load against a do-nothing aiohttp server gives the harness's own ceiling on this box.
- **answer** — real calls: the emulator rings them and signs their webhooks (captured by this process
  first), then this process delivers those exact webhooks to (a) the whole system — one ingress, one
  controller, one session worker, NATS — or (b) the Flask baseline, both pointed at the same emulator,
  under three loads: **100 live calls** (concurrent calls as a SIP load tester counts them: 100 lines,
  each holding its call 10 s, hanging up and calling again, so 10 new calls a second with 100 up at any
  time), a **burst** (N webhooks at concurrency C, as fast as they are taken: the backlog shows the
  answering rate), and **open loop** at fixed rates. From the emulator's records: webhook→accept (its
  ``/accept`` request recorded) and webhook→greeting (the greeting's ``response.create`` received on the
  sideband), each from the moment this process sent the webhook. "Calls answered/s" is N over first
  send → last greeting.

The load generator is this process (aiohttp, keep-alive, C connections); everything measured runs in
other processes. Run ``python -m bench.intake --help`` for the knobs; ``--smoke`` for a tiny run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
from aiohttp import web
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench._common import (
    SEED,
    CpuWindow,
    Latency,
    Profiler,
    add_output_args,
    machine,
    machine_line,
    profiles_report,
    publish,
    seeded,
    table,
    top_frames,
)
from bench._loadgen import LoadResult, Request, drive, drive_held, drive_rate
from bench._system import LOOPBACK, Process, System, free_port
from switchboard.emulator.calls import CallRecord
from switchboard.emulator.client import EmulatorClient
from switchboard.shared.webhooks import signed_headers

CALLER = "+14155550101"
DIALLED = "+18005550100"  # the built-in policy's support-line: accepted with the concierge agent
USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
GREETING_TIMEOUT_S = 120.0


@dataclass
class Webhook:
    """One signed delivery (its headers and body exactly as signed), to send as is."""

    call_id: str
    headers: dict[str, str]
    body: bytes

    def to(self, url: str) -> Request:
        return Request(self.call_id, url, self.headers, self.body)


def spread(webhooks: Sequence[Webhook], urls: Sequence[str]) -> list[Request]:
    """Webhook i to url i mod len(urls): round-robin, as a load balancer in front of replicas would."""
    return [w.to(urls[i % len(urls)]) for i, w in enumerate(webhooks)]


def synthetic_webhooks(n: int, secret: str, salt: str) -> list[Webhook]:
    """`n` validly signed incoming-call webhooks for made-up calls (seeded ids, signed now)."""
    rng = seeded(f"intake:{salt}")
    now = int(time.time())
    out = []
    for _ in range(n):
        call_id = f"rtc_{rng.getrandbits(128):032x}"
        webhook_id = f"wh_{rng.getrandbits(128):032x}"
        event = {
            "object": "event",
            "id": f"evt_{rng.getrandbits(64):016x}",
            "type": "realtime.call.incoming",
            "created_at": now,
            "data": {
                "call_id": call_id,
                "sip_headers": [
                    {"name": "From", "value": f"sip:{CALLER}@sip.example.com"},
                    {"name": "To", "value": f"sip:{DIALLED}@sip.example.com"},
                    {"name": "Call-ID", "value": f"{rng.getrandbits(128):032x}"},
                ],
                "sip_media_security": "srtp",
            },
        }
        body = json.dumps(event, separators=(",", ":"))
        headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                   **signed_headers(secret, webhook_id, now, body)}  # fmt: skip
        out.append(Webhook(call_id, headers, body.encode()))
    return out


class Capture:
    """A webhook sink in this process: the emulator signs and sends each call's webhook here first."""

    _KEPT = ("content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature")

    def __init__(self) -> None:
        self.got: dict[str, Webhook] = {}
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/capture"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        call_id = str(json.loads(body)["data"]["call_id"])
        headers = {k: request.headers[k] for k in self._KEPT if k in request.headers}
        self.got[call_id] = Webhook(call_id, headers, body)
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/capture", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, call_ids: Sequence[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not all(c in self.got for c in call_ids):
            if time.monotonic() > deadline:
                missing = sum(1 for c in call_ids if c not in self.got)
                raise TimeoutError(f"{missing} webhooks not captured within {timeout_s:g} s")
            await asyncio.sleep(0.05)


async def place_calls(client: EmulatorClient, n: int, *, script: str, parallel: int = 16) -> list[str]:
    """Ring `n` calls at the emulator (it sends their webhooks); their ids in placing order."""
    ids: list[str | None] = [None] * n
    next_index = 0

    async def placer() -> None:
        nonlocal next_index
        while next_index < n:
            index = next_index
            next_index += 1
            ids[index] = await client.place_call(CALLER, DIALLED, script=script)

    await asyncio.gather(*(placer() for _ in range(min(parallel, n))))
    return [i for i in ids if i is not None]


def _greeted_at(record: CallRecord) -> float | None:
    for event, at in zip(record.client_events, record.client_event_times, strict=False):
        if isinstance(event, dict) and event.get("type") == "response.create":
            return at
    return None


def _accepted_at(record: CallRecord) -> float | None:
    return next((r.at for r in record.rest_requests if r.op == "accept" and r.status == 200), None)


async def wait_greeted(
    client: EmulatorClient, call_ids: Sequence[str], timeout_s: float, parallel: int = 16
) -> dict[str, CallRecord]:
    """The calls' records once each was greeted (or the time ran out: the rest as they were)."""
    records: dict[str, CallRecord] = {}
    pending = list(call_ids)
    deadline = time.monotonic() + timeout_s
    sem = asyncio.Semaphore(parallel)

    async def get(call_id: str) -> None:
        async with sem:
            records[call_id] = await client.get_call(call_id)

    while pending:
        await asyncio.gather(*(get(c) for c in pending))
        pending = [c for c in pending if _greeted_at(records[c]) is None and not records[c].ended]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1 if len(pending) < 50 else 0.5)
    return records


STAGES = ("incoming", "decided", "accepted", "session.claimed", "rt.session.created")
"""Where an answered call's time goes: the log's own events, timed by the stream when it stored each."""


async def stage_times(nats_url: str) -> dict[str, dict[str, float]]:
    """call id → kind → when JetStream stored the call's first event of that kind (for `STAGES`)."""
    nc = await nats.connect(nats_url)
    found: dict[str, dict[str, float]] = {}
    try:
        js = nc.jetstream()
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0)
        sub = await js.pull_subscribe("calls.>", durable=None, stream="CALLS", config=config)
        while True:
            try:
                msgs = await sub.fetch(2000, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for msg in msgs:
                _, call_id, kind = msg.subject.split(".", 2)
                if kind in STAGES:
                    found.setdefault(call_id, {}).setdefault(kind, msg.metadata.timestamp.timestamp())
            if not msgs or msgs[-1].metadata.num_pending == 0:
                break
        await sub.unsubscribe()
    finally:
        await nc.close()
    return found


def stage_summary(ids: Sequence[str], sent_at: dict[str, float], stages: dict[str, dict[str, float]],
                  greeted: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Per stage, the latency from the webhook's send (p50/p90/p99), then the greeting as the emulator saw it."""
    out: dict[str, Any] = {}
    for kind in STAGES:
        latency = Latency()
        for call_id in ids:
            at = stages.get(call_id, {}).get(kind)
            if at is not None and call_id in sent_at:
                latency.record_s(at - sent_at[call_id])
        out[kind] = latency.summary()
    out["greeting (emulator)"] = (
        Latency().extend_s(greeted[c] - sent_at[c] for c in ids if c in greeted and c in sent_at).summary()
    )
    return out


async def stored_messages(nats_url: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info("CALLS")
        return int(info.state.messages)
    finally:
        await nc.close()


# --- the cases ---------------------------------------------------------------------------------------


@dataclass
class Sizes:
    durable_n: int
    durable_warmup: int
    answer_n: int
    answer_warmup: int
    concurrency: int
    ingresses: list[int]
    rates: list[float]
    rate_seconds: float
    live_calls: int = 100
    hold_s: float = 10.0
    live_seconds: float = 40.0


@dataclass(frozen=True)
class Load:
    """How webhooks are offered: a burst (at most `concurrency` webhooks in flight), open loop (`rate`/s),
    or `live` concurrent calls, each held `hold_s` before its line calls again (script ``hold``)."""

    calls: int
    concurrency: int | None = None
    rate: float | None = None
    live: int | None = None
    hold_s: float = 0.0

    @property
    def label(self) -> str:
        if self.live is not None:
            return f"{self.live} live calls ({self.hold_s:g} s each)"
        return f"C={self.concurrency}" if self.concurrency is not None else f"{self.rate:g}/s"

    @property
    def script(self) -> str:
        return "hold" if self.live is not None else "silent"

    async def offer(self, requests: Sequence[Request], client: EmulatorClient) -> LoadResult:
        if self.live is not None:
            return await drive_held(requests, self.live, self.hold_s, client.hangup)
        if self.concurrency is not None:
            return await drive(requests, self.concurrency)
        assert self.rate is not None
        return await drive_rate(requests, self.rate)


async def ceiling_case(sizes: Sizes) -> dict[str, Any]:
    async with System() as system:
        port = free_port()
        null = await system.start_python("null-server", "bench._null_server", ["--port", str(port)],
                                         f"http://{LOOPBACK}:{port}/healthz")  # fmt: skip
        await system.ready(null)
        urls = [f"http://{LOOPBACK}:{port}/webhooks/openai"]
        warm = synthetic_webhooks(sizes.durable_warmup, system.webhook_secret, "warm")
        await drive(spread(warm, urls), sizes.concurrency)
        measured = spread(synthetic_webhooks(sizes.durable_n, system.webhook_secret, "ceiling"), urls)
        cpu = CpuWindow({"null-server": null.pid})
        cpu.start()
        load = await drive(measured, sizes.concurrency)
        cpu.stop()
    return _intake_row("do-nothing aiohttp server (harness ceiling)", 1, load, None, cpu)


async def durable_case(sizes: Sizes, ingresses: int, *, profile_dir: Path | None = None) -> dict[str, Any]:
    async with System() as system:
        await system.start_nats()
        procs = [await system.start_service("ingress", name=f"ingress-{i + 1}") for i in range(ingresses)]
        await system.ready(*procs)
        urls = [p.ready_url.replace("/readyz", "/webhooks/openai") for p in procs if p.ready_url]
        warm = synthetic_webhooks(sizes.durable_warmup, system.webhook_secret, f"warm-{ingresses}")
        await drive(spread(warm, urls), sizes.concurrency)
        measured = spread(synthetic_webhooks(sizes.durable_n, system.webhook_secret, f"durable-{ingresses}"), urls)
        pids = {p.name: p.pid for p in procs}
        assert system.nats is not None
        pids["nats-server"] = system.nats.pid
        cpu = CpuWindow(pids)
        profilers = _profilers(procs, profile_dir, f"intake-durable-{ingresses}")
        cpu.start()
        load = await drive(measured, sizes.concurrency)
        cpu.stop()
        for profiler in profilers:
            profiler.stop()
        stored = await stored_messages(system.nats_url) - len(warm)
    label = f"switchboard ingress x{ingresses} + NATS"
    return _intake_row(label, ingresses, load, stored, cpu)


def _profilers(procs: Sequence[Process], profile_dir: Path | None, name: str) -> list[Profiler]:
    if profile_dir is None:
        return []
    started = []
    for proc in procs:
        profiler = Profiler(proc.pid, profile_dir / f"{name}-{proc.name}.pyspy.txt")
        if profiler.start():
            started.append(profiler)
    return started


def _intake_row(label: str, procs: int, load: LoadResult, stored: int | None, cpu: CpuWindow) -> dict[str, Any]:
    return {
        "target": label,
        "ingress_processes": procs,
        "sent": sum(load.statuses.values()) + sum(load.errors.values()),
        "ok": load.ok,
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "errors": dict(load.errors),
        "stored": stored,
        "seconds": round(load.seconds, 3),
        "webhooks_per_s": load.rate(),
        "latency": load.latency.summary(),
        "cores": cpu.cores(),
    }


async def answer_case(
    sizes: Sizes, kind: str, loads: Sequence[Load], *, workers: int = 1, profile_dir: Path | None = None
) -> list[dict[str, Any]]:
    """`kind` is ``switchboard`` or ``baseline``: the same kind of captured webhooks, the same emulator.

    One system for all `loads`, one after the other (each with calls of its own, after the previous
    load's calls were greeted or gave up), after a warm-up of `sizes.answer_warmup` calls.
    """
    capture = Capture()
    await capture.start()
    rows = []
    try:
        async with System() as system:
            emulator = await system.start_emulator(webhook_url=capture.url, pace=0.0)
            measured_procs: list[Process]
            if kind == "switchboard":
                await system.start_nats()
                ingress = await system.start_service("ingress")
                controller = await system.start_service("controller")
                session = [
                    await system.start_service("session", name=f"session-{i + 1}", SESSION_MAX_CALLS="100000",
                                               SWITCHBOARD_WORKER=f"worker-{i + 1}")
                    for i in range(workers)
                ]  # fmt: skip
                measured_procs = [ingress, controller, *session]
                assert ingress.ready_url is not None
                target = ingress.ready_url.replace("/readyz", "/webhooks/openai")
                label = f"switchboard (ingress, controller, {workers} worker{'s' if workers > 1 else ''}, NATS)"
            else:
                port = free_port()
                baseline = await system.start_python(
                    "flask-baseline", "bench.baseline_flask", ["--port", str(port)], f"http://{LOOPBACK}:{port}/healthz"
                )
                measured_procs = [baseline]
                target = f"http://{LOOPBACK}:{port}/"
                label = "Flask baseline (OpenAI's example style)"
            await system.ready(emulator, *measured_procs)
            pids = {p.name: p.pid for p in measured_procs}
            pids["emulator"] = emulator.pid
            if system.nats is not None:
                pids["nats-server"] = system.nats.pid
            async with EmulatorClient(system.emulator_url, timeout_s=60) as client:
                warm = await place_calls(client, sizes.answer_warmup, script="silent")
                await capture.wait_for(warm, timeout_s=60)
                await drive([capture.got[c].to(target) for c in warm], sizes.concurrency)
                await wait_greeted(client, warm, GREETING_TIMEOUT_S)
                for load in loads:
                    ids = await place_calls(client, load.calls, script=load.script)
                    await capture.wait_for(ids, timeout_s=60)
                    cpu = CpuWindow(pids)
                    profilers = _profilers(measured_procs, profile_dir, f"intake-answer-{kind}")
                    cpu.start()
                    result = await load.offer([capture.got[c].to(target) for c in ids], client)
                    records = await wait_greeted(client, ids, GREETING_TIMEOUT_S)
                    cpu.stop()
                    for profiler in profilers:
                        profiler.stop()
                    rows.append(_answer_row(label, kind, load, ids, result, records, cpu))
                    if kind == "switchboard":
                        greeted = {c: g for c in ids if (g := _greeted_at(records[c])) is not None}
                        stages = await stage_times(system.nats_url)
                        rows[-1]["stages"] = stage_summary(ids, result.sent_at, stages, greeted)
                    print(f"  answer {kind} {load.label}: {rows[-1]['answered_per_s']} calls/s, "
                          f"greeting p99 {rows[-1]['greeting']['p99_ms']} ms", flush=True)  # fmt: skip
    finally:
        await capture.stop()
    return rows


def _answer_row(
    label: str, kind: str, load: Load, ids: Sequence[str], result: LoadResult, records: dict[str, CallRecord],
    cpu: CpuWindow,
) -> dict[str, Any]:  # fmt: skip
    accept, greeting = Latency(), Latency()
    last_greeting = 0.0
    for call_id in ids:
        sent = result.sent_at.get(call_id)
        record = records.get(call_id)
        if sent is None or record is None:
            continue
        if (accepted := _accepted_at(record)) is not None:
            accept.record_s(accepted - sent)
        if (greeted := _greeted_at(record)) is not None:
            greeting.record_s(greeted - sent)
            last_greeting = max(last_greeting, greeted)
    first_send = min(result.sent_at.values()) if result.sent_at else 0.0
    answered_s = last_greeting - first_send if last_greeting else 0.0
    return {
        "target": label,
        "kind": kind,
        "load": load.label,
        "concurrency": load.concurrency,
        "offered_rate": load.rate,
        "calls": len(ids),
        "ok": result.ok,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": dict(result.errors),
        "seconds": round(result.seconds, 3),
        "webhooks_per_s": result.rate(),
        "latency": result.latency.summary(),
        "accepted": accept.count,
        "accept": accept.summary(),
        "greeted": greeting.count,
        "greeting": greeting.summary(),
        "answered_per_s": round(greeting.count / answered_s, 1) if answered_s > 0 else None,
        "cores": cpu.cores(),
    }


# --- report ------------------------------------------------------------------------------------------


def durable_table(rows: Sequence[dict[str, Any]]) -> str:
    return table(
        ("target (durable intake, controller off)", "webhooks/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "200s",
         "stored", "cores busy"),
        [
            (r["target"], r["webhooks_per_s"], r["latency"]["p50_ms"], r["latency"]["p90_ms"], r["latency"]["p99_ms"],
             r["latency"]["max_ms"], r["ok"], r["stored"], _cores(r["cores"]))
            for r in rows
        ],
    )  # fmt: skip


def answer_table(rows: Sequence[dict[str, Any]]) -> str:
    def trio(summary: dict[str, Any]) -> str:
        return " / ".join("—" if summary[k] is None else f"{summary[k]:,.1f}" for k in ("p50_ms", "p90_ms", "p99_ms"))

    return table(
        ("system", "load", "calls", "webhooks/s", "webhook p50 / p90 / p99 ms", "→accept p50 / p90 / p99 ms",
         "→greeting p50 / p90 / p99 ms", "greeted", "answered/s"),
        [
            (r["target"], r["load"], r["calls"], r["webhooks_per_s"], trio(r["latency"]), trio(r["accept"]),
             trio(r["greeting"]), f"{r['greeted']}/{r['calls']}", r["answered_per_s"])
            for r in rows
        ],
    )  # fmt: skip


def ratio_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Switchboard against the baseline under the same load."""

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.1f}x" if a and b else "—"

    lines = []
    for sb in (r for r in rows if r["kind"] == "switchboard"):
        base = next((r for r in rows if r["kind"] == "baseline" and r["load"] == sb["load"]), None)
        if base is None:
            continue
        lines.append(
            f"{sb['load']}: switchboard/baseline webhooks/s {ratio(sb['webhooks_per_s'], base['webhooks_per_s'])}, "
            f"answered/s {ratio(sb['answered_per_s'], base['answered_per_s'])}; "
            f"baseline/switchboard webhook p99 {ratio(base['latency']['p99_ms'], sb['latency']['p99_ms'])}, "
            f"accept p99 {ratio(base['accept']['p99_ms'], sb['accept']['p99_ms'])}, "
            f"greeting p99 {ratio(base['greeting']['p99_ms'], sb['greeting']['p99_ms'])}"
        )
    return lines


def _pair(summary: dict[str, Any]) -> str:
    return " / ".join("—" if summary[k] is None else f"{summary[k]:,.1f}" for k in ("p50_ms", "p99_ms"))


def _cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items())


def _loads(sizes: Sizes) -> list[Load]:
    live_calls = round(sizes.live_calls * sizes.live_seconds / sizes.hold_s)
    loads = [Load(calls=live_calls, live=sizes.live_calls, hold_s=sizes.hold_s)]
    loads += [Load(calls=sizes.answer_n, concurrency=sizes.concurrency)]
    loads += [Load(calls=max(1, round(rate * sizes.rate_seconds)), rate=rate) for rate in sizes.rates]
    return loads


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        sizes = Sizes(durable_n=100, durable_warmup=20, answer_n=20, answer_warmup=5, concurrency=10, ingresses=[1],
                      rates=[20.0], rate_seconds=0.5, live_calls=5, hold_s=0.5, live_seconds=1.5)  # fmt: skip
    else:
        sizes = Sizes(args.durable_n, args.durable_warmup, args.answer_n, args.answer_warmup, args.concurrency,
                      [int(x) for x in args.ingress.split(",") if x], [float(x) for x in args.rates.split(",") if x],
                      args.rate_seconds, args.live_calls, args.hold_s, args.live_seconds)  # fmt: skip
    info = machine()
    print(f"intake: {machine_line(info)}", flush=True)
    durable = [] if args.smoke else [await ceiling_case(sizes)]
    for count in sizes.ingresses:
        durable.append(await durable_case(sizes, count))
        print(f"  durable x{count}: {durable[-1]['webhooks_per_s']} webhooks/s", flush=True)
    loads = _loads(sizes)
    answer = await answer_case(sizes, "switchboard", loads, workers=args.workers)
    answer += await answer_case(sizes, "baseline", loads)
    profiles: dict[str, Any] = {}
    if args.profile:
        profile_dir = args.out / "profiles"
        await durable_case(sizes, 1, profile_dir=profile_dir)
        burst = [load for load in loads if load.concurrency is not None]
        await answer_case(sizes, "switchboard", burst, workers=args.workers, profile_dir=profile_dir)
        for path in sorted(profile_dir.glob("intake-*.pyspy.txt")):
            profiles[path.name.removesuffix(".pyspy.txt")] = top_frames(path)
    return {
        "benchmark": "intake",
        "machine": info,
        "params": {
            "smoke": args.smoke,
            "concurrency": sizes.concurrency,
            "durable_n": sizes.durable_n,
            "durable_warmup": sizes.durable_warmup,
            "answer_n": sizes.answer_n,
            "answer_warmup": sizes.answer_warmup,
            "rates": sizes.rates,
            "rate_seconds": sizes.rate_seconds,
            "live_calls": sizes.live_calls,
            "hold_s": sizes.hold_s,
            "live_seconds": sizes.live_seconds,
            "workers": args.workers,
            "seed": SEED,
        },
        "durable": durable,
        "answer": answer,
        "ratios": ratio_lines(answer),
        "profiles": profiles,
    }


def report(results: dict[str, Any]) -> str:
    p = results["params"]
    lines = [
        f"Durable intake — {p['durable_n']} signed webhooks at concurrency {p['concurrency']} "
        f"(after {p['durable_warmup']} warm-up); controller off, each 200 = stored in JetStream:",
        durable_table(results["durable"]),
        "",
        f"Answer — calls rung by the emulator (after {p['answer_warmup']} warm-up), their signed webhooks delivered "
        f"as {p['live_calls']} concurrent calls of {p['hold_s']:g} s each for {p['live_seconds']:g} s, as a burst at "
        f"C={p['concurrency']}, or open-loop at a fixed rate; times from the webhook's send:",
        answer_table(results["answer"]),
        *results["ratios"],
    ]
    staged = [r for r in results["answer"] if "stages" in r]
    if staged:
        kinds = list(staged[0]["stages"])
        lines += [
            "",
            "Where switchboard's answering time goes — p50 / p99 ms from the webhook's send to each event being "
            "stored (JetStream's timestamp), then the greeting as the emulator received it:",
            table(("load", *kinds), [(r["load"], *(_pair(r["stages"][k]) for k in kinds)) for r in staged]),
        ]
    lines += profiles_report(results["profiles"])
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it still run?")
    parser.add_argument("--concurrency", "-c", type=int, default=100)
    parser.add_argument("--durable-n", type=int, default=5000)
    parser.add_argument("--durable-warmup", type=int, default=500)
    parser.add_argument("--answer-n", type=int, default=1000, help="calls in the closed-loop answer run")
    parser.add_argument("--answer-warmup", type=int, default=100)
    parser.add_argument("--rates", default="25,50,100", help="open-loop answer runs: calls per second")
    parser.add_argument("--rate-seconds", type=float, default=6.0, help="how long each open-loop run offers calls")
    parser.add_argument("--ingress", default="1,2,4", help="ingress process counts for durable intake")
    parser.add_argument("--live-calls", type=int, default=100, help="concurrent calls in the live-calls run")
    parser.add_argument("--hold-s", type=float, default=10.0, help="how long each of those calls lasts")
    parser.add_argument("--live-seconds", type=float, default=40.0, help="how long the live-calls run goes on")
    parser.add_argument("--workers", type=int, default=1, help="session workers in the answer run")
    parser.add_argument("--profile", action="store_true", help="extra passes under py-spy (not in the tables)")
    add_output_args(parser, "intake")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    publish(args, results, report)
    if not any(r["ok"] for r in results["answer"]):
        return 1  # nothing was answered at all: the benchmark itself is broken
    return 0


if __name__ == "__main__":
    sys.exit(main())
