"""The whole system on one machine, for `switchboard up` and `switchboard demo`.

Embedded defaults: a nats-server from the wheel unless ``NATS_URL`` is set; the OpenAI emulator (with a
fresh key and webhook secret) unless ``OPENAI_API_KEY`` is set; then the ingress, the controller,
session workers and the projector, each with its own bus connection, as they would run in separate
containers.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from switchboard.cli.natsserver import NatsServer, port_is_free
from switchboard.cli.render import highlight, render
from switchboard.cli.sample_tools import SampleTools
from switchboard.console.service import Console
from switchboard.controller.policy import load_policy
from switchboard.controller.service import Controller
from switchboard.emulator.config import EmulatorConfig
from switchboard.emulator.server import Emulator
from switchboard.ingress.app import WEBHOOK_PATH, Ingress
from switchboard.projector.service import Projector
from switchboard.session.worker import SessionWorker
from switchboard.shared.bus import Bus
from switchboard.shared.config import Secret, Settings
from switchboard.shared.errors import ConfigError
from switchboard.shared.events import CloudEvent
from switchboard.shared.lifecycle import Service
from switchboard.shared.logging import get_logger
from switchboard.shared.subscribe import follow

log = get_logger(__name__)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class LocalSystem:
    """NATS + (emulator) + ingress + controller + `workers` session workers + the projector and the sample
    tool, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        *,
        data_dir: Path,
        workers: int = 2,
        pace: float = 1.0,
        nats_port: int | None = None,
        sample_tools: bool = True,
    ) -> None:
        self._base = settings
        self._data_dir = data_dir
        self._nats_port = nats_port  # the embedded nats-server's, when free (else any free port)
        self._sample_tools = sample_tools  # serve lookup_order (tests of tools serve their own)
        self._workers = workers
        self._pace = pace
        self.settings = settings
        self.nats: NatsServer | None = None
        self.emulator: Emulator | None = None
        self.ingress: Ingress | None = None
        self.controller: Controller | None = None
        self.session_workers: list[SessionWorker] = []
        self.projector: Projector | None = None
        self.tools: SampleTools | None = None
        self.console: Console | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start everything; if any part fails, stop what was started (the nats-server included) and raise."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        base = self._base
        load_policy(base.policy_path)  # fail before starting anything if it is invalid
        nats_url = base.nats_url
        if nats_url is None:
            nats_url = await self._start_nats()
            log.info("nats_started", url=nats_url)
        use_emulator = base.openai_api_key is None
        api_key = base.openai_api_key or Secret("sk-emulator-" + secrets.token_hex(16))
        webhook_secrets = base.webhook_secrets
        if not webhook_secrets:
            if not use_emulator:
                raise ConfigError("OPENAI_WEBHOOK_SECRET is required when OPENAI_API_KEY is set")
            webhook_secrets = (Secret(new_webhook_secret()),)
        # One process: the ingress serves health on its own port; the others' side doors would collide.
        # The console listens on this machine only, signed in to with the given token or a fresh one.
        console_token = base.console_token or Secret(secrets.token_urlsafe(24))
        self.settings = msgspec.structs.replace(
            base, nats_url=nats_url, openai_api_key=api_key, webhook_secrets=webhook_secrets, health_port=None,
            console_token=console_token, console_auth="token", console_host="127.0.0.1",
        )  # fmt: skip
        self.ingress = Ingress(self.settings)
        await self.ingress.start()
        if use_emulator:
            self.emulator = Emulator(
                EmulatorConfig(
                    port=base.emulator_port,
                    api_key=api_key.reveal(),
                    webhook_url=f"http://127.0.0.1:{self.ingress.bound_port}{WEBHOOK_PATH}",
                    webhook_secret=webhook_secrets[0].reveal(),
                    pace=self._pace,
                )
            )
            try:
                await self.emulator.start()
            except OSError as exc:
                why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror})"
                raise ConfigError(
                    f"port {base.emulator_port} (EMULATOR_PORT) {why}: set EMULATOR_PORT to a free port"
                ) from None
            self.settings = msgspec.structs.replace(self.settings, openai_base_url=self.emulator.base_url)
            log.info("emulator_started", url=self.emulator.url)
        self.controller = Controller(self.settings)  # reloads SWITCHBOARD_POLICY when it changes
        self.session_workers = [SessionWorker(self.settings, worker=f"worker-{i + 1}") for i in range(self._workers)]
        self.projector = Projector(self.settings)  # keeps call_state/call_records/transcripts for `calls`
        self.tools = SampleTools(self.settings) if self._sample_tools else None  # the built-in policy's lookup_order
        self.console = Console(self.settings)
        await self.console.start()  # binds CONSOLE_PORT now: a taken port stops `up` with one line
        for service in self._services():
            self._tasks.append(asyncio.create_task(service.run(), name=service.name))
        await self._wait_ready()

    def _services(self) -> list[Service]:
        """The services started so far, in start order."""
        parts = (self.ingress, self.controller, *self.session_workers, self.projector, self.tools, self.console)
        return [s for s in parts if s is not None]

    async def _start_nats(self) -> str:
        """Start the embedded nats-server on the preferred port if it is free, else on any free one."""
        if self._nats_port is not None and port_is_free(self._nats_port):
            self.nats = NatsServer(self._data_dir / "nats", port=self._nats_port)
            try:
                await self.nats.start()
                return self.nats.url
            except ConfigError:  # taken since it was looked at: any free port will do
                await self.nats.stop()
        self.nats = NatsServer(self._data_dir / "nats")
        await self.nats.start()
        return self.nats.url

    async def _wait_ready(self, timeout_s: float = 30.0) -> None:
        """Return once the ingress can store webhooks and the controller and every worker take work;
        raise if one of them fails first."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        services = [s for s in self._services() if s is not self.ingress]  # the ingress answers not_ready()
        while not all(getattr(s, "ready", False) for s in services) or (
            self.ingress is not None and await self.ingress.not_ready() is not None
        ):
            for task in self._tasks:
                if task.done():
                    task.result()  # re-raises a failure at start-up
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"services not ready within {timeout_s:g} s")
            await asyncio.sleep(0.01)

    @property
    def console_url(self) -> str | None:
        """The console's sign-in URL (with the token), once it listens."""
        if self.console is None or self.console.bound_port is None or self.settings.console_token is None:
            return None
        return f"{self.console.url}?token={self.settings.console_token.reveal()}"

    async def wait(self) -> None:
        """Return when any service stops on its own (an error), re-raising its failure."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()

    async def stop(self, grace: timedelta = timedelta(seconds=5)) -> None:
        await asyncio.gather(*(s.shutdown(grace) for s in self._services()), return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace.total_seconds() + 5)
        for task in self._tasks:
            task.cancel()
        if self.emulator is not None:
            await self.emulator.shutdown()
        if self.nats is not None:
            await self.nats.stop()


# --- demo ---------------------------------------------------------------------------------------------


class SampleCall(msgspec.Struct, frozen=True):
    caller: str
    dialled: str
    expect: str  # the decision the built-in policy should make
    script: str = "default"


SAMPLE_CALLS = (
    SampleCall("+14155550101", "+18005550100", "accept"),
    SampleCall("+19005550000", "+18005550100", "reject"),
    SampleCall("+14155550102", "+18005550199", "refer"),
)


class CallSummary(msgspec.Struct):
    call_id: str
    caller: str = "?"
    dialled: str = "?"
    rule: str = "-"
    action: str = "-"
    outcome: str = "-"
    ended: str = "-"
    duration_s: float = 0.0
    events: int = 0
    turns: int = 0


def _observe(summary: CallSummary, event: CloudEvent) -> None:
    data = event.data if isinstance(event.data, dict) else {}
    summary.events += 1
    if event.kind == "decided":
        summary.rule, summary.action = str(data.get("rule")), str(data.get("action"))
    elif event.kind == "accepted":
        summary.outcome = f"accepted ({data.get('agent')})"
    elif event.kind == "rejected":
        summary.outcome = f"rejected {data.get('status_code')}"
    elif event.kind == "referred":
        summary.outcome = f"referred {data.get('target_uri')}"
    elif event.kind == "failed":
        summary.outcome = f"failed {data.get('code') or data.get('stage')}"
    elif event.kind == "ended":
        summary.ended, summary.duration_s = str(data.get("reason")), float(data.get("duration_s", 0.0))
    elif event.kind in (
        "rt.conversation.item.input_audio_transcription.completed",
        "rt.response.output_audio_transcript.done",
    ):
        summary.turns += 1


def summary_table(rows: Sequence[CallSummary]) -> str:
    headers = ("call", "from", "to", "rule", "decision", "outcome", "ended", "secs", "events", "turns")
    cells = [
        (r.call_id, r.caller, r.dialled, r.rule, r.action, r.outcome, r.ended, f"{r.duration_s:.1f}", str(r.events),
         str(r.turns))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


async def run_demo(
    settings: Settings, *, data_dir: Path, pace: float, workers: int = 2, timeout_s: float = 90.0
) -> int:
    """Start everything, place the sample calls, show their events live, print a summary; 0 if all went as expected."""
    if settings.openai_api_key is not None:
        raise ConfigError(
            "demo places simulated calls through the emulator: unset OPENAI_API_KEY, "
            "or run `switchboard up` to take real calls"
        )
    colour = sys.stdout.isatty()
    system = LocalSystem(settings, data_dir=data_dir, workers=workers, pace=pace)
    started = datetime.now(UTC)
    await system.start()
    assert system.emulator is not None and system.settings.nats_url is not None
    watcher = await Bus.connect(system.settings.nats_url, name="demo", give_up_after_s=10)
    summaries: dict[str, CallSummary] = {}
    ended: set[str] = set()
    all_ended = asyncio.Event()
    expected: dict[str, SampleCall] = {}

    async def show() -> None:
        async for logged in follow(watcher, since=started):
            event = logged.envelope
            if event is None:  # not a CloudEvent: nothing the demo shows
                continue
            summary = summaries.setdefault(event.call_id, CallSummary(call_id=event.call_id))
            _observe(summary, event)
            if highlight(event):
                print(render(event, colour=colour), flush=True)
            if event.kind == "ended":
                ended.add(event.call_id)
                if expected and set(expected) <= ended:
                    all_ended.set()

    printer = asyncio.create_task(show())
    t0 = time.monotonic()
    try:
        print(f"Switchboard demo: NATS {system.settings.nats_url}, OpenAI emulator {system.emulator.url}", flush=True)
        print(f"Console: {system.console_url}\n", flush=True)
        for sample in SAMPLE_CALLS:
            call_id = system.emulator.place_call(sample.caller, sample.dialled, script=sample.script)
            expected[call_id] = sample
            summaries.setdefault(call_id, CallSummary(call_id=call_id, caller=sample.caller, dialled=sample.dialled))
        try:
            await asyncio.wait_for(all_ended.wait(), timeout_s)
        except TimeoutError:
            print(f"\nnot every call ended within {timeout_s:.0f} s", flush=True)
    finally:
        printer.cancel()
        await asyncio.gather(printer, return_exceptions=True)
        await watcher.close()
        await system.stop()
    rows = []
    ok = True
    for call_id, sample in expected.items():
        row = summaries[call_id]
        row.caller, row.dialled = sample.caller, sample.dialled
        rows.append(row)
        ok = ok and row.action == sample.expect and call_id in ended
    print(f"\n{summary_table(rows)}\n", flush=True)
    print(f"{len(rows)} calls in {time.monotonic() - t0:.1f} s: " + ("all as expected" if ok else "NOT as expected"))
    return 0 if ok else 1
