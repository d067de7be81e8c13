"""Relay: one session-worker process holding M live calls, each streaming events at a realistic rate.

The emulator (its own process) plays M ``chatter`` calls: the caller keeps asking, the agent answers at
length, so transcript deltas arrive at ``--speech-rate`` per second per call while the agent speaks; the
average over a call, pauses included, is printed. The default, 4/s, is a real call's pace: speech runs at
about 150 words a minute and the transcript streams about a delta per token (~1.3 tokens a word), so
~3.3 deltas/s, rounded up; with every other event of each turn (the response and item lifecycle, the
caller's speech and transcription events, ``rate_limits.updated``) a call averages about 4.4 events/s.
Audio never flows on the sideband. A second sweep, ``--stress-rate`` (20/s, five times as talkative),
shows the headroom. The calls go through the real system —
webhook, ingress, controller, accept — and are held by ONE ``switchboard session`` process (or 2, 4 for
the scaling table). After all M are live and a warm-up, a measured window:

- **events/s relayed**: messages the CALLS stream stored during the window (its sequence numbers);
- **relay latency**: emulator send (its own ``time.time()`` just before the WebSocket send, per
  ``event_id``) → stored in JetStream (the stream's own timestamp of the message), for every event sent
  in the window on a seeded sample of calls; an event never stored counts as lost;
- **CPU and RSS per live call**: the worker's ``/proc`` CPU time over the window, and its RSS growth
  over its idle RSS, divided by M.

M steps up (100, 500, 1000, 1500 by default, each run 3 times on a fresh system; 50, 100, 250, 500 once
at the stress rate) until p99 reaches 50 ms in a run, not every call could go live, or the time budget is
spent: the table names the largest M with p99 < 50 ms in every run. Every process but
this one is the system under test; this one places calls, samples /proc and reads the stream afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench._common import (
    SEED,
    CpuWindow,
    Latency,
    Profiler,
    add_output_args,
    machine,
    machine_line,
    profile_table,
    publish,
    rss_bytes,
    seeded,
    switchboard_inclusive,
    table,
    top_frames,
)
from bench._system import Process, System, free_port
from switchboard.emulator.client import EmulatorClient
from switchboard.emulator.realtime import AGENT_WORD_S

CALLER = "+14155550101"
DIALLED = "+18005550100"
P99_TARGET_MS = 50.0
_WORDS_PER_DELTA = 2  # the emulator streams the agent's transcript two words per delta


@dataclass
class Step:
    calls: int
    workers: int


def pace_for(speech_rate: float) -> float:
    """The emulator pace that streams `speech_rate` transcript deltas per second while the agent speaks."""
    return 1.0 / (speech_rate * AGENT_WORD_S * _WORDS_PER_DELTA)


async def live_calls(http: aiohttp.ClientSession, metrics_urls: Sequence[str]) -> int:
    total = 0
    for url in metrics_urls:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            continue
        for line in text.splitlines():
            if line.startswith("switchboard_session_live_calls "):
                total += int(float(line.split()[1]))
    return total


async def wait_live(
    http: aiohttp.ClientSession, urls: Sequence[str], want: int, timeout_s: float, *, at_most: bool = False
) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        live = await live_calls(http, urls)
        if (live <= want) if at_most else (live >= want):
            return live
        if time.monotonic() > deadline:
            return live
        await asyncio.sleep(0.25)


async def _parallel(n: int, items: Sequence[str], fn: Any) -> list[Any]:
    sem = asyncio.Semaphore(n)

    async def one(item: str) -> Any:
        async with sem:
            return await fn(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


async def stream_seq(js: Any) -> int:
    info = await js.stream_info("CALLS")
    return int(info.state.last_seq)


async def stored_times(js: Any, call_id: str) -> dict[str, float]:
    """event_id → the stream's timestamp, for every relayed event of one call."""
    config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0)
    sub = await js.pull_subscribe(f"calls.{call_id}.rt.>", durable=None, stream="CALLS", config=config)
    found: dict[str, float] = {}
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=2)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for msg in msgs:
                event = msgspec.json.decode(msg.data)
                event_id = (event.get("data") or {}).get("event_id")
                if isinstance(event_id, str):
                    found.setdefault(event_id, msg.metadata.timestamp.timestamp())
            if not msgs or msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return found


async def relay_step(
    step: Step, *, pace: float, warmup_s: float, window_s: float, sample: int, profile_dir: Path | None = None
) -> dict[str, Any]:
    async with System() as system:
        assert system.http is not None
        http = system.http
        await system.start_nats()
        ingress_port = free_port()
        ingress = await system.start_service("ingress", INGRESS_PORT=str(ingress_port))
        emulator = await system.start_emulator(
            webhook_url=f"http://127.0.0.1:{ingress_port}/webhooks/openai", pace=pace
        )
        controller = await system.start_service("controller")
        cap = math.ceil(step.calls / step.workers)
        workers: list[Process] = [
            await system.start_service("session", name=f"session-{i + 1}", SESSION_MAX_CALLS=str(cap),
                                       SWITCHBOARD_WORKER=f"worker-{i + 1}")
            for i in range(step.workers)
        ]  # fmt: skip
        await system.ready(ingress, emulator, controller, *workers)
        metrics = [w.ready_url.replace("/readyz", "/metrics") for w in workers if w.ready_url]
        idle_rss = sum(rss_bytes(w.pid) for w in workers)
        nc = await nats.connect(system.nats_url)
        js = nc.jetstream()
        try:
            async with EmulatorClient(system.emulator_url, timeout_s=60) as client:
                ramp_started = time.monotonic()
                ids = await _parallel(
                    16, [""] * step.calls, lambda _: client.place_call(CALLER, DIALLED, script="chatter")
                )
                live = await wait_live(http, metrics, step.calls, timeout_s=20 + step.calls / 10)
                ramp_s = time.monotonic() - ramp_started
                await asyncio.sleep(warmup_s)
                pids = {w.name: w.pid for w in workers}
                pids.update({"emulator": emulator.pid, "controller": controller.pid, "ingress": ingress.pid})
                assert system.nats is not None
                pids["nats-server"] = system.nats.pid
                cpu = CpuWindow(pids)
                profilers = []
                if profile_dir is not None:
                    profilers = [
                        Profiler(w.pid, profile_dir / f"relay-{step.calls}-{w.name}.pyspy.txt") for w in workers
                    ]
                    for profiler in profilers:
                        profiler.start()
                seq0 = await stream_seq(js)
                t0 = time.time()
                cpu.start()
                await asyncio.sleep(window_s)
                cpu.stop()
                t1 = time.time()
                seq1 = await stream_seq(js)
                live_at_end = await live_calls(http, metrics)
                worker_rss = sum(rss_bytes(w.pid) for w in workers)
                for profiler in profilers:
                    profiler.stop()
                # End the calls, let the worker publish what it has, then read the sample back.
                await _parallel(16, ids, client.hangup)
                await wait_live(http, metrics, 0, timeout_s=30, at_most=True)
                sampled = sorted(seeded(f"relay:{step.calls}:{step.workers}").sample(ids, min(sample, len(ids))))
                records = await _parallel(8, sampled, client.get_call)
            latency = Latency()
            sent_in_window = lost = 0
            for record in records:
                stored = await stored_times(js, record.call_id)
                for event, sent in zip(record.server_events, record.server_event_times, strict=False):
                    if not t0 <= sent < t1:
                        continue
                    event_id = event.get("event_id")
                    if not isinstance(event_id, str):
                        continue
                    sent_in_window += 1
                    at = stored.get(event_id)
                    if at is None:
                        lost += 1
                    else:
                        latency.record_s(at - sent)
        finally:
            await nc.close()
    seconds = t1 - t0
    cores = cpu.cores()
    worker_cores = sum(cores[w] for w in (f"session-{i + 1}" for i in range(step.workers)))
    per_call_rate = sent_in_window / len(records) / seconds if records else 0.0
    summary = latency.summary()
    return {
        "calls": step.calls,
        "workers": step.workers,
        "live": live,
        "live_at_end": live_at_end,
        "ramp_s": round(ramp_s, 1),
        "window_s": round(seconds, 2),
        "events_per_s_relayed": round((seq1 - seq0) / seconds, 1),
        "events_per_s_per_call_sent": round(per_call_rate, 2),
        "sampled_calls": len(records),
        "sampled_events": sent_in_window,
        "lost": lost,
        "latency": summary,
        "negative_latencies": latency.negative,
        "cores": cores,
        "worker_cores": round(worker_cores, 3),
        "worker_cpu_ms_per_s_per_call": round(worker_cores * 1000 / step.calls, 3),
        "worker_rss_mib": round(worker_rss / 2**20, 1),
        "worker_rss_kib_per_call": round((worker_rss - idle_rss) / 1024 / step.calls, 1),
        "p99_under_target": summary["p99_ms"] is not None and summary["p99_ms"] < P99_TARGET_MS and lost == 0,
        "all_live": live >= step.calls,
    }


def step_table(rows: Sequence[dict[str, Any]]) -> str:
    return table(
        ("workers", "live calls", "events/s relayed", "events/s per call", "relay p50 ms", "p90 ms", "p99 ms",
         "max ms", "lost", "worker CPU (cores)", "CPU ms/s per call", "worker RSS MiB", "RSS KiB per call",
         "emulator CPU", "nats CPU", f"p99 < {P99_TARGET_MS:g} ms"),
        [
            (r["workers"], f"{r['live']}/{r['calls']}", r["events_per_s_relayed"], r["events_per_s_per_call_sent"],
             r["latency"]["p50_ms"], r["latency"]["p90_ms"], r["latency"]["p99_ms"], r["latency"]["max_ms"],
             r["lost"], r["worker_cores"], r["worker_cpu_ms_per_s_per_call"], r["worker_rss_mib"],
             r["worker_rss_kib_per_call"], r["cores"]["emulator"], r["cores"]["nats-server"],
             r["p99_under_target"] and r["all_live"])
            for r in rows
        ],
    )  # fmt: skip


async def sweep(
    steps: Sequence[int], *, speech_rate: float, warmup_s: float, window_s: float, sample: int, budget_s: float,
    repeats: int = 1,
) -> list[dict[str, Any]]:  # fmt: skip
    """One worker, M stepping up (each M `repeats` times, a fresh system each time) until p99 misses the
    target in one of them (or the budget is spent)."""
    budget_end = time.monotonic() + budget_s
    rows: list[dict[str, Any]] = []
    for calls in steps:
        passed = True
        for repeat in range(1, repeats + 1):
            row = await relay_step(Step(calls, 1), pace=pace_for(speech_rate), warmup_s=warmup_s,
                                   window_s=window_s, sample=sample)  # fmt: skip
            row["speech_rate"] = speech_rate
            row["repeat"] = repeat
            rows.append(row)
            print(f"  {speech_rate:g}/s M={calls} #{repeat}: {row['events_per_s_relayed']} events/s, "
                  f"p99 {row['latency']['p99_ms']} ms, worker {row['worker_cores']} cores, live {row['live']}",
                  flush=True)  # fmt: skip
            passed = passed and row["p99_under_target"] and row["all_live"]
        if not passed or time.monotonic() > budget_end:
            break
    return rows


def _largest(rows: Sequence[dict[str, Any]]) -> int | None:
    """The largest M whose every repeat had p99 under the target and every call live."""
    passing = {r["calls"] for r in rows if r["p99_under_target"] and r["all_live"]}
    failing = {r["calls"] for r in rows if not (r["p99_under_target"] and r["all_live"])}
    return max(passing - failing, default=None)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    info = machine()
    print(f"relay: {machine_line(info)}", flush=True)
    warmup_s, window_s = (0.5, 1.5) if args.smoke else (args.warmup_s, args.window_s)
    timing = {"warmup_s": warmup_s, "window_s": window_s, "sample": args.sample, "budget_s": args.budget_s}
    steps = [3] if args.smoke else [int(x) for x in args.calls.split(",") if x]
    realistic = await sweep(steps, speech_rate=args.speech_rate, repeats=1 if args.smoke else args.repeats, **timing)
    stress_steps = [] if args.smoke else [int(x) for x in args.stress_calls.split(",") if x]
    stress = await sweep(stress_steps, speech_rate=args.stress_rate, **timing) if stress_steps else []
    scaling: list[dict[str, Any]] = []
    scale_workers = [] if args.smoke else [int(x) for x in args.scale_workers.split(",") if x]
    for workers in scale_workers:
        row = await relay_step(Step(args.scale_calls, workers), pace=pace_for(args.speech_rate), warmup_s=warmup_s,
                               window_s=window_s, sample=args.sample)  # fmt: skip
        scaling.append(row)
        print(f"  scale {workers} workers, M={args.scale_calls}: {row['events_per_s_relayed']} events/s, "
              f"p99 {row['latency']['p99_ms']} ms", flush=True)  # fmt: skip
    profile: dict[str, Any] = {}
    if args.profile:
        calls = args.profile_calls or _largest(realistic) or steps[0]
        profile_dir = args.out / "profiles"
        await relay_step(Step(calls, 1), pace=pace_for(args.speech_rate), warmup_s=warmup_s, window_s=window_s,
                         sample=args.sample, profile_dir=profile_dir)  # fmt: skip
        profile = {"calls": calls, **top_frames(profile_dir / f"relay-{calls}-session-1.pyspy.txt")}
    return {
        "benchmark": "relay",
        "machine": info,
        "params": {
            "smoke": args.smoke,
            "speech_rate": args.speech_rate,
            "stress_rate": args.stress_rate,
            "emulator_pace": round(pace_for(args.speech_rate), 4),
            "warmup_s": warmup_s,
            "window_s": window_s,
            "sample": args.sample,
            "p99_target_ms": P99_TARGET_MS,
            "repeats": 1 if args.smoke else args.repeats,
            "seed": SEED,
        },
        "sweep": realistic,
        "largest_calls_p99_under_target": _largest(realistic),
        "stress": stress,
        "largest_calls_p99_under_target_stress": _largest(stress),
        "scaling": scaling,
        "profile": profile,
    }


def report(results: dict[str, Any]) -> str:
    p = results["params"]
    lines = [
        f"Relay — one worker process, M chatter calls (transcript deltas {p['speech_rate']:g}/s while the agent "
        f"speaks, a real call's pace), {p['warmup_s']:g} s warm-up, {p['window_s']:g} s window; latency = emulator "
        f"send → stored in JetStream, every event of {p['sample']} sampled calls:",
        step_table(results["sweep"]),
        f"largest M with p99 < {p['p99_target_ms']:g} ms and every call live"
        f"{' in every repeat' if p.get('repeats', 1) > 1 else ''}: {results['largest_calls_p99_under_target']}",
    ]
    if results.get("stress"):
        lines += ["", f"Stress — the same at {p['stress_rate']:g} transcript deltas/s (five times as talkative):",
                  step_table(results["stress"]),
                  f"largest M with p99 < {p['p99_target_ms']:g} ms: "
                  f"{results['largest_calls_p99_under_target_stress']}"]  # fmt: skip
    if results["scaling"]:
        lines += ["", "Scaling — the same calls spread over N worker processes (same 2 cores):",
                  step_table(results["scaling"])]  # fmt: skip
    profile = results["profile"]
    if profile:
        title = f"py-spy profile of the worker at M={profile['calls']} ({profile['samples']} samples, self time):"
        lines += ["", title, profile_table(profile), switchboard_inclusive(profile)]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it still run?")
    parser.add_argument("--calls", default="100,500,1000,1500", help="live-call steps for one worker")
    parser.add_argument("--speech-rate", type=float, default=4.0, help="transcript deltas/s while the agent speaks")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each step at the real pace (all must pass)")
    parser.add_argument("--stress-calls", default="50,100,250,500", help="live-call steps at the stress rate")
    parser.add_argument("--stress-rate", type=float, default=20.0, help="transcript deltas/s in the stress sweep")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument("--sample", type=int, default=50, help="calls whose every event is timed")
    parser.add_argument("--budget-s", type=float, default=900.0, help="stop stepping M after this long")
    parser.add_argument("--scale-calls", type=int, default=1000, help="live calls for the scaling table")
    parser.add_argument("--scale-workers", default="1,2,4", help="worker process counts for the scaling table")
    parser.add_argument("--profile", action="store_true", help="an extra step under py-spy (not in the tables)")
    parser.add_argument(
        "--profile-calls", type=int, default=0, help="M for the profiled step (default: largest passing)"
    )
    add_output_args(parser, "relay")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    publish(args, results, report)
    return 0 if any(r["sampled_events"] for r in results["sweep"]) else 1


if __name__ == "__main__":
    sys.exit(main())
