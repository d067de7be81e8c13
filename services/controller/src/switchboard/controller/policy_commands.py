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
import contextlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from switchboard.controller.policy import Policy, PolicyError, load_policy, parse_policy
from switchboard.controller.policy_source import POLICY_BUCKET, POLICY_KEY, push_policy
from switchboard.controller.whatif import KINDS, redecide, render
from switchboard.shared import events
from switchboard.shared.bus import ONE_SHOT_CONNECT_S, Bus
from switchboard.shared.config import Settings
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger

log = get_logger(__name__)

WARMUP = timedelta(hours=1)
"""How far before ``--since`` events are read, so calls already live then count towards capacity."""

_FETCH_BATCH = 512
_FETCH_TIMEOUT_S = 2.0
_MAX_EMPTY_FETCHES = 5


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
        info = await asyncio.wait_for(bus.js.stream_info(events.STREAM), _FETCH_TIMEOUT_S * 2)
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"cannot read stream {events.STREAM}: {type(exc).__name__}") from exc
    last = info.state.last_seq
    if not info.state.messages:
        return []
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        ack_policy=AckPolicy.NONE,
        filter_subjects=[f"{events.SUBJECT_ROOT}.*.{kind}" for kind in kinds],
        inactive_threshold=30.0,  # the server removes it if we die mid-read
        mem_storage=True,
    )
    try:
        sub = await asyncio.wait_for(
            bus.js.pull_subscribe("", stream=events.STREAM, config=config), _FETCH_TIMEOUT_S * 2
        )
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"cannot read stream {events.STREAM}: {type(exc).__name__}") from exc
    found: list[events.CloudEvent] = []
    empty = 0
    try:
        pending = (await asyncio.wait_for(sub.consumer_info(), _FETCH_TIMEOUT_S)).num_pending
        while pending:
            try:
                msgs = await sub.fetch(_FETCH_BATCH, timeout=_FETCH_TIMEOUT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                empty += 1
                if empty >= _MAX_EMPTY_FETCHES:
                    raise BusUnavailable(f"reading {events.STREAM} stalled with {pending} events left") from None
                continue
            for msg in msgs:
                if msg.metadata.sequence.stream > last:
                    return found
                try:
                    found.append(events.decode(msg.data))
                except ValueError as exc:  # msgspec's decode errors are ValueErrors
                    log.warning("undecodable_event", subject=msg.subject, error=str(exc))
                pending = msg.metadata.num_pending
                if msg.metadata.sequence.stream == last:
                    return found
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sub.unsubscribe(), _FETCH_TIMEOUT_S)
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
