"""Ownership of background tasks: every task the emulator starts belongs to a `TaskSet` that can cancel it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class TaskSet:
    """A set of tasks with one owner; finished tasks leave it, failures are logged, cancel ends them all."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start `coro` as a task owned by this set."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("emulator_task_failed", task=task.get_name(), exc_info=exc)

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Cancel every task except the calling one (a task may end its own owner); return those cancelled."""
        current = asyncio.current_task()
        cancelled = [task for task in self._tasks if task is not current and not task.done()]
        for task in cancelled:
            task.cancel()
        return cancelled

    async def cancel_and_wait(self, timeout_s: float) -> None:
        """Cancel every task (except the caller) and wait, at most `timeout_s`, for them to finish."""
        cancelled = self.cancel()
        if cancelled:
            await asyncio.wait(cancelled, timeout=timeout_s)

    def __len__(self) -> int:
        return len(self._tasks)
