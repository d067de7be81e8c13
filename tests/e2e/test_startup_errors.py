"""A service that cannot start says why in one line naming the fix, exits non-zero, and prints no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from switchboard.cli.local import new_webhook_secret
from switchboard.cli.natsserver import NatsServer, free_port
from tests.processes import CLI


async def _run(*args: str, env: dict[str, str], timeout_s: float = 30.0) -> tuple[int, list[str]]:
    """Run a `switchboard` command to its end: its exit code and its stderr lines."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env={**os.environ, "LOG_LEVEL": "warning", **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, [line for line in err.decode().splitlines() if line.strip()]


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    """A port another socket is listening on, for as long as the block runs."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _env(nats_url: str) -> dict[str, str]:
    return {"NATS_URL": nats_url, "OPENAI_API_KEY": "sk-test", "OPENAI_WEBHOOK_SECRET": new_webhook_secret()}


@pytest.mark.parametrize(("service", "variable"), [("ingress", "INGRESS_PORT"), ("controller", "HEALTH_PORT")])
async def test_a_port_in_use_is_one_line_naming_the_variable_to_set(
    nats_server: NatsServer, service: str, variable: str
) -> None:
    """The port a service listens on is taken: exit 2 and ``port N (VAR) is in use: set VAR to a free port``."""
    with _taken_port() as port:
        code, lines = await _run(service, env={**_env(nats_server.url), variable: str(port)})
    assert code == 2
    assert lines == [f"switchboard-{service}: port {port} ({variable}) is in use: set {variable} to a free port"]


@pytest.mark.parametrize("service", ["ingress", "controller", "session", "projector"])
async def test_nats_without_jetstream_is_one_line_saying_to_start_it_with_js(tmp_path: Path, service: str) -> None:
    """Against a nats-server started without -js, each service exits 2 saying so, instead of crashing."""
    server = NatsServer(tmp_path / "nats", jetstream=False)
    await server.start()
    try:
        code, lines = await _run(service, env=_env(server.url))
    finally:
        await server.stop()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].endswith("has no JetStream: start nats-server with -js (or enable JetStream in its configuration)")
    assert "Traceback" not in lines[0]


def _processes_using(path: Path) -> list[int]:
    """The pids of running processes whose command line names `path` (an embedded nats-server's store)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmdline and "nats-server" in cmdline:
                found.append(int(proc.name))
    return found


@pytest.mark.parametrize(("command", "variable"), [("up", "INGRESS_PORT"), ("up", "EMULATOR_PORT")])
async def test_up_with_a_port_in_use_says_which_and_leaves_no_nats_server_behind(
    tmp_path: Path, command: str, variable: str
) -> None:
    """`up` whose ingress or emulator port is taken: one line naming the variable, exit 2, no orphan nats-server."""
    with _taken_port() as port:
        env = {"NATS_URL": "", "OPENAI_API_KEY": "", "OPENAI_WEBHOOK_SECRET": "", variable: str(port)}
        code, lines = await _run(command, "--data-dir", str(tmp_path / "data"), env=env)
    assert code == 2
    assert lines == [f"switchboard: port {port} ({variable}) is in use: set {variable} to a free port"]
    assert not any("Traceback" in line for line in lines)
    assert _processes_using(tmp_path / "data") == []


@pytest.mark.parametrize("service", ["controller", "session"])
async def test_an_unreachable_openai_base_url_is_one_warning_at_start(nats_server: NatsServer, service: str) -> None:
    """OPENAI_BASE_URL answers nothing: the service starts anyway and warns once, naming the URL it tried."""
    base = f"http://127.0.0.1:{free_port()}/v1"
    env = {**_env(nats_server.url), "OPENAI_BASE_URL": base, "SWITCHBOARD_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        *CLI, service, env={**os.environ, "LOG_LEVEL": "warning", **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
    finally:
        proc.terminate()
        _, rest = await asyncio.wait_for(proc.communicate(), 20)
    warning = json.loads(line)
    assert warning["event"] == "openai_unusable" and warning["level"] == "warning"
    assert warning["problem"].startswith(f"cannot reach OpenAI: GET {base}/models: ConnectError")
    assert b"openai_unusable" not in rest and proc.returncode == 0
