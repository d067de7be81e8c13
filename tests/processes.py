"""Run `switchboard` subcommands as real subprocesses and read their output as it comes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "switchboard"]


class Proc:
    """A `switchboard` subprocess whose stdout lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    async def wait_for_line(self, fragment: str, timeout_s: float = 15.0) -> str:
        async with asyncio.timeout(timeout_s):
            while True:
                found = next((line for line in self.lines if fragment in line), None)
                if found is not None:
                    return found
                await asyncio.sleep(0.02)

    async def wait(self, timeout_s: float = 30.0) -> int:
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            await self._reader
        return code

    async def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait(timeout_s)

    async def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.wait(5)


async def spawn(*args: str, env: dict[str, str], cwd: Path | None = None) -> Proc:
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**os.environ, "LOG_LEVEL": "warning", **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return Proc(proc)
