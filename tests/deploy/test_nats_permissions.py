"""The NATS users in deploy/nats/values.yaml, on a real nats-server: enough for each service, no more.

The server gets the values' `config.merge` (accounts, users, permissions) exactly as the chart renders it:
JSON, with `"<< $VAR >>"` unquoted into an environment reference that the server resolves.
"""

from __future__ import annotations

import argparse
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

import aiohttp
import httpx
import msgspec
import nats.errors
import pytest
import yaml

from switchboard.cli import log as logcli
from switchboard.cli.local import new_webhook_secret
from switchboard.cli.natsserver import find_binary, free_port
from switchboard.console.service import Console
from switchboard.controller.policy import load_policy
from switchboard.controller.service import Controller
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.server import Emulator
from switchboard.ingress.app import WEBHOOK_PATH, Ingress
from switchboard.projector.service import Projector
from switchboard.session.worker import SessionWorker
from switchboard.shared import subscribe
from switchboard.shared.bus import Bus
from switchboard.shared.config import Secret, Settings
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.events import CloudEvent
from switchboard.shared.lifecycle import Service
from switchboard.shared.projections import CALL_RECORDS, CALL_STATE, PROJECTIONS, fold
from switchboard.shared.projections.store import ProjectionStore
from switchboard.shared.subscribe import Selection, replay
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
        async for logged in subscribe.follow(bus, Selection(call=call_id), from_start=True):
            assert logged.envelope is not None
            seen.append(logged.envelope)
            if logged.kind == kind:
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


async def _projected(store: ProjectionStore, call_id: str) -> dict[str, object]:
    """The call's stored states, by projection."""
    return {p.name: (await store.get(p, call_id))[0] for p in PROJECTIONS}


async def _folded(log_reader: Bus, call_id: str) -> dict[str, object]:
    """The call's states as the pure evolve functions make them from its events in the log."""
    events = [e async for e in replay(log_reader, Selection(call=call_id))]
    return {p.name: fold(p, events).get(call_id) for p in PROJECTIONS}


async def _wait_projected(store: ProjectionStore, apps: Bus, call_id: str, timeout_s: float) -> dict[str, object]:
    """The stored states once they are what the log folds to (the projector has caught up)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        stored, folded = await _projected(store, call_id), await _folded(apps, call_id)
        if stored == folded or asyncio.get_running_loop().time() > deadline:
            assert stored == folded, "the projections are not what the log folds to"
            return stored
        await asyncio.sleep(0.1)


async def _cli(settings: Settings, capsys: pytest.CaptureFixture[str], command: str, **args: object) -> str:
    """`switchboard <command>` (as the user in settings' NATS_URL), its standard output."""
    capsys.readouterr()
    assert await logcli.run(settings, argparse.Namespace(command=command, **args)) == 0
    return capsys.readouterr().out


async def _ready(port: int) -> bool:
    async with httpx.AsyncClient(timeout=5) as http:
        return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200


async def test_each_service_carries_a_call_as_its_own_nats_user(
    permissioned_nats: PermissionedNats, openai: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ingress, controller and a session worker, each as its own least-privilege user, take a call to its end;
    the projector, as its own, projects it into KV; `calls` and `transcript` read it as apps; an
    operator's `replay --rebuild`, as the projector user, rebuilds the same states; the console, as its own,
    shows the call."""
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
    # The manifests probe the projector on HEALTH_PORT.
    health_port = free_port()
    projector = Projector(as_user("projector", health_port=health_port))
    services: list[Service] = [ingress, controller, worker, projector]
    await ingress.start()  # listening (and its bus connected) before the first webhook
    tasks = [asyncio.create_task(s.run()) for s in services]
    apps = await Bus.connect(permissioned_nats.url("apps"), name="apps", give_up_after_s=5)
    try:
        call_id = openai.emulator.place_call("+14155550101", "+18005550100")
        kinds = [e.kind for e in await _wait_for(apps, call_id, "ended", timeout_s=30)]
        assert {"incoming", "decided", "accepted", "session.claimed", "rt.session.created"} <= set(kinds), kinds

        # The projector (it creates the buckets: apps may not) holds the finished call's state.
        deadline = asyncio.get_running_loop().time() + 10
        while projector.applied == 0:
            assert asyncio.get_running_loop().time() < deadline, "the projector applied nothing"
            await asyncio.sleep(0.05)
        store = await ProjectionStore(apps).open()
        states = await _wait_projected(store, apps, call_id, timeout_s=10)
        state, record = states[CALL_STATE.name], states[CALL_RECORDS.name]
        assert state is not None and state.phase == "ended", state  # type: ignore[attr-defined]
        assert record is not None and record.ended_at and record.outcome, record  # type: ignore[attr-defined]
        assert await _ready(health_port), "the projector's /readyz is not 200"

        # An operator's reads, as apps.
        reader = as_user("apps")
        calls = await _cli(reader, capsys, "calls", limit=20, live=False, json=True)
        listed = [json.loads(line) for line in calls.splitlines()]
        assert [(c["state"]["call_id"], c["state"]["phase"]) for c in listed] == [(call_id, "ended")]
        transcript = json.loads(await _cli(reader, capsys, "transcript", call_id=call_id, json=True))
        assert transcript["call_id"] == call_id

        # The operator's rebuild, as the projector user, while the projector runs: it purges the buckets
        # and writes back what the log folds to.
        rebuilt = await _cli(
            as_user("projector"), capsys, "replay",
            rebuild=True, call=None, kind=[], since=None, until=None, json=False, progress=False,
        )  # fmt: skip
        assert rebuilt.startswith("rebuilt call_state, call_records and transcripts"), rebuilt
        rebuilt_state = (await _wait_projected(store, apps, call_id, timeout_s=5))[CALL_STATE.name]
        assert rebuilt_state is not None and rebuilt_state.phase == "ended"  # type: ignore[attr-defined]

        # The console, as its own user, starts from the projections and the log and shows the call.
        console = Console(as_user("console", console_auth="proxy", console_host="127.0.0.1", console_port=0))
        await console.start()
        console_task = asyncio.create_task(console.run())
        try:
            async with aiohttp.ClientSession() as http:
                who = {"X-Auth-Request-Email": "ops@example.com"}
                async with http.get(f"{console.url}calls/{call_id}", headers=who) as r:
                    assert r.status == 200 and 'data-kind="ended"' in await r.text()
                async with http.get(console.url, headers=who) as r:
                    assert r.status == 200
        finally:
            await console.shutdown()
            await asyncio.wait_for(console_task, 15)
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
    [
        ("ingress", "decided"),
        ("controller", "incoming"),
        ("session", "decided"),
        ("apps", "incoming"),
        ("projector", "ended"),
    ],
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


@pytest.mark.parametrize("user", ["ingress", "controller", "session", "apps"])
async def test_only_the_projector_writes_the_projections(permissioned_nats: PermissionedNats, user: str) -> None:
    """No other user may create, write or purge the projections' buckets (apps reads them: see above)."""
    bus = await Bus.connect(permissioned_nats.url(user), name=user, give_up_after_s=5)
    subjects = []
    for projection in PROJECTIONS:
        subjects += [
            f"$KV.{projection.name}.rtc_forged",
            f"$JS.API.STREAM.CREATE.KV_{projection.name}",
            f"$JS.API.STREAM.PURGE.KV_{projection.name}",
        ]

    async def refused(subject: str) -> None:
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await bus.nc.request(subject, b"{}", timeout=0.5)

    try:
        await asyncio.gather(*(refused(subject) for subject in subjects))
    finally:
        await bus.close()
    violations = "\n".join(permissioned_nats.violations())
    assert all(subject in violations for subject in subjects), violations


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
