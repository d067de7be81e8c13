"""Capacity: calls offered at a ramp of steady rates, each rate on a fresh system, Switchboard and the Flask
baseline in the same run, and what each answered call costs in CPU, process by process.

For each rate R (default 25, 50, 100, 200, 300, 400 calls/s) and each system, a fresh system is started: the
emulator as an independent OpenAI stand-in in its own process, and either Switchboard (nats-server,
``switchboard ingress``, ``controller`` and one ``session`` worker, each its own process) or the Flask
baseline (bench/baseline_flask.py, OpenAI's example as written). The emulator rings R x `--seconds`
``silent`` calls (greeted, then the caller hangs up) and signs their webhooks; this process delivers
them open loop, call i at start + i/R, after a warm-up of one second's worth at the same rate. Measured
from the emulator's records, from the moment each webhook was sent: webhook → accept (its ``/accept``
request) and webhook → greeting (the greeting's ``response.create`` on the sideband), p50 and p99;
whether every call was answered and greeted; and the CPU (utime + stime from /proc) that each process
used from the first send until every call had ended and a settle second passed, divided by the calls
answered. The **SLO**: every call answered and greeted, accept p99 ≤ 50 ms, greeting p99 ≤ 150 ms; for
each system, the highest rate offered that meets it.

**The floor** (`bench._floor`): the same NATS hops per call with no logic — three processes standing in
for ingress, controller and worker doing only their JetStream publishes, pulls, acks and KV writes, with
the number of relayed events per call Switchboard stored at the floor's rate — so that the CPU per call
of nats-server and of a Python NATS client doing nothing else says how far Switchboard is from it.

``--profile`` adds a pass at `--profile-rate` (not in the tables) with py-spy on each Switchboard
process, its top frames in the JSON and the report. Wall-clock latencies share the 2 cores with the load
generator and the emulator; CPU per call from /proc is the robust measure. ``--smoke``: a tiny run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bench._common import (
    SEED,
    CpuWindow,
    Latency,
    add_output_args,
    machine,
    machine_line,
    profiles_report,
    publish,
    table,
    top_frames,
)
from bench._floor import RELAY_MODES
from bench._loadgen import drive_rate
from bench._system import LOOPBACK, Process, System, free_port
from bench.intake import (
    Capture,
    _accepted_at,
    _greeted_at,
    _profilers,
    place_calls,
    stored_messages,
    wait_greeted,
)
from switchboard.emulator.calls import CallRecord
from switchboard.emulator.client import EmulatorClient

SLO_ACCEPT_P99_MS = 50.0
SLO_GREETING_P99_MS = 150.0
GREETING_TIMEOUT_S = 120.0
SETTLE_S = 1.0
"""After the last call ended: the services record its end (a few ms); idle cost over this is counted."""
SYSTEMS = ("switchboard", "baseline")
_FLOOR_FIXED_EVENTS = 6
"""Events per call the floor publishes besides the relayed ones: incoming, decided, accepted, claimed,
ended, released."""


@dataclass(frozen=True)
class Plan:
    rates: list[float]
    seconds: float
    warmup_s: float
    floor_rate: float
    profile_rate: float | None
    tracing_rate: float | None = None


async def _start(
    system: System, kind: str, capture: Capture, service_env: dict[str, str] | None = None
) -> tuple[Process, list[Process], str]:
    """The emulator and the system under test, ready: (emulator, measured processes, webhook URL)."""
    emulator = await system.start_emulator(webhook_url=capture.url, pace=0.0)
    if kind == "switchboard":
        await system.start_nats()
        extra = service_env or {}
        procs = [
            await system.start_service("ingress", **extra),
            await system.start_service("controller", **extra),
            await system.start_service("session", name="session", SESSION_MAX_CALLS="100000",
                                       SWITCHBOARD_WORKER="worker-1", **extra),
        ]  # fmt: skip
        assert procs[0].ready_url is not None
        target = procs[0].ready_url.replace("/readyz", "/webhooks/openai")
    else:
        port = free_port()
        procs = [
            await system.start_python(
                "flask-baseline", "bench.baseline_flask", ["--port", str(port)], f"http://{LOOPBACK}:{port}/healthz"
            )
        ]
        target = f"http://{LOOPBACK}:{port}/"
    await system.ready(emulator, *procs)
    return emulator, procs, target


async def _offer(client: EmulatorClient, capture: Capture, target: str, n: int, rate: float) -> tuple[
    list[str], dict[str, float], dict[str, CallRecord]
]:  # fmt: skip
    """Ring `n` silent calls, deliver their webhooks at `rate`/s; (ids, sent at, records once greeted)."""
    ids = await place_calls(client, n, script="silent")
    await capture.wait_for(ids, timeout_s=120)
    result = await drive_rate([capture.got[c].to(target) for c in ids], rate)
    records = await wait_greeted(client, ids, GREETING_TIMEOUT_S)
    return ids, result.sent_at, records


async def _until_ended(client: EmulatorClient, ids: Sequence[str], timeout_s: float = 30.0) -> None:
    """Wait until the emulator has every call ended (the silent caller hangs up after the greeting)."""
    deadline = time.monotonic() + timeout_s
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        pending = [c for c in pending if not (await client.get_call(c)).ended]
        if pending:
            await asyncio.sleep(0.1)


async def rate_case(
    kind: str, rate: float, plan: Plan, *, profile_dir: Path | None = None, service_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """One rate on a fresh system of `kind`: latencies, answered/greeted, CPU ms per answered call."""
    capture = Capture()
    await capture.start()
    try:
        async with System() as system:
            emulator, procs, target = await _start(system, kind, capture, service_env)
            pids = {p.name: p.pid for p in procs}
            if system.nats is not None:
                pids["nats-server"] = system.nats.pid
            async with EmulatorClient(system.emulator_url, timeout_s=60) as client:
                warm = max(3, round(rate * plan.warmup_s))
                warm_ids, _, _ = await _offer(client, capture, target, warm, rate)
                await _until_ended(client, warm_ids)
                n = max(1, round(rate * plan.seconds))
                ids = await place_calls(client, n, script="silent")
                await capture.wait_for(ids, timeout_s=120)
                cpu = CpuWindow({**pids, "emulator": emulator.pid})
                profilers = _profilers(procs, profile_dir, "capacity")
                traffic_before = await system.nats_messages() if system.nats is not None else {}
                cpu.start()
                result = await drive_rate([capture.got[c].to(target) for c in ids], rate)
                records = await wait_greeted(client, ids, GREETING_TIMEOUT_S)
                await _until_ended(client, ids)
                await asyncio.sleep(SETTLE_S)
                cpu.stop()
                traffic = _traffic(traffic_before, await system.nats_messages()) if system.nats is not None else {}
                for profiler in profilers:
                    profiler.stop()
            stored = await stored_messages(system.nats_url) if kind == "switchboard" else None
    finally:
        await capture.stop()
    row = _row(kind, rate, ids, result.sent_at, records, cpu, list(pids))
    row["nats_messages_per_call"] = _per_call(traffic, row["answered"])
    row["wakeups_per_call"] = _per_call(cpu.woke or {}, row["answered"])
    if stored is not None:
        row["events_per_call"] = round(stored / (n + warm), 1)
    return row


def _traffic(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Messages each connection sent and received between two `System.nats_messages` snapshots."""
    zero = (0, 0)
    return {
        name: (sent - before.get(name, zero)[0], got - before.get(name, zero)[1]) for name, (sent, got) in after.items()
    }


def _per_call(counts: dict[str, tuple[int, int]], calls: int) -> dict[str, list[float]]:
    """Two counts per name, per call: NATS messages a connection sent / received (`_traffic`), or a
    process's read and write system calls / context switches (`CpuWindow.woke`)."""
    return {name: [round(a / calls, 1), round(b / calls, 1)] for name, (a, b) in sorted(counts.items()) if calls}


def _row(kind: str, rate: float, ids: Sequence[str], sent_at: dict[str, float], records: dict[str, CallRecord],
         cpu: CpuWindow, system_procs: list[str]) -> dict[str, Any]:  # fmt: skip
    accept, greeting = Latency(), Latency()
    for call_id in ids:
        sent, record = sent_at.get(call_id), records.get(call_id)
        if sent is None or record is None:
            continue
        if (accepted := _accepted_at(record)) is not None:
            accept.record_s(accepted - sent)
        if (greeted := _greeted_at(record)) is not None:
            greeting.record_s(greeted - sent)
    assert cpu.used is not None
    answered = accept.count
    per_call = {name: round(1000 * used / answered, 2) if answered else None for name, used in cpu.used.items()}
    total = round(sum(1000 * cpu.used[name] for name in system_procs) / answered, 2) if answered else None
    all_answered = answered == len(ids) and greeting.count == len(ids)
    a, g = accept.summary(), greeting.summary()
    slo = (all_answered and a["p99_ms"] is not None and a["p99_ms"] <= SLO_ACCEPT_P99_MS
           and g["p99_ms"] is not None and g["p99_ms"] <= SLO_GREETING_P99_MS)  # fmt: skip
    return {
        "kind": kind,
        "rate": rate,
        "calls": len(ids),
        "answered": answered,
        "greeted": greeting.count,
        "all_answered_and_greeted": all_answered,
        "accept": a,
        "greeting": g,
        "cpu_ms_per_call": per_call,
        "cpu_ms_per_call_system": total,
        "system_processes": system_procs,
        "cores": cpu.cores(),
        "seconds": round(cpu.seconds, 2),
        "slo": slo,
    }


# --- the floor ---------------------------------------------------------------------------------------


async def floor_case(rate: float, seconds: float, relayed: int, relay_mode: str = "acked") -> dict[str, Any]:
    """The do-nothing pipeline of the same hops at `rate` calls/s (see `bench._floor`), its worker storing
    the relayed events the `relay_mode` way."""
    n = max(1, round(rate * seconds))
    async with System() as system:
        nats = await system.start_nats()
        reports = {role: system.dir / f"floor-{role}.cpu" for role in ("ingress", "controller", "worker")}

        def argv(role: str) -> list[str]:
            return ["--role", role, "--nats", system.nats_url, "--calls", str(n), "--relayed", str(relayed),
                    "--rate", str(rate), "--report", str(reports[role]), "--relay-mode", relay_mode]  # fmt: skip

        consumers = [
            await system.start_python(f"floor-{role}", "bench._floor", argv(role), None)
            for role in ("controller", "worker")
        ]
        await asyncio.sleep(2.0)  # their consumers exist before the first call is published
        cpu = CpuWindow({"nats-server": nats.pid})
        traffic_before = await system.nats_messages()
        cpu.start()
        feeder = await system.start_python("floor-ingress", "bench._floor", argv("ingress"), None)
        for proc in (feeder, *consumers):
            await asyncio.wait_for(proc.proc.wait(), seconds + 60)
        cpu.stop()
        traffic = _traffic(traffic_before, await system.nats_messages())
        assert cpu.used is not None
        used = {f"floor-{role}": float(path.read_text()) if path.exists() else 0.0 for role, path in reports.items()}
        used["nats-server"] = cpu.used["nats-server"]
        failed = [p.name for p in (feeder, *consumers) if p.proc.returncode != 0]
    return {
        "rate": rate,
        "calls": n,
        "relayed_per_call": relayed,
        "relay_mode": relay_mode,
        "events_per_call": relayed + _FLOOR_FIXED_EVENTS,
        "cpu_ms_per_call": {name: round(1000 * s / n, 2) for name, s in used.items()},
        "cpu_ms_per_call_total": round(1000 * sum(used.values()) / n, 2),
        "nats_messages_per_call": _per_call(traffic, n),
        "wakeups_per_call": _per_call(cpu.woke or {}, n),
        "failed": failed,
    }


# --- the run -----------------------------------------------------------------------------------------


def highest_slo_rate(rows: Sequence[dict[str, Any]], kind: str) -> float | None:
    passing = [r["rate"] for r in rows if r["kind"] == kind and r["slo"]]
    return max(passing) if passing else None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        plan = Plan(rates=[20.0], seconds=0.5, warmup_s=0.25, floor_rate=20.0, profile_rate=None, tracing_rate=20.0)
    else:
        plan = Plan([float(x) for x in args.rates.split(",") if x], args.seconds, args.warmup_s, args.floor_rate,
                    args.profile_rate if args.profile else None, args.tracing_rate or None)  # fmt: skip
    info = machine()
    print(f"capacity: {machine_line(info)}", flush=True)
    rows: list[dict[str, Any]] = []
    for rate in plan.rates:
        for kind in SYSTEMS:
            rows.append(await rate_case(kind, rate, plan))
            r = rows[-1]
            print(f"  {kind} {rate:g}/s: accept p99 {r['accept']['p99_ms']} ms, greeting p99 "
                  f"{r['greeting']['p99_ms']} ms, {r['greeted']}/{r['calls']} greeted, "
                  f"{r['cpu_ms_per_call_system']} ms CPU/call", flush=True)  # fmt: skip
    measured = [r for r in rows if r["kind"] == "switchboard" and "events_per_call" in r]
    nearest = min(measured, key=lambda r: abs(r["rate"] - plan.floor_rate)) if measured else None
    relayed = max(0, round(nearest["events_per_call"]) - _FLOOR_FIXED_EVENTS) if nearest else 8
    floor = await floor_case(plan.floor_rate, plan.seconds, relayed)
    print(f"  floor {plan.floor_rate:g}/s: {floor['cpu_ms_per_call_total']} ms CPU/call", flush=True)
    variants = []
    for mode in RELAY_MODES[1:] if args.floor_variants or args.smoke else ():
        variants.append(await floor_case(plan.floor_rate, plan.seconds, relayed, mode))
        print(f"  floor, relayed {mode}: {variants[-1]['cpu_ms_per_call_total']} ms CPU/call", flush=True)
    tracing = await tracing_case(plan) if plan.tracing_rate is not None else None
    profiles: dict[str, Any] = {}
    if plan.profile_rate is not None:
        profile_dir = args.out / "profiles"
        await rate_case("switchboard", plan.profile_rate, plan, profile_dir=profile_dir)
        for path in sorted(profile_dir.glob("capacity-*.pyspy.txt")):
            profiles[path.name.removesuffix(".pyspy.txt")] = top_frames(path)
    best = {kind: highest_slo_rate(rows, kind) for kind in SYSTEMS}
    return {
        "benchmark": "capacity",
        "machine": info,
        "params": {
            "smoke": args.smoke,
            "rates": plan.rates,
            "seconds": plan.seconds,
            "warmup_s": plan.warmup_s,
            "slo_accept_p99_ms": SLO_ACCEPT_P99_MS,
            "slo_greeting_p99_ms": SLO_GREETING_P99_MS,
            "floor_rate": plan.floor_rate,
            "profile_rate": plan.profile_rate,
            "seed": SEED,
        },
        "rates": rows,
        "highest_slo_rate": best,
        "slo_ratio": round(best["switchboard"] / best["baseline"], 2)
        if best["switchboard"] and best["baseline"]
        else None,
        "floor": floor,
        "floor_variants": variants,
        "tracing": tracing,
        "profiles": profiles,
    }


class _NullCollector:
    """An OTLP/HTTP endpoint that takes every export and keeps only how many bytes came."""

    def __init__(self) -> None:
        self.port, self.bytes = free_port(), 0
        self._runner: web.AppRunner | None = None

    async def _traces(self, request: web.Request) -> web.Response:
        self.bytes += len(await request.read())
        return web.Response(content_type="application/x-protobuf")

    async def __aenter__(self) -> _NullCollector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def tracing_case(plan: Plan) -> dict[str, Any]:
    """CPU per answered call at one rate with tracing off and on (OTLP/HTTP to a collector that drops it)."""
    assert plan.tracing_rate is not None
    off = await rate_case("switchboard", plan.tracing_rate, plan)
    async with _NullCollector() as collector:
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{collector.port}"}
        on = await rate_case("switchboard", plan.tracing_rate, plan, service_env=env)
    print(f"  tracing at {plan.tracing_rate:g}/s: {off['cpu_ms_per_call_system']} ms CPU/call off, "
          f"{on['cpu_ms_per_call_system']} ms on ({collector.bytes:,} bytes of spans)", flush=True)  # fmt: skip
    return {"rate": plan.tracing_rate, "off": off, "on": on, "exported_bytes": collector.bytes}


# --- report ------------------------------------------------------------------------------------------


def _pair(summary: dict[str, Any]) -> str:
    return " / ".join("—" if summary[k] is None else f"{summary[k]:,.1f}" for k in ("p50_ms", "p99_ms"))


def _breakdown(per_call: dict[str, float | None], names: Sequence[str]) -> str:
    return ", ".join(f"{n} {per_call[n]:.2f}" for n in names if per_call.get(n) is not None)


def rates_table(rows: Sequence[dict[str, Any]]) -> str:
    return table(
        ("system", "calls/s", "answered", "greeted", "accept p50 / p99 ms", "greeting p50 / p99 ms",
         "CPU ms per call (system)", "per process", "emulator ms/call", "SLO"),
        [
            (r["kind"], r["rate"], f"{r['answered']}/{r['calls']}", f"{r['greeted']}/{r['calls']}", _pair(r["accept"]),
             _pair(r["greeting"]), r["cpu_ms_per_call_system"], _breakdown(r["cpu_ms_per_call"], r["system_processes"]),
             r["cpu_ms_per_call"].get("emulator"), r["slo"])
            for r in rows
        ],
    )  # fmt: skip


def _pairs(per_call: dict[str, list[float]] | None) -> str:
    """``controller 6 / 7, …``: the two numbers per name of a `_per_call` measure."""
    return ", ".join(f"{name} {a:g} / {b:g}" for name, (a, b) in (per_call or {}).items() if a or b)


def per_call_table(rows: Sequence[dict[str, Any]], floor: dict[str, Any], key: str, title: str, column: str) -> str:
    """One `_per_call` measure (`key`) of every Switchboard rate and of the floor."""
    return table(
        (title, "calls/s", column),
        [(r["kind"], r["rate"], _pairs(r.get(key))) for r in rows if r["kind"] == "switchboard"]
        + [("the floor", floor["rate"], _pairs(floor.get(key)))],
    )


_FLOOR_ROWS = {
    "acked": "do-nothing pipeline through nats-server",
    "last-acked": "… relayed events unacknowledged but the last",
    "atomic": "… relayed events as one atomic batch",
    "one-message": "… relayed events as one message",
}


def floor_table(floor: dict[str, Any], variants: Sequence[dict[str, Any]] = ()) -> str:
    return table(
        ("the floor: same hops, no logic", "calls/s", "events per call", "CPU ms per call (all)", "per process"),
        [(_FLOOR_ROWS[f.get("relay_mode", "acked")], f["rate"], f["events_per_call"], f["cpu_ms_per_call_total"],
          ", ".join(f"{k} {v:.2f}" for k, v in f["cpu_ms_per_call"].items())) for f in (floor, *variants)],
    )  # fmt: skip


def report(results: dict[str, Any]) -> str:
    p = results["params"]
    best = results["highest_slo_rate"]
    lines = [
        f"Capacity — silent calls offered open loop at each rate for {p['seconds']:g} s, each rate on a fresh system "
        f"(after {p['warmup_s']:g} s of warm-up); times from the webhook's send; CPU from /proc over the run, per "
        f"call answered; SLO: all answered and greeted, accept p99 ≤ {p['slo_accept_p99_ms']:g} ms, greeting p99 ≤ "
        f"{p['slo_greeting_p99_ms']:g} ms:",
        rates_table(results["rates"]),
        "",
        f"Highest rate meeting the SLO: switchboard {best['switchboard']}, baseline {best['baseline']} calls/s"
        + (f" ({results['slo_ratio']:g}x)" if results.get("slo_ratio") else ""),
        "",
        floor_table(results["floor"], results.get("floor_variants") or ()),
        "",
        per_call_table(
            results["rates"],
            results["floor"],
            "nats_messages_per_call",
            "NATS messages per answered call",
            "sent / received, by connection",
        ),
        "",
        per_call_table(
            results["rates"],
            results["floor"],
            "wakeups_per_call",
            "system calls / context switches per answered call",
            "read+write calls / switches, by process",
        ),
    ]
    if results.get("tracing"):
        t = results["tracing"]
        lines += ["", f"Tracing at {t['rate']:g} calls/s (OTLP/HTTP to a collector that drops the spans): CPU ms per "
                      "answered call, all processes:", rates_table([{**t["off"], "kind": "tracing off"},
                                                                     {**t["on"], "kind": "tracing on"}])]  # fmt: skip
    lines += profiles_report(results["profiles"])
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it still run?")
    parser.add_argument("--rates", default="25,50,100,200,300,400", help="offered rates, calls per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each rate offers calls")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="warm-up at the same rate, on each fresh system")
    parser.add_argument("--floor-rate", type=float, default=100.0, help="the do-nothing pipeline's rate")
    parser.add_argument("--floor-variants", action="store_true",
                        help="the floor again, relayed events stored the other ways (_floor --relay-mode)")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="an extra pass under py-spy (not in the tables)")
    parser.add_argument("--profile-rate", type=float, default=100.0)
    parser.add_argument("--tracing-rate", type=float, default=100.0,
                        help="CPU per call with tracing off and on at this rate (0: skip)")  # fmt: skip
    add_output_args(parser, "capacity")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    publish(args, results, report)
    floors = [results["floor"], *results["floor_variants"]]
    if not any(r["answered"] for r in results["rates"]) or any(f["failed"] for f in floors):
        return 1  # nothing was answered at all, or the floor broke: the benchmark itself is broken
    return 0


if __name__ == "__main__":
    sys.exit(main())
