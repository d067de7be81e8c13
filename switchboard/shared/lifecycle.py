"""Service lifecycle: every service is an object with `run()` and an idempotent `shutdown(grace)`.

`run_until_signalled` is the one place a process turns SIGINT/SIGTERM into `shutdown`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import timedelta
from typing import Any, Protocol

from switchboard.shared.logging import get_logger

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
            if task is not stopper and task.exception() is not None:
                log.error("service_failed", service=task.get_name(), error=repr(task.exception()))
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
