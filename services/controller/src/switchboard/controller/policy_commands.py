"""``switchboard policy check|whatif|push``: validate a policy file, re-decide past calls under it, publish it.

- ``check FILE`` prints ``ok: N rules, M agents`` (exit 0) or every problem (exit 1). No NATS needed.
- ``whatif FILE --since 24h`` reads ``incoming``/``decided``/``ended`` events from the log, from an hour
  before ``--since`` (to rebuild the live counts capacity rules need) up to the stream's end as it was when
  the command started, re-decides each call since ``--since`` with `whatif.redecide`, and prints the
  changed decisions and a count. Nothing is sent to OpenAI or written to the log.
- ``push FILE`` validates FILE (exit 1 if invalid, nothing stored) and puts it in the KV key every
  controller watches (`policy_source`).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors

from switchboard.controller.policy import Policy, PolicyError, load_policy, parse_policy
from switchboard.controller.policy_source import POLICY_BUCKET, POLICY_KEY, push_policy
from switchboard.controller.whatif import KINDS, redecide, render
from switchboard.shared import events
from switchboard.shared.bus import ONE_SHOT_CONNECT_S, Bus
from switchboard.shared.config import Settings
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger
from switchboard.shared.subscribe import Selection, replay

log = get_logger(__name__)

WARMUP = timedelta(hours=1)
"""How far before ``--since`` events are read, so calls already live then count towards capacity."""

_STREAM_INFO_TIMEOUT_S = 4.0


def _print_problems(error: PolicyError) -> None:
    for problem in error.problems:
        print(problem, file=sys.stderr)


def check(path: Path) -> int:
    """Validate `path`: ``ok: …`` and 0, or the problems on stderr and 1."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        _print_problems(exc)
        return 1
    print(f"ok: {len(policy.rules)} rules, {len(policy.agents)} agents")
    return 0


async def read_log(bus: Bus, *, since: datetime, kinds: tuple[str, ...] = KINDS) -> list[events.CloudEvent]:
    """The events of `kinds` stored from `since` up to the stream's end when called, in stream order.

    An ephemeral consumer that never waits for new events: reading stops at the last sequence the stream
    held at the start, or when the consumer has nothing pending.
    """
    try:
        info = await asyncio.wait_for(bus.js.stream_info(events.STREAM), _STREAM_INFO_TIMEOUT_S)
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"cannot read stream {events.STREAM}: {type(exc).__name__}") from exc
    if not info.state.messages:
        return []
    found: list[events.CloudEvent] = []
    async for event in replay(bus, Selection(kinds=kinds), since=since, stop_seq=info.state.last_seq):
        if event.envelope is not None:  # not a CloudEvent: `replay` has logged it
            found.append(event.envelope)
    return found


async def whatif(bus: Bus, policy: Policy, *, name: str, since: datetime) -> None:
    """Print how decisions since `since` would change under `policy`."""
    log_events = await read_log(bus, since=since - WARMUP)
    print(render(redecide(policy, log_events, since=since), policy_name=name))


async def push(bus: Bus, text: str, *, name: str) -> None:
    """Store `text` (already validated) as the policy every controller watches."""
    version, revision = await push_policy(bus, text, source=name)
    print(f"pushed {name} (version {version}) to {POLICY_BUCKET}/{POLICY_KEY} revision {revision}")


def run(command: str, path: Path, settings: Settings, *, since: timedelta = timedelta(hours=24)) -> int:
    """Run ``switchboard policy <command> FILE``: the file is validated before NATS is contacted."""
    if command == "check":
        return check(path)
    try:
        text = path.read_text(encoding="utf-8")
        policy = parse_policy(text, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path} policy: cannot read: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        _print_problems(exc)
        return 1
    url = settings.require_nats_url()

    async def with_bus() -> None:
        bus = await Bus.connect(url, name=f"policy-{command}", give_up_after_s=ONE_SHOT_CONNECT_S)
        try:
            if command == "push":
                await push(bus, text, name=str(path))
            else:
                await whatif(bus, policy, name=str(path), since=datetime.now(UTC) - since)
        finally:
            await bus.close()

    try:
        asyncio.run(with_bus())
    except BusUnavailable as exc:
        print(f"switchboard policy {command}: {exc}", file=sys.stderr)
        return 1
    return 0
