"""The README's Performance tables, from the JSON the benchmarks wrote (bench/results/*.json).

    python -m bench.report [--results DIR]

Prints Markdown: the machine, then one compact table per benchmark that has results. Nothing here
measures anything; it only reformats what ``make bench`` measured, so the README and the JSON agree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import RESULTS_DIR, machine_line, table


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _trio(summary: dict[str, Any]) -> str:
    return " / ".join("—" if summary[k] is None else f"{summary[k]:,.1f}" for k in ("p50_ms", "p90_ms", "p99_ms"))


def intake(results: dict[str, Any]) -> list[str]:
    p = results["params"]
    durable = table(
        ("durable intake (controller off)", "webhooks/s", "p50 / p90 / p99 ms", "stored"),
        [(r["target"], r["webhooks_per_s"], _trio(r["latency"]), f"{r['stored'] if r['stored'] is not None else '—'}"
          f"/{r['ok']}") for r in results["durable"]],
    )  # fmt: skip
    answer = table(
        ("answering calls", "load", "webhooks/s", "webhook p50 / p90 / p99 ms", "→accept p50 / p90 / p99 ms",
         "→greeting p50 / p90 / p99 ms", "greeted", "answered/s"),
        [(r["target"], r["load"], r["webhooks_per_s"], _trio(r["latency"]), _trio(r["accept"]), _trio(r["greeting"]),
          f"{r['greeted']}/{r['calls']}", r["answered_per_s"]) for r in results["answer"]],
    )  # fmt: skip
    return [
        f"**Intake** — {p['durable_n']:,} signed webhooks at concurrency {p['concurrency']} "
        f"({p['durable_warmup']} warm-up first):",
        "",
        durable,
        "",
        f"**Answering** — calls rung by the emulator; {p.get('live_calls', 100)} concurrent calls of "
        f"{p.get('hold_s', 10):g} s each (a line calls again when its call ends), a burst of {p['answer_n']:,} "
        f"webhooks at C={p['concurrency']}, or a fixed rate for {p['rate_seconds']:g} s; times from the webhook's "
        "send:",
        "",
        answer,
        "",
        *(f"- {line}" for line in results.get("ratios", [])),
    ]


def relay(results: dict[str, Any]) -> list[str]:
    p = results["params"]

    def rows(items: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (r["workers"], f"{r['live']}/{r['calls']}", r["events_per_s_relayed"], r["events_per_s_per_call_sent"],
             _trio(r["latency"]), r["lost"], r["worker_cores"], r["worker_cpu_ms_per_s_per_call"],
             r["worker_rss_kib_per_call"], "yes" if r["p99_under_target"] and r["all_live"] else "no")
            for r in items
        ]  # fmt: skip

    headers = ("workers", "live calls", "events/s relayed", "events/s per call", "relay p50 / p90 / p99 ms", "lost",
               "worker cores", "CPU ms/s per call", "RSS KiB per call", f"p99 < {p['p99_target_ms']:g} ms")  # fmt: skip
    out = [
        f"**Relay** — M `chatter` calls on one worker process (transcript deltas {p['speech_rate']:g}/s while the "
        f"agent speaks, a real call's pace), {p['window_s']:g} s window after {p['warmup_s']:g} s warm-up; "
        f"latency = emulator send → stored in JetStream, every event of {p['sample']} sampled calls:",
        "",
        table(headers, rows(results["sweep"])),
        "",
        f"Largest M with p99 < {p['p99_target_ms']:g} ms: **{results['largest_calls_p99_under_target']}**.",
    ]
    if results.get("stress"):
        out += ["", f"**Stress** — the same at {p['stress_rate']:g} transcript deltas/s (five times as talkative):", "",
                table(headers, rows(results["stress"])), "",
                f"Largest M with p99 < {p['p99_target_ms']:g} ms: "
                f"**{results['largest_calls_p99_under_target_stress']}**."]  # fmt: skip
    if results["scaling"]:
        out += ["", "**Scaling** — the same calls over N worker processes:", "",
                table(headers, rows(results["scaling"]))]  # fmt: skip
    return out


def failover(results: dict[str, Any]) -> list[str]:
    p = results["params"]
    rows = [
        (name, results[key]["p50_s"], results[key]["max_s"])
        for name, key in (
            ("kill -9 → another worker claims the call", "kill_to_claimed"),
            ("kill -9 → the call's events flow again", "kill_to_events"),
        )
    ]
    return [
        f"**Failover** — kill -9 of the worker holding a live call ({p['repeats']} repeats, lease {p['lease_s']:g} s):",
        "",
        table(("", "p50 s", "max s"), rows),
    ]


def console(results: dict[str, Any]) -> list[str]:
    from bench.console import report

    return [f"**{line}**" if i == 0 else line for i, line in enumerate(report(results).splitlines())]


def capacity(results: dict[str, Any]) -> list[str]:
    p = results["params"]
    best = results["highest_slo_rate"]

    def pair(summary: dict[str, Any]) -> str:
        return " / ".join("—" if summary[k] is None else f"{summary[k]:,.1f}" for k in ("p50_ms", "p99_ms"))

    rows = [
        (r["kind"], r["rate"], f"{r['greeted']}/{r['calls']}", pair(r["accept"]), pair(r["greeting"]),
         r["cpu_ms_per_call_system"],
         ", ".join(f"{n} {r['cpu_ms_per_call'][n]:.2f}" for n in r["system_processes"]), "yes" if r["slo"] else "no")
        for r in results["rates"]
    ]  # fmt: skip
    floor = results["floor"]
    headers = ("system", "calls/s", "greeted", "accept p50 / p99 ms", "greeting p50 / p99 ms", "CPU ms/call",
               "per process", "SLO")  # fmt: skip
    return [
        f"**Capacity** — silent calls offered at each rate for {p['seconds']:g} s, each on a fresh system; CPU per "
        f"answered call from /proc; SLO accept p99 ≤ {p['slo_accept_p99_ms']:g} ms, greeting p99 ≤ "
        f"{p['slo_greeting_p99_ms']:g} ms, every call greeted:",
        "",
        table(headers, rows),
        "",
        f"Highest SLO rate: switchboard {best['switchboard']}, baseline {best['baseline']} calls/s. The floor (same "
        f"hops through nats-server, no logic) at {floor['rate']:g} calls/s: {floor['cpu_ms_per_call_total']} ms CPU "
        f"per call ({', '.join(f'{k} {v:.2f}' for k, v in floor['cpu_ms_per_call'].items())}).",
    ]


def render(directory: Path) -> str:
    names = ("intake", "relay", "failover", "console", "capacity")
    found = {name: _load(directory, name) for name in names}
    machines = [r["machine"] for r in found.values() if r is not None]
    lines = [f"Measured on {machine_line(machines[0])}.", ""] if machines else ["No results yet: run `make bench`."]
    renderers = (
        ("intake", intake),
        ("relay", relay),
        ("failover", failover),
        ("console", console),
        ("capacity", capacity),
    )
    for name, fn in renderers:
        results = found[name]
        if results is not None:
            lines += [*fn(results), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    print(render(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
