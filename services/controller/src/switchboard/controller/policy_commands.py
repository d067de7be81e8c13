"""``switchboard policy check|whatif|push``: validate a policy file, re-decide past calls under it, publish it.

- ``check FILE`` prints ``ok: N rules, M agents`` (exit 0) or every problem (exit 1). No NATS needed. A
  valid policy's warnings (a deprecated or unknown model or voice) go to stderr, each ``warning: …``, and
  leave the exit 0; ``push`` and ``whatif`` print them too.
- ``whatif FILE --since 24h`` reads ``incoming``/``decided``/``ended`` events from the log, from an hour
  before ``--since`` (to rebuild the live counts capacity rules need) up to the stream's end as it was when
  the command started, re-decides each call since ``--since`` with `whatif.redecide`, and prints the
  changed decisions and a count. Nothing is sent to OpenAI or written to the log.
- ``push FILE`` validates FILE (exit 1 if invalid, nothing stored) and puts it in the KV key every
  controller watches (`policy_source`); it overrides every controller's file until ``reset``.
- ``show`` prints the policy in force as YAML, after ``#`` lines saying where it came from and its
  version: the pushed one, else the file ``SWITCHBOARD_POLICY`` names (or the built-in policy).
- ``reset`` deletes the pushed policy: every controller goes back to its file or the built-in policy.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors

from switchboard.controller.policy import (
    Policy,
    PolicyError,
    builtin_policy_text,
    check_policy,
    read_policy_text,
)
from switchboard.controller.policy_source import (
    POLICY_BUCKET,
    POLICY_KEY,
    policy_version,
    push_policy,
    pushed_policy,
    reset_policy,
)
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


def _checked(path: Path) -> tuple[str, Policy]:
    """(the text, the policy) of the file at `path`, its warnings printed on stderr; PolicyError if invalid."""
    text = read_policy_text(path)
    checked = check_policy(text, str(path))
    for warning in checked.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return text, checked.policy


def check(path: Path) -> int:
    """Validate `path`: ``ok: …`` and 0 (warnings on stderr), or the problems on stderr and 1."""
    try:
        _, policy = _checked(path)
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
    print("it overrides every controller's SWITCHBOARD_POLICY file (and the built-in policy), across restarts, "
          "until `switchboard policy reset`")  # fmt: skip


def _own_policy(policy_path: str | None) -> tuple[str, str]:
    """(the text, where it is) of the policy controllers run when none is pushed, as `policy_path` says."""
    if policy_path is None:
        return builtin_policy_text(), "the built-in policy"
    return read_policy_text(policy_path), policy_path


async def show(bus: Bus, policy_path: str | None) -> None:
    """Print the policy in force as YAML, headed by comment lines saying where it came from."""
    pushed = await pushed_policy(bus)
    if pushed is not None:
        print(f"# in force: the policy pushed to {POLICY_BUCKET}/{POLICY_KEY} (revision {pushed.revision}), "
              f"version {pushed.version}")  # fmt: skip
        print("# it overrides every controller's SWITCHBOARD_POLICY file; `switchboard policy reset` goes back to that")
        text = pushed.text
    else:
        text, where = _own_policy(policy_path)
        print(f"# in force: {where}, version {policy_version(text)} (no policy is pushed)")
    print(text, end="" if text.endswith("\n") else "\n")


async def reset(bus: Bus, policy_path: str | None) -> None:
    """Delete the pushed policy, and say what controllers run now."""
    text, where = _own_policy(policy_path)
    removed = await reset_policy(bus)
    now = f"{where} (version {policy_version(text)})"
    if removed is None:
        print(f"nothing to reset: no policy is pushed; controllers run {now}")
    else:
        print(f"reset: removed the pushed policy (version {removed.version}, revision {removed.revision}); "
              f"controllers go back to {now}")  # fmt: skip


def run(
    command: str,
    path: Path | None,
    settings: Settings,
    *,
    since: timedelta = timedelta(hours=24),
) -> int:
    """Run ``switchboard policy <command> [FILE]``: a file is validated before NATS is contacted."""
    if command == "check":
        assert path is not None
        return check(path)
    text, policy = "", None
    if path is not None:
        try:
            text, policy = _checked(path)
        except PolicyError as exc:
            _print_problems(exc)
            return 1
    url = settings.require_nats_url()

    async def with_bus() -> None:
        bus = await Bus.connect(url, name=f"policy-{command}", give_up_after_s=ONE_SHOT_CONNECT_S)
        try:
            if command == "show":
                await show(bus, settings.policy_path)
            elif command == "reset":
                await reset(bus, settings.policy_path)
            elif command == "push":
                await push(bus, text, name=str(path))
            else:
                assert policy is not None
                await whatif(bus, policy, name=str(path), since=datetime.now(UTC) - since)
        finally:
            await bus.close()

    try:
        asyncio.run(with_bus())
    except BusUnavailable as exc:
        print(f"switchboard policy {command}: {exc}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        _print_problems(exc)
        return 1
    return 0
