"""What every benchmark shares: exact percentiles, the machine report, tables, JSON results, /proc sampling
and py-spy profiles.

Percentiles come from an HdrHistogram of microseconds with 3 significant digits (every value is exact to
0.1 %), never from averages of averages. Times across processes are ``time.time()`` on one machine (one
clock); durations inside one process are ``time.perf_counter()``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from switchboard.cli.natsserver import find_binary

RESULTS_DIR = Path(__file__).parent / "results"
SEED = 20261124
"""Every random choice in the benchmarks (ids, samples, kill moments) comes from this seed."""

_HIGHEST_US = 10 * 60 * 1_000_000  # ten minutes: nothing we time takes longer


def seeded(salt: str = "") -> random.Random:
    """A private, seeded random generator (per purpose, so adding one use does not shift the others)."""
    return random.Random(f"{SEED}:{salt}")


class Latency:
    """An exact-enough latency distribution (HdrHistogram, microseconds, 3 significant digits)."""

    def __init__(self) -> None:
        self._h = HdrHistogram(1, _HIGHEST_US, 3)
        self.negative = 0
        """Values below zero (clock granularity between processes): recorded as 1 µs, counted here."""

    def record_s(self, seconds: float) -> None:
        micros = round(seconds * 1_000_000)
        if micros < 1:
            if micros < 0:
                self.negative += 1
            micros = 1
        self._h.record_value(min(micros, _HIGHEST_US))

    def extend_s(self, values: Iterable[float]) -> Latency:
        for value in values:
            self.record_s(value)
        return self

    def merge(self, other: Latency) -> Latency:
        """Add every value `other` recorded."""
        self._h.add(other._h)
        self.negative += other.negative
        return self

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def ms(self, percentile: float) -> float | None:
        if self.count == 0:
            return None
        return round(float(self._h.get_value_at_percentile(percentile)) / 1000, 2)

    def summary(self) -> dict[str, Any]:
        """count, p50/p90/p99/max (and mean) in milliseconds; None when nothing was recorded."""
        if self.count == 0:
            return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
        return {
            "count": self.count,
            "p50_ms": self.ms(50),
            "p90_ms": self.ms(90),
            "p99_ms": self.ms(99),
            "max_ms": round(self._h.get_max_value() / 1000, 2),
            "mean_ms": round(self._h.get_mean_value() / 1000, 2),
        }


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: numbers rounded, thousands separated, None as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) < 10:
            return f"{value:.2f}"
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown pipe table (pastes into the README as is), columns padded for the terminal."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_looks_numeric(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric, strict=True))
    return "\n".join([line(headers), rule + "|", *(line(r) for r in cells)])


def _looks_numeric(cell: str) -> bool:
    return cell == "—" or cell.replace(",", "").replace(".", "", 1).replace("-", "", 1).replace("%", "").isdigit()


# --- the machine ---------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def nats_server_version() -> str:
    try:
        out = subprocess.run([find_binary(), "--version"], capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip().removeprefix("nats-server: ") or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def source_version() -> dict[str, Any]:
    """The commit measured, and how many files differed from it (the working tree is what ran)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD") or "unknown", "changed_files": len(changed)}


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy the box already was."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nats_server": nats_server_version(),
        "packages": {
            p: _version(p) for p in ("nats-py", "aiohttp", "websockets", "msgspec", "uvloop", "flask", "openai")
        },
        "load_average_at_start": [round(x, 2) for x in load],
        "source": source_version(),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"nats-server {m['nats_server']}, load average at start {m['load_average_at_start'][0]}"
    )


def write_results(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    directory = out_dir or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path


def add_output_args(parser: argparse.ArgumentParser, name: str) -> None:
    """A benchmark's ``--out`` (the results folder) and ``--name`` (its file, `name` by default)."""
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default=name, help="results file name (without .json)")


def publish(args: argparse.Namespace, results: dict[str, Any], report: Callable[[dict[str, Any]], str]) -> None:
    """Write a benchmark's results as JSON (``--out``/``--name``) and print its tables and where they went."""
    path = write_results(args.name, results, args.out)
    print()
    print(report(results))
    print(f"\nwrote {path}")


# --- /proc -------------------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15 of stat)


def wakeups(pid: int) -> tuple[int, int]:
    """(read and write system calls, context switches over its threads) the process has made so far."""
    calls = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("syscr", "syscw"):
                calls += int(value)
    switches = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    switches += int(line.partition(":")[2])
    return calls, switches


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class CpuWindow:
    """CPU used by a set of processes between `start()` and `stop()`, and their system calls and context
    switches (`wakeups`) meanwhile."""

    pids: dict[str, int]
    _t0: float = 0.0
    _c0: dict[str, float] | None = None
    _w0: dict[str, tuple[int, int]] | None = None
    seconds: float = 0.0
    used: dict[str, float] | None = None
    woke: dict[str, tuple[int, int]] | None = None

    def start(self) -> None:
        self._w0 = {name: wakeups(pid) for name, pid in self.pids.items()}
        self._t0 = time.perf_counter()
        self._c0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        assert self._c0 is not None and self._w0 is not None
        self.seconds = time.perf_counter() - self._t0
        self.used = {name: cpu_seconds(pid) - self._c0[name] for name, pid in self.pids.items()}
        after = {name: wakeups(pid) for name, pid in self.pids.items()}
        self.woke = {name: (after[name][0] - self._w0[name][0], after[name][1] - self._w0[name][1]) for name in after}

    def cores(self) -> dict[str, float]:
        """Average cores busy per process over the window (1.0 = one core flat out)."""
        assert self.used is not None
        return {name: round(used / self.seconds, 3) for name, used in self.used.items()}


# --- py-spy ------------------------------------------------------------------------------------------


class Profiler:
    """py-spy sampling one process without pausing it (``--nonblocking``), raw collapsed stacks to a file."""

    def __init__(self, pid: int, out: Path, *, rate_hz: int = 100) -> None:
        self.pid = pid
        self.out = out
        self._rate = rate_hz
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        binary = Path(sys.executable).parent / "py-spy"
        if not binary.exists():
            return False
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [str(binary), "record", "--pid", str(self.pid), "--rate", str(self._rate), "--format", "raw",
             "--nonblocking", "--output", str(self.out), "--duration", "600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        return True

    def stop(self) -> None:
        """Stop sampling (py-spy writes its file on SIGINT)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (file.py)``; where a file is under site-packages or
    switchboard/, keep the package path so frames stay recognisable."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/switchboard/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "/switchboard/":
                path = "switchboard/" + path
            elif marker == "/lib/python3":
                path = "stdlib/" + path.split("/", 1)[1] if "/" in path else path
            break
    return f"{name} ({path})" if path else name


def top_frames(raw: Path, limit: int = 15) -> dict[str, Any]:
    """Self and inclusive sample counts per function from a py-spy raw (collapsed) profile."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = raw.read_text().splitlines()
    except OSError:
        return {"samples": 0, "self": [], "inclusive": []}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")[1:] if f]  # the first element names the thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str], wanted: int) -> list[dict[str, Any]]:
        top = counter.most_common(wanted)
        return [{"frame": frame, "samples": n, "percent": round(100 * n / total, 1)} for frame, n in top]

    return {"samples": total, "self": share(own, limit), "inclusive": share(inclusive, limit * 3)}


def profile_table(profile: dict[str, Any], limit: int = 12) -> str:
    rows = [(p["percent"], p["frame"]) for p in profile["self"][:limit]]
    return table(("self %", "function (where)"), rows)


def switchboard_inclusive(profile: dict[str, Any], limit: int = 12) -> str:
    """Inclusive time of the frames in Switchboard's own code (where the time goes, top-down)."""
    rows = [(p["percent"], p["frame"]) for p in profile["inclusive"] if "switchboard/" in p["frame"]][:limit]
    return table(("total %", "switchboard function (where)"), rows)


def profiles_report(profiles: dict[str, dict[str, Any]]) -> list[str]:
    """Report lines for each named py-spy profile: its self-time table, then Switchboard's own frames."""
    lines: list[str] = []
    for name, profile in profiles.items():
        lines += ["", f"py-spy profile {name} ({profile['samples']} samples, self time):", profile_table(profile)]
        if any("switchboard/" in f["frame"] for f in profile["inclusive"]):
            lines += [switchboard_inclusive(profile)]
    return lines
