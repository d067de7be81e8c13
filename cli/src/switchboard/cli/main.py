"""The `switchboard` command: run the system, one service, the emulator, place calls, follow the log."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from switchboard.cli import here
from switchboard.cli.args import parse_duration, parse_kind
from switchboard.emulator.errors import EmulatorError
from switchboard.emulator.scripts import SCRIPTS
from switchboard.shared import config as config_module
from switchboard.shared import logging as logging_module
from switchboard.shared import tracing
from switchboard.shared.config import Settings
from switchboard.shared.errors import ConfigError, SwitchboardError
from switchboard.shared.lifecycle import run as _run

if TYPE_CHECKING:
    from switchboard.cli.local import LocalSystem

SERVICES = ("ingress", "controller", "session", "projector", "console")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="everything local: place sample calls, show them live, summarise, exit")
    demo.add_argument("--pace", type=float, default=0.5, help="speed of the emulated callers (0 = no pauses)")
    demo.add_argument("--workers", type=int, default=2, help="session workers to run")

    up = sub.add_parser("up", help="everything local, stays up until Ctrl-C")
    up.add_argument("--workers", type=int, default=2, help="session workers to run")
    up.add_argument("--pace", type=float, default=1.0, help="speed of the emulated callers")
    up.add_argument("--data-dir", type=Path, default=here.DATA_DIR,
                    help="where the embedded NATS keeps the log and pushed policies (.switchboard)")  # fmt: skip

    sub.add_parser("ingress", help="run the webhook ingress (also `switchboard-ingress`)")
    sub.add_parser("controller", help="run the call controller (also `switchboard-controller`)")
    sub.add_parser("session", help="run a session worker (also `switchboard-session`)")
    sub.add_parser("console", help="run the operator console on CONSOLE_PORT (also `switchboard-console`)")
    sub.add_parser("secret", help="print a fresh webhook secret (whsec_…) for OPENAI_WEBHOOK_SECRET on local runs")

    emulator = sub.add_parser("emulator", help="run the OpenAI emulator on EMULATOR_PORT")
    emulator.add_argument("--webhook-url", help="where to POST webhooks (default: the local ingress)")
    emulator.add_argument("--pace", type=float, default=1.0, help="speed of the emulated callers")

    call = sub.add_parser("call", help="place a simulated call through the emulator at EMULATOR_PORT")
    call.add_argument("--from", dest="caller", required=True, help="caller number, e.g. +14155550101")
    call.add_argument("--to", dest="dialled", required=True, help="dialled number, e.g. +18005550100")
    call.add_argument("--header", action="append", default=[], metavar="NAME=VALUE", help="extra SIP header")
    call.add_argument("--script", default="default", choices=sorted(SCRIPTS), help="what the caller does")
    call.add_argument("--surface", choices=("realtime", "live", "both"), default="realtime",
                      help="the OpenAI surface it rings on (both: one SIP call, two ids)")  # fmt: skip
    call.add_argument("--wait", action="store_true", help="wait for the call to end and print its record")

    from switchboard.cli import live
    from switchboard.cli import log as logcli

    tail = sub.add_parser("tail", help="follow call events live")
    tail.add_argument("--call", help="only this call id")
    tail.add_argument(
        "--kind", action="append", default=[], type=parse_kind, help="only these kinds (globs: rt.*, ended)"
    )
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--since", type=parse_duration, help="start this far back, e.g. 15m")
    start.add_argument("--from-start", action="store_true", help="replay the whole log first")
    logcli.add_view_flags(tail, json_help="each selected event as its JSON envelope, deltas included")

    policy = sub.add_parser("policy", help="check a routing policy, re-decide past calls under it, push it")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    policy_check = policy_sub.add_parser("check", help="validate FILE: exit 1 with every problem")
    policy_check.add_argument("file", type=Path, metavar="FILE")
    whatif = policy_sub.add_parser("whatif", help="re-decide logged calls under FILE and show what changes")
    whatif.add_argument("file", type=Path, metavar="FILE")
    whatif.add_argument("--since", type=parse_duration, default=timedelta(hours=24), help="how far back (24h)")
    push = policy_sub.add_parser("push", help="validate FILE and make it the policy every controller runs")
    push.add_argument("file", type=Path, metavar="FILE")
    policy_sub.add_parser("show", help="print the policy in force (YAML), where it came from and its version")
    policy_sub.add_parser("reset", help="remove the pushed policy: controllers go back to their file or the built-in")
    for name, action in policy_sub.choices.items():
        if name != "check":  # check reads only FILE
            _lists_environment(action, "policy")

    logcli.add_parsers(sub)  # replay, calls, transcript, projector
    live.add_parsers(sub)  # say, send, hangup, transfer
    for name, command in sub.choices.items():
        reader = _READER.get(name, "log")
        if reader is not None:
            _lists_environment(command, reader)
    return parser


_READER: dict[str, str | None] = {
    "demo": "local", "up": "local", "ingress": "ingress", "controller": "controller", "session": "session",
    "projector": "projector", "console": "console", "emulator": "emulator", "call": "call", "secret": None,
    "policy": None,
}  # fmt: skip
"""Which variables (`config.READS`) each command's `--help` lists; the rest read the log ("log")."""


def _lists_environment(command: argparse.ArgumentParser, reader: str) -> None:
    command.epilog = config_module.environment_help(reader)
    command.formatter_class = argparse.RawDescriptionHelpFormatter


async def _up(settings: Settings, args: argparse.Namespace) -> None:
    import signal

    from switchboard.cli.local import LocalSystem

    system = LocalSystem(settings, data_dir=args.data_dir, workers=args.workers, pace=args.pace, nats_port=NATS_PORT)
    await system.start()
    data_dir: Path = args.data_dir  # absolute (`main`), as commands from elsewhere need it
    waiter = asyncio.create_task(system.wait())
    stop = asyncio.Event()
    stopper = asyncio.create_task(stop.wait())
    try:
        nats_url = system.settings.nats_url
        assert nats_url is not None and system.ingress is not None and system.ingress.bound_port is not None
        emulator_port = system.emulator.port if system.emulator is not None else None
        here.write(data_dir, here.Running(pid=os.getpid(), nats_url=nats_url, ingress_port=system.ingress.bound_port,
                                          emulator_port=emulator_port, policy_path=settings.policy_path))  # fmt: skip
        for line in _banner(system, data_dir, nats_url):
            print(line, flush=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        here.remove(data_dir, os.getpid())
        await system.stop()
        if waiter.done():
            waiter.result()
        waiter.cancel()


NATS_PORT = 4222
"""The embedded nats-server's port for `up` when it is free (NATS's own default), else any free one."""


def _banner(system: LocalSystem, data_dir: Path, nats_url: str) -> list[str]:
    """What `up` prints once everything is ready: where it runs and how to reach it."""
    lines = [f"Switchboard is up. NATS_URL={nats_url}"]
    if system.console_url is not None:
        lines.append(f"  Console at {system.console_url} (open it once to sign in)")
    if system.nats is not None and system.nats.port != NATS_PORT:
        lines.append(f"  NATS is on port {system.nats.port}: port {NATS_PORT} is taken")
    if system.emulator is not None:
        lines.append(f"  Emulator at {system.emulator.url}: place a call with "
                     "`switchboard call --from +14155550101 --to +18005550100`")  # fmt: skip
    if system.nats is not None:
        lines.append(f"  Data folder: {data_dir} (the log, and a policy pushed with `switchboard policy push`, "
                     "which persists across restarts until `switchboard policy reset`)")  # fmt: skip
    else:
        lines.append(f"  Data folder: {data_dir} (where this run is recorded; the log is in NATS)")
    origin = system.controller.policy_origin if system.controller is not None else None
    if origin is not None and origin.startswith("kv:"):
        lines.append(f"  A pushed policy is in force ({origin}), not SWITCHBOARD_POLICY's or the built-in one: "
                     "`switchboard policy show`, `switchboard policy reset`")  # fmt: skip
    if data_dir.name == here.DATA_DIR.name:
        lines.append(f"  Commands run from {data_dir.parent} find this system; elsewhere, export NATS_URL={nats_url}")
    else:  # commands look for a folder named .switchboard
        lines.append(f"  For other commands, export NATS_URL={nats_url}")
    lines.append("Follow events with `switchboard tail`; stop with Ctrl-C.")
    return lines


async def _emulator(settings: Settings, args: argparse.Namespace) -> None:
    import signal

    from switchboard.emulator.config import EmulatorConfig
    from switchboard.emulator.server import serve

    key = settings.require_api_key().reveal()
    secret = settings.require_webhook_secrets()[0].reveal()
    webhook_url = args.webhook_url or f"http://127.0.0.1:{settings.ingress_port}/webhooks/openai"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = EmulatorConfig(
        port=settings.emulator_port, api_key=key, webhook_url=webhook_url, webhook_secret=secret, pace=args.pace
    )
    await serve(config, stop)


async def _call(settings: Settings, args: argparse.Namespace) -> int:
    from switchboard.emulator.client import EmulatorClient

    headers = []
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--header takes NAME=VALUE, got {item!r}")
        headers.append({"name": name, "value": value})
    client = EmulatorClient(f"http://127.0.0.1:{settings.emulator_port}")
    try:
        call_id = await client.place_call(
            args.caller, args.dialled, sip_headers=headers or None, script=args.script, surface=args.surface
        )
        print(call_id, flush=True)
        if args.wait:
            record = await client.wait_ended(call_id, timeout_s=300)
            print(f"{call_id}: {record.state} ({record.end_reason})", flush=True)
    finally:
        await client.aclose()
    return 0


async def _tail(settings: Settings, args: argparse.Namespace) -> None:
    from switchboard.cli import log as logcli

    await logcli.tail(settings, args)  # the same read path as `replay` (shared.subscribe)


def _policy(settings: Settings, args: argparse.Namespace) -> int:
    from switchboard.controller import policy_commands

    path = getattr(args, "file", None)
    return policy_commands.run(args.policy_command, path, settings, since=getattr(args, "since", timedelta(0)))


def _find_up(settings: Settings) -> Settings:
    """`settings` completed from the `switchboard up` running from this folder, for what the environment
    leaves unset: the NATS URL (and with it the policy file), the emulator's port."""
    if settings.nats_url is not None and os.environ.get("EMULATOR_PORT"):
        return settings
    found = here.find(Path.cwd())
    if found is None:
        return settings
    changes: dict[str, object] = {}
    if settings.nats_url is None:
        changes["nats_url"] = found.nats_url
        if settings.policy_path is None and found.policy_path is not None:
            changes["policy_path"] = found.policy_path
    if not os.environ.get("EMULATOR_PORT") and found.emulator_port is not None:
        changes["emulator_port"] = found.emulator_port
    return msgspec.structs.replace(settings, **changes)


def _service(name: str) -> int:
    """Run one service exactly as its own console script (`switchboard-NAME`, its image's entrypoint) does."""
    if name == "ingress":
        from switchboard.ingress.main import main as service
    elif name == "controller":
        from switchboard.controller.main import main as service
    elif name == "session":
        from switchboard.session.main import main as service
    elif name == "console":
        from switchboard.console.main import main as service
    else:
        from switchboard.projector.main import main as service
    return service([])


def _version() -> str:
    try:
        return importlib.metadata.version("switchboard")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in SERVICES:
        return _service(args.command)
    if args.command == "secret":
        from switchboard.cli.local import new_webhook_secret

        print(new_webhook_secret())
        return 0
    try:
        settings = config_module.load()
        level = settings.log_level
        if args.command == "demo" and "LOG_LEVEL" not in os.environ:
            level = "warning"  # the live view is the demo's output; logs would drown it
        logging_module.configure(fmt=settings.log_format, level=level)
        if args.command not in ("demo", "up", "emulator"):
            settings = _find_up(settings)
        if args.command in ("demo", "up"):  # every service in this one process: one traced service
            tracing.configure(args.command)
        if args.command == "demo":
            from switchboard.cli.local import run_demo

            with tempfile.TemporaryDirectory(prefix="switchboard-demo-") as tmp:
                return _run(run_demo(settings, data_dir=Path(tmp), pace=args.pace, workers=args.workers))
        if args.command == "up":
            args.data_dir = args.data_dir.resolve()
            if settings.policy_path is not None:  # recorded for commands run from elsewhere in the folder
                settings = msgspec.structs.replace(settings, policy_path=os.path.abspath(settings.policy_path))
            _run(_up(settings, args))
        elif args.command == "emulator":
            _run(_emulator(settings, args))
        elif args.command == "call":
            return _run(_call(settings, args))
        elif args.command == "tail":
            _run(_tail(settings, args))
        elif args.command in ("replay", "calls", "transcript"):
            from switchboard.cli import log as logcli

            return _run(logcli.run(settings, args))
        elif args.command == "policy":
            return _policy(settings, args)
        elif args.command in ("say", "send", "hangup", "transfer"):
            from switchboard.cli import live

            return _run(live.run(settings, args))
    except ConfigError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    except (SwitchboardError, EmulatorError) as exc:  # the bus, OpenAI or the emulator said no: say what
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        tracing.shutdown()  # what is still buffered goes out (nothing when tracing is off)
    return 0


if __name__ == "__main__":
    sys.exit(main())
