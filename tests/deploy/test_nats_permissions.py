"""The NATS users in deploy/nats/values.yaml, on a real nats-server: enough for each service, no more.

The server gets the values' `config.merge` (accounts, users, permissions) exactly as the chart renders it:
JSON, with `"<< $VAR >>"` unquoted into an environment reference that the server resolves.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
import yaml

from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.server import Emulator
from switchboard.local import new_webhook_secret
from switchboard.services.controller.policy import load_policy
from switchboard.services.controller.service import Controller
from switchboard.services.ingress.app import WEBHOOK_PATH, Ingress
from switchboard.services.session.worker import SessionWorker
from switchboard.shared.bus import Bus
from switchboard.shared.config import Secret, Settings
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.events import CloudEvent
from switchboard.shared.lifecycle import Service
from switchboard.shared.natsserver import find_binary, free_port
from tests.deploy.manifests import BASE, NATS_VALUES

_CHART_RAW = re.compile(r'"<<\s+(.*?)\s+>>"')  # the chart's nats.formatConfig


@dataclass
class PermissionedNats:
    port: int
    passwords: dict[str, str]
    log: Path

    def url(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def violations(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if "Violation" in line]


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nats-server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                if sock.recv(4).startswith(b"INFO"):
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nats-server did not start")


@pytest.fixture
def permissioned_nats(tmp_path: Path) -> Iterator[PermissionedNats]:
    """A nats-server with JetStream and the values' accounts, users and permissions; a password per user."""
    merge = yaml.safe_load(NATS_VALUES.read_text())["config"]["merge"]
    port = free_port()
    config = {"port": port, "host": "127.0.0.1", "jetstream": {"store_dir": str(tmp_path / "js")}, **merge}
    env: dict[str, str] = {}
    passwords: dict[str, str] = {}
    for user in merge["accounts"]["SWITCHBOARD"]["users"]:
        variable = re.fullmatch(r"<< \$(\w+) >>", user["password"])
        assert variable is not None
        passwords[user["user"]] = env[variable.group(1)] = secrets.token_hex(16)
    conf = tmp_path / "nats.conf"
    conf.write_text(_CHART_RAW.sub(r"\1", json.dumps(config, indent=2)))
    log = tmp_path / "nats.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([find_binary(), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_ready(port, proc, log)
        yield PermissionedNats(port, passwords, log)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def _wait_for(bus: Bus, call_id: str, kind: str, timeout_s: float) -> list[CloudEvent]:
    seen: list[CloudEvent] = []

    async def follow() -> None:
        async for event in bus.follow(f"calls.{call_id}.>", from_start=True):
            seen.append(event)
            if event.kind == kind:
                return

    await asyncio.wait_for(follow(), timeout_s)
    return seen


@dataclass
class FakeOpenAI:
    emulator: Emulator
    api_key: Secret
    webhook_secret: Secret
    ingress_port: int  # where the emulator delivers webhooks


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    """The OpenAI stand-in, its webhooks aimed at a port the ingress will bind."""
    api_key, webhook_secret = Secret("sk-emulator-" + secrets.token_hex(8)), Secret(new_webhook_secret())
    ingress_port = free_port()
    emulator = Emulator(
        EmulatorConfig(
            port=0,
            api_key=api_key.reveal(),
            webhook_url=f"http://127.0.0.1:{ingress_port}{WEBHOOK_PATH}",
            webhook_secret=webhook_secret.reveal(),
            pace=0.5,  # long enough (about 3 s) for the session worker to renew its lease
        )
    )
    await emulator.start()
    try:
        yield FakeOpenAI(emulator, api_key, webhook_secret, ingress_port)
    finally:
        await emulator.shutdown()


async def test_each_service_carries_a_call_as_its_own_nats_user(
    permissioned_nats: PermissionedNats, openai: FakeOpenAI
) -> None:
    """Ingress, controller and a session worker, each as its own least-privilege user, take a call to its end."""
    common = Settings(
        openai_api_key=openai.api_key,
        webhook_secrets=(openai.webhook_secret,),
        openai_base_url=openai.emulator.base_url,
        health_port=None,
    )

    def as_user(user: str, **extra: object) -> Settings:
        return msgspec.structs.replace(common, nats_url=permissioned_nats.url(user), **extra)

    ingress = Ingress(as_user("ingress", ingress_host="127.0.0.1", ingress_port=openai.ingress_port))
    controller = Controller(as_user("controller"), load_policy(BASE / "policy.yaml"))
    worker = SessionWorker(as_user("session"), worker="w1")
    services: list[Service] = [ingress, controller, worker]
    await ingress.start()  # listening (and its bus connected) before the first webhook
    tasks = [asyncio.create_task(s.run()) for s in services]
    apps = await Bus.connect(permissioned_nats.url("apps"), name="apps", give_up_after_s=5)
    try:
        call_id = openai.emulator.place_call("+14155550101", "+18005550100")
        kinds = [e.kind for e in await _wait_for(apps, call_id, "ended", timeout_s=30)]
        assert {"incoming", "decided", "accepted", "session.claimed", "rt.session.created"} <= set(kinds), kinds
        assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
    finally:
        await apps.close()
        await asyncio.gather(*(s.shutdown(timedelta(seconds=5)) for s in services), return_exceptions=True)
        await asyncio.wait(tasks, timeout=10)
        for task in tasks:
            task.cancel()
    assert permissioned_nats.violations() == [], "a service was refused a subject it uses"


@pytest.mark.parametrize(
    ("user", "kind"),
    [("ingress", "decided"), ("controller", "incoming"), ("session", "decided"), ("apps", "incoming")],
)
async def test_a_user_cannot_write_another_services_events(
    permissioned_nats: PermissionedNats, user: str, kind: str
) -> None:
    """A service's user is refused a kind of event that another service writes; the server logs the violation."""
    bus = await Bus.connect(permissioned_nats.url(user), name=user, give_up_after_s=5)
    try:
        with pytest.raises(BusUnavailable):
            await bus.publish(bus.event("rtc_forged", kind, {}), msg_id=f"forged-{user}", timeout_s=1.0)
    finally:
        await bus.close()
    assert any(f"calls.rtc_forged.{kind}" in line for line in permissioned_nats.violations())


async def test_an_app_replays_the_log_with_the_fast_reader_as_its_own_user(
    permissioned_nats: PermissionedNats,
) -> None:
    """`replay` (its own NATS connection) authenticates with the credentials from NATS_URL and reads the log."""
    from switchboard.shared.subscribe import Selection, replay

    writer = await Bus.connect(permissioned_nats.url("controller"), name="writer", give_up_after_s=5)
    apps = await Bus.connect(permissioned_nats.url("apps"), name="apps", give_up_after_s=5)
    try:
        await writer.ensure_stream()
        for i in range(3):
            await writer.record("rtc_replayed", "decided", {"action": "reject", "rule": f"r{i}", "reason": "x"},
                                msg_id=f"rtc_replayed:{i}")  # fmt: skip
        seen = [event async for event in replay(apps, Selection(call="rtc_replayed"))]
        assert [e.kind for e in seen] == ["decided"] * 3
    finally:
        await apps.close()
        await writer.close()
    assert permissioned_nats.violations() == []
