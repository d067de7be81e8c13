"""Service lifecycle: every service is an object with `run()` and an idempotent `shutdown(grace)`.

`run_until_signalled` is the one place a process turns SIGINT/SIGTERM into `shutdown`; `run` is the one
way a process runs its event loop; `service_main` is every service's console script
(`switchboard-ingress`, …, and `switchboard ingress`, …).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import importlib.metadata
import ipaddress
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import uvloop

from switchboard.shared import config as config_module
from switchboard.shared import logging as logging_module
from switchboard.shared import tracing
from switchboard.shared.config import Settings
from switchboard.shared.errors import ConfigError, SwitchboardError
from switchboard.shared.logging import get_logger

T = TypeVar("T")

log = get_logger(__name__)


class Service(Protocol):
    name: str

    async def run(self) -> None:
        """Start, serve until `shutdown` is called, then return."""

    async def shutdown(self, grace: timedelta) -> None:
        """Stop taking work, finish or hand over what is in flight within `grace`. Idempotent."""


async def cancel_and_wait(task: asyncio.Task[Any], *, tries: int = 10, wait_s: float = 1.0) -> None:
    """Cancel `task` and wait for it to end, cancelling again if a library swallowed the cancellation
    (Python 3.11's ``asyncio.wait_for`` can, when its inner await completes at the same moment)."""
    for _ in range(tries):
        if task.done():
            return
        task.cancel()
        await asyncio.wait([task], timeout=wait_s)
    if not task.done():
        log.error("task_did_not_stop", task=task.get_name())


async def run_until_signalled(*services: Service, grace: timedelta = timedelta(seconds=20)) -> None:
    """Run services side by side until SIGINT/SIGTERM (or one of them stops), then shut all down."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(s.run(), name=s.name) for s in services]
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception() if task is not stopper else None
            if failure is not None and not isinstance(failure, SwitchboardError):  # those are its one line
                log.error("service_failed", service=task.get_name(), error=repr(failure))
        log.info("shutting_down", grace_s=grace.total_seconds())
        await asyncio.gather(*(s.shutdown(grace) for s in services), return_exceptions=True)
        await asyncio.wait(tasks, timeout=grace.total_seconds() + 5)
    finally:
        stopper.cancel()
        for task in tasks:
            task.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
    if failed:
        raise failed[0].exception()  # type: ignore[misc]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Loop(uvloop.Loop):
    """uvloop's event loop, connecting to an IP address without a trip through its resolver's threads.

    uvloop's ``sock_connect`` looks every address up with ``getaddrinfo`` on libuv's thread pool, even an
    IP address that aiohttp's connector has already resolved: a thread wake-up and two context switches
    for every connection opened, which for a session worker is one per call (its sideband). Here an IP
    address is connected to directly; anything else goes to uvloop as before.
    """

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or not _is_ip(address[0]):
            await super().sock_connect(sock, address)
            return
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        connected: asyncio.Future[None] = self.create_future()
        fd = sock.fileno()
        self.add_writer(fd, _on_writable, sock, address, connected)
        try:
            await connected
        finally:
            self.remove_writer(fd)


def _on_writable(sock: socket.socket, address: Any, connected: asyncio.Future[None]) -> None:
    if connected.done():
        return
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error in (errno.EINPROGRESS, errno.EALREADY):
        return  # not yet
    if error:
        connected.set_exception(OSError(error, f"Connect call failed {address}"))
    else:
        connected.set_result(None)


def _is_ip(host: object) -> bool:
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop (libuv's event loop: markedly faster HTTP, WebSocket and NATS I/O), as `Loop`.

    The garbage collector is set for a long-running service first. Everything loaded so far (modules,
    classes, functions: some 50,000 objects) is frozen out of its scans, and a young collection comes
    every 2,000 net allocations instead of 700, so the many objects that live for the milliseconds an
    event is in flight are seldom caught alive and promoted. Both make full collections, which stop the
    event loop for as long as they take, shorter and rarer: with a thousand live calls on one worker
    they took 100-300 ms every few seconds, and decided its relay p99.
    """
    gc.freeze()
    gc.set_threshold(2_000, 10, 10)
    with asyncio.Runner(loop_factory=Loop) as runner:
        return runner.run(main)


def service_main(
    prog: str,
    build: Callable[[Settings], Service],
    *,
    description: str,
    grace: timedelta = timedelta(seconds=20),
    argv: Sequence[str] | None = None,
) -> int:
    """A service's process: settings from the environment, logging, the service until SIGTERM.

    `prog` is the service's distribution and console script (``switchboard-ingress``). It takes no
    arguments but ``--help`` (which lists the variables it reads, `config.READS`) and ``--version``: the
    environment configures it. A bad setting or a
    refusal from the bus or OpenAI is one line on stderr and a non-zero exit (2 for configuration,
    1 otherwise), never a traceback.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=config_module.environment_help(prog.removeprefix("switchboard-")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version(prog)}")
    parser.parse_args(argv)
    try:
        settings = config_module.load()
        logging_module.configure(fmt=settings.log_format, level=settings.log_level)
        tracing.configure(prog.removeprefix("switchboard-"))
        try:
            run(run_until_signalled(build(settings), grace=grace))
        finally:
            tracing.shutdown()
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except SwitchboardError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
