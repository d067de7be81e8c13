"""Where the controller's routing policy comes from, and its hot reload: a file, and a NATS KV key.

`PolicySource` holds the policy in force (`current`, with `version` = a digest of its YAML). The controller
starts it, reads `current` for every decision, and stops it. While running it

- polls the policy file (size, mtime, inode; every `poll_interval`), and
- watches the KV key ``current`` in bucket ``switchboard_policy`` (written by ``switchboard policy push``).

A new version that validates replaces the old one in a single assignment: a decision already being made
keeps the policy object it read, the next one gets the new policy, and no call is dropped. A new version
that does not validate is refused: the old one stays in force, the controller logs
``policy_reload_refused`` with the problems, and records ``calls._policy.reload_refused`` in the log. A
successful reload records ``calls._policy.reloaded``. (``_policy`` is never a real call id: OpenAI's
start with ``rtc_``.)

At start, the file (or the built-in policy) must be valid or `start` raises `PolicyError`; then, if the
KV key holds a policy, it replaces the file's, so every replica runs what was last pushed (and the
controller warns, once, ``policy_pushed_overrides_file``). After that, whichever changes last wins.
Deleting the KV key (``switchboard policy reset``) puts each replica back on its file or the built-in
policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import nats.js.errors

from switchboard.controller.policy import (
    POLICY_MAX_BYTES,
    Policy,
    PolicyError,
    builtin_policy_text,
    check_policy,
    parse_policy,
    read_policy_text,
)
from switchboard.shared.bus import Bus
from switchboard.shared.errors import BusUnavailable
from switchboard.shared.logging import get_logger

log = get_logger(__name__)

POLICY_BUCKET = "switchboard_policy"
POLICY_KEY = "current"
POLICY_EVENTS = "_policy"
"""The call-id token of policy events: ``calls._policy.reloaded`` and ``calls._policy.reload_refused``."""

_BUCKET_HISTORY = 16  # earlier versions stay readable in the bucket, for audit and rollback
_KV_TIMEOUT_S = 5.0
_KV_START_ATTEMPTS = 6

_RECORD_TIMEOUT_S = 2.0


class PolicyReloaded(msgspec.Struct, frozen=True, kw_only=True):
    """``calls._policy.reloaded``: a new policy is in force on `replica`."""

    origin: str
    version: str
    rules: int
    agents: int
    replica: str


class PolicyReloadRefused(msgspec.Struct, frozen=True, kw_only=True):
    """``calls._policy.reload_refused``: a new policy was invalid; `kept` is the version still in force."""

    origin: str
    version: str | None
    problems: list[str]
    kept: str
    replica: str


def _log_warnings(warnings: list[str], origin: str) -> None:
    for warning in warnings:
        log.warning("policy_warning", origin=origin, warning=warning)


def policy_version(text: str) -> str:
    """A policy's version: the first 12 hex digits of the SHA-256 of its YAML."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def policy_bucket(bus: Bus, *, bucket: str = POLICY_BUCKET, timeout_s: float = _KV_TIMEOUT_S) -> Any:
    """The KV bucket policies are pushed to, created (replicated like the CALLS stream) if missing."""
    return await bus.key_value(
        bucket,
        description="Switchboard routing policies (YAML); key 'current' is in force",
        history=_BUCKET_HISTORY,
        max_value_size=POLICY_MAX_BYTES,
        timeout_s=timeout_s,
    )


async def push_policy(bus: Bus, text: str, *, source: str, timeout_s: float = _KV_TIMEOUT_S) -> tuple[str, int]:
    """Validate `text` (PolicyError if invalid) and put it in the KV key; (its version, the KV revision)."""
    parse_policy(text, source)
    kv = await policy_bucket(bus, timeout_s=timeout_s)
    try:
        revision = await asyncio.wait_for(kv.put(POLICY_KEY, text.encode()), timeout_s)
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"policy not stored in {POLICY_BUCKET}/{POLICY_KEY}: {type(exc).__name__}") from exc
    return policy_version(text), int(revision)


class Pushed(msgspec.Struct, frozen=True, kw_only=True):
    """The policy in the KV key: what every controller runs instead of its file."""

    text: str
    version: str
    revision: int


async def pushed_policy(bus: Bus, *, timeout_s: float = _KV_TIMEOUT_S) -> Pushed | None:
    """The pushed policy in force, or None when none is (never pushed, or reset)."""
    return await _pushed_in(await policy_bucket(bus, timeout_s=timeout_s), timeout_s)


async def _pushed_in(kv: Any, timeout_s: float) -> Pushed | None:
    try:
        entry = await asyncio.wait_for(kv.get(POLICY_KEY), timeout_s)
    except nats.js.errors.KeyNotFoundError:  # also a deleted key
        return None
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"policy key {POLICY_BUCKET}/{POLICY_KEY} unreadable: {type(exc).__name__}") from exc
    if not entry.value:
        return None
    text = entry.value.decode("utf-8", errors="replace")
    return Pushed(text=text, version=policy_version(text), revision=int(entry.revision or 0))


async def reset_policy(bus: Bus, *, timeout_s: float = _KV_TIMEOUT_S) -> Pushed | None:
    """Delete the pushed policy (its earlier versions stay in the bucket's history), so every controller
    goes back to its file or the built-in policy; the policy that was removed, or None if none was pushed."""
    kv = await policy_bucket(bus, timeout_s=timeout_s)
    pushed = await _pushed_in(kv, timeout_s)
    if pushed is None:
        return None
    try:
        await asyncio.wait_for(kv.delete(POLICY_KEY), timeout_s)
    except (TimeoutError, nats.errors.Error) as exc:
        raise BusUnavailable(f"policy key {POLICY_BUCKET}/{POLICY_KEY} not deleted: {type(exc).__name__}") from exc
    return pushed


class _Loaded(msgspec.Struct, frozen=True):
    policy: Policy
    version: str
    origin: str


class PolicySource:
    """The policy in force, reloaded from the file and the KV key while started. See the module docstring."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        bus: Bus | None = None,
        watch_kv: bool = True,
        bucket: str = POLICY_BUCKET,
        poll_interval: timedelta = timedelta(seconds=1),
        replica: str | None = None,
    ) -> None:
        self.path = Path(path).resolve() if path is not None else None
        self._bus = bus
        self._watch_kv = watch_kv and bus is not None
        self._bucket = bucket
        self.poll_interval = timedelta(seconds=max(0.05, min(poll_interval.total_seconds(), 60.0)))
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        self._loaded: _Loaded | None = None
        self._file_seen: tuple[int, int, int] | None = None
        self._kv_seen = 0  # the newest KV revision looked at: the watch replays the one `start` read
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: Any = None

    # --- what the controller reads -------------------------------------------------------------------

    @property
    def current(self) -> Policy:
        """The policy in force (`start` first)."""
        return self._in_force().policy

    @property
    def version(self) -> str:
        """The version in force: the first 12 hex digits of the SHA-256 of its YAML."""
        return self._in_force().version

    @property
    def origin(self) -> str:
        """Where the policy in force came from: the file's path, ``built-in``, or ``kv:<bucket>/current@<rev>``."""
        return self._in_force().origin

    def _in_force(self) -> _Loaded:
        if self._loaded is None:
            raise RuntimeError("PolicySource.start() has not loaded a policy yet")
        return self._loaded

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the file (PolicyError if invalid), then the KV key if it holds a policy; start watching."""
        if self._loaded is not None:
            return
        if self.path is not None:
            self._file_seen = self._stat()
        text, origin = self._own_text()
        checked = check_policy(text, origin)
        self._loaded = _Loaded(checked.policy, policy_version(text), origin)
        log.info("policy_loaded", origin=origin, version=self.version, rules=len(self.current.rules))
        _log_warnings(checked.warnings, origin)
        if self.path is not None:
            self._tasks.append(asyncio.create_task(self._poll_file(), name="policy-file"))
        if self._watch_kv:
            try:
                await self._start_kv_with_retries()
            except BaseException:
                await self.stop()  # start failed: leave no watcher task behind
                raise
            if self.origin != origin:
                log.warning(
                    "policy_pushed_overrides_file",
                    file=origin,
                    origin=self.origin,
                    version=self.version,
                    hint="`switchboard policy reset` goes back to the file (or the built-in policy)",
                )

    def _own_text(self) -> tuple[str, str]:
        """This replica's own policy, without the KV key: (the file's text, its path) or the built-in one."""
        if self.path is None:
            return builtin_policy_text(), "built-in"
        return self._read_file(), str(self.path)

    async def _start_kv_with_retries(self, attempts: int = _KV_START_ATTEMPTS) -> None:
        """`_start_kv`, tried again with backoff while the bucket is not answering yet (a cluster that is
        still electing the new bucket's leader, or replicas racing to create it)."""
        delay = 0.5
        for attempt in range(1, attempts + 1):
            try:
                await self._start_kv()
                return
            except (BusUnavailable, nats.errors.Error) as exc:
                if attempt == attempts:
                    raise
                if attempt == 1:
                    log.warning("policy_bucket_not_ready", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)

    async def stop(self) -> None:
        """Stop watching; `current` stays readable. Idempotent."""
        self._stopping.set()
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._watcher.stop(), _KV_TIMEOUT_S)
            self._watcher = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # --- offering a new version ----------------------------------------------------------------------

    async def _offer(self, text: str, origin: str, *, msg_id: str) -> None:
        """Put `text` in force if it is a new, valid policy; otherwise refuse it and keep the old one."""
        in_force = self._in_force()
        version = policy_version(text)
        if version == in_force.version:
            return
        try:
            checked = check_policy(text, origin)
        except PolicyError as exc:
            await self._refuse(origin, version, exc.problems, msg_id=msg_id)
            return
        policy = checked.policy
        self._loaded = _Loaded(policy, version, origin)  # one assignment: the swap is atomic
        log.info("policy_reloaded", origin=origin, version=version, previous=in_force.version)
        _log_warnings(checked.warnings, origin)
        reloaded = PolicyReloaded(
            origin=origin, version=version, rules=len(policy.rules), agents=len(policy.agents), replica=self.replica
        )
        await self._record("reloaded", reloaded, msg_id=msg_id)

    async def _refuse(self, origin: str, version: str | None, problems: list[str], *, msg_id: str) -> None:
        kept = self._in_force().version
        log.warning("policy_reload_refused", origin=origin, version=version, kept=kept, problems=problems)
        refused = PolicyReloadRefused(
            origin=origin, version=version, problems=problems, kept=kept, replica=self.replica
        )
        await self._record("reload_refused", refused, msg_id=msg_id)

    async def _record(self, kind: str, data: msgspec.Struct, *, msg_id: str) -> None:
        if self._bus is None:
            return
        try:
            key = f"{POLICY_EVENTS}:{kind}:{msg_id}"
            await self._bus.record(POLICY_EVENTS, kind, data, msg_id=key, timeout_s=_RECORD_TIMEOUT_S)
        except BusUnavailable as exc:
            log.warning("policy_event_not_recorded", kind=kind, error=str(exc))

    # --- the file ------------------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read_file(self) -> str:
        assert self.path is not None
        return read_policy_text(self.path)

    async def _poll_file(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval.total_seconds())
            if self._stopping.is_set():
                return
            try:
                await self._check_file()
            except Exception:  # a surprise here must not end hot reload for the life of the process
                log.exception("policy_file_check_failed", path=str(self.path))

    async def _check_file(self) -> None:
        seen = self._stat()
        if seen == self._file_seen:
            return
        msg_id = f"file:{uuid.uuid4().hex}"  # every replica reports its own file
        try:
            text = self._read_file()
        except PolicyError as exc:
            self._file_seen = seen
            await self._refuse(str(self.path), None, exc.problems, msg_id=msg_id)
            return
        if self._stat() != seen:
            return  # still being written: look again at the next poll
        self._file_seen = seen
        await self._offer(text, str(self.path), msg_id=msg_id)

    # --- the KV key ----------------------------------------------------------------------------------

    async def _start_kv(self) -> None:
        assert self._bus is not None
        kv = await policy_bucket(self._bus, bucket=self._bucket)
        try:
            entry = await asyncio.wait_for(kv.get(POLICY_KEY), _KV_TIMEOUT_S)
        except nats.js.errors.KeyNotFoundError:
            entry = None
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"policy key {self._bucket}/{POLICY_KEY} unreadable: {type(exc).__name__}") from exc
        if entry is not None:
            await self._take_entry(entry)
        try:
            self._watcher = await asyncio.wait_for(kv.watch(POLICY_KEY), _KV_TIMEOUT_S)
        except (TimeoutError, nats.errors.Error) as exc:
            raise BusUnavailable(f"cannot watch {self._bucket}/{POLICY_KEY}: {type(exc).__name__}") from exc
        self._tasks.append(asyncio.create_task(self._follow_kv(self._watcher), name="policy-kv"))

    async def _follow_kv(self, watcher: Any) -> None:
        async for entry in watcher:  # ends when stop() stops the watcher
            if entry is None:
                continue  # the "caught up" marker
            try:
                await self._take_entry(entry)
            except Exception:  # one bad entry must not end the watch
                log.exception("policy_kv_entry_failed", revision=getattr(entry, "revision", None))

    async def _take_entry(self, entry: Any) -> None:
        revision = int(entry.revision or 0)
        if revision <= self._kv_seen:
            return
        self._kv_seen = revision
        origin = f"kv:{self._bucket}/{POLICY_KEY}@{revision}"
        msg_id = f"kv:{self._bucket}:{revision}"  # replicas watching the same revision record it once
        if entry.operation is not None or not entry.value:  # reset: back to this replica's own policy
            log.info("policy_kv_cleared", origin=origin, previous=self.version)
            if self.path is not None:
                self._file_seen = self._stat()
            try:
                text, own = self._own_text()
            except PolicyError as exc:
                await self._refuse(str(self.path), None, exc.problems, msg_id=msg_id)
                return
            await self._offer(text, own, msg_id=msg_id)
            return
        try:
            text = entry.value.decode("utf-8")
        except UnicodeDecodeError:
            await self._refuse(origin, None, [f"{origin} policy: not UTF-8 text"], msg_id=msg_id)
            return
        await self._offer(text, origin, msg_id=msg_id)
