"""The system under test, as separate processes on loopback: nats-server, the emulator, and `switchboard`
services, each started as its container would be (``switchboard ingress|controller|session`` with the
environment of ARCHITECTURE.md). The benchmark process only drives load and observes, so it never shares
an event loop (or a GIL) with what it measures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp

from switchboard.cli.natsserver import find_binary

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Process:
    """One child process: its pid, a log file for its stderr, and a readiness URL."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path, ready_url: str | None) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.ready_url = ready_url

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def wait_ready(self, http: aiohttp.ClientSession, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready_url is None:
                return
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(self.ready_url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready within {timeout_s:g} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: gone at once, as in a crash."""
        if self.alive:
            self.proc.kill()

    async def stop(self, timeout_s: float = 10.0) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout_s)
            except TimeoutError:
                self.proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)


class System:
    """Processes started on demand and all stopped on exit; a fresh data directory per instance."""

    def __init__(self, *, keep: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
        self.keep = keep
        self.api_key = "sk-bench-" + secrets.token_hex(16)
        self.webhook_secret = new_webhook_secret()
        self.nats_port = free_port()
        self.monitor_port = free_port()
        self.emulator_port = free_port()
        self.nats: Process | None = None
        self.processes: list[Process] = []
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def nats_url(self) -> str:
        return f"nats://{LOOPBACK}:{self.nats_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://{LOOPBACK}:{self.emulator_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of ARCHITECTURE.md, pointing at this system's NATS and emulator."""
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SWITCHBOARD_", "SESSION_", "NATS_"))
        }
        return {
            **base,
            "NATS_URL": self.nats_url,
            "OPENAI_API_KEY": self.api_key,
            "OPENAI_WEBHOOK_SECRET": self.webhook_secret,
            "OPENAI_BASE_URL": f"{self.emulator_url}/v1",
            "LOG_LEVEL": "warning",
            "SWITCHBOARD_LOG_FORMAT": "console",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str], ready_url: str | None) -> Process:
        log = self.dir / f"{name}.log"
        with log.open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=sink
            )
        process = Process(name, proc, log, ready_url)
        self.processes.append(process)
        return process

    async def ready(self, *processes: Process) -> None:
        assert self.http is not None
        await asyncio.gather(*(p.wait_ready(self.http) for p in processes))

    # --- the pieces ----------------------------------------------------------------------------------

    async def start_nats(self) -> Process:
        argv = [find_binary(), "-a", LOOPBACK, "-p", str(self.nats_port), "-m", str(self.monitor_port), "-js",
                "-sd", str(self.dir / "js")]  # fmt: skip
        self.nats = await self._spawn("nats-server", argv, os.environ.copy(), None)
        deadline = time.monotonic() + 20
        while True:
            try:
                reader, writer = await asyncio.open_connection(LOOPBACK, self.nats_port)
                line = await asyncio.wait_for(reader.readline(), 1.0)
                writer.close()
                if line.startswith(b"INFO"):
                    return self.nats
            except (OSError, TimeoutError):
                pass
            if time.monotonic() > deadline or not self.nats.alive:
                raise RuntimeError(f"nats-server did not start:\n{self.nats.log_tail()}")
            await asyncio.sleep(0.05)

    async def nats_messages(self) -> dict[str, tuple[int, int]]:
        """Messages each client of nats-server (by connection name) has sent it and been sent so far,
        closed connections included: {name: (sent, received)}, from the server's monitoring port."""
        assert self.http is not None
        url = f"http://{LOOPBACK}:{self.monitor_port}/connz?state=all&limit=100000"
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
            connz = await response.json()
        totals: dict[str, tuple[int, int]] = {}
        for connection in connz.get("connections") or []:
            sent, received = totals.get(connection.get("name") or "unnamed", (0, 0))
            totals[connection.get("name") or "unnamed"] = (
                sent + connection["in_msgs"],
                received + connection["out_msgs"],
            )
        return totals

    async def start_emulator(self, *, webhook_url: str, pace: float, ring_timeout_s: float = 600.0) -> Process:
        argv = [sys.executable, "-m", "bench._emulator", "--port", str(self.emulator_port), "--pace", str(pace),
                "--webhook-url", webhook_url, "--ring-timeout-s", str(ring_timeout_s)]  # fmt: skip
        return await self._spawn("emulator", argv, self.env(), f"{self.emulator_url}/_emulator/healthz")

    async def start_service(self, service: str, name: str | None = None, **extra: str) -> Process:
        """``switchboard ingress|controller|session|console`` as a container would run it."""
        env = self.env(**extra)
        if service == "ingress":
            port = env.setdefault("INGRESS_PORT", str(free_port()))
            env.setdefault("INGRESS_HOST", LOOPBACK)
            env["HEALTH_PORT"] = "0"
            ready = f"http://{LOOPBACK}:{port}/readyz"
        elif service == "console":
            port = env.setdefault("CONSOLE_PORT", str(free_port()))
            env.setdefault("CONSOLE_HOST", LOOPBACK)
            ready = f"http://{LOOPBACK}:{port}/readyz"
        else:
            health = env.setdefault("HEALTH_PORT", str(free_port()))
            ready = f"http://{LOOPBACK}:{health}/readyz"
        argv = [sys.executable, "-m", "switchboard", service]
        return await self._spawn(name or service, argv, env, ready)

    async def start_python(self, name: str, module: str, args: list[str], ready_url: str | None) -> Process:
        return await self._spawn(name, [sys.executable, "-m", module, *args], self.env(), ready_url)

    async def stop(self) -> None:
        """Stop everything at once (graceful shutdown is not what is measured: 3 s, then SIGKILL)."""
        await asyncio.gather(*(p.stop(timeout_s=3.0) for p in self.processes if p is not self.nats))
        if self.nats is not None:
            await self.nats.stop()
        if self.http is not None:
            await self.http.close()
            self.http = None
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.proc.returncode})\n{p.log_tail(1500)}" for p in self.processes)
