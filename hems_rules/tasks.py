"""Every task has an owner, and no task ends without a word.

A component keeps its tasks in one `Tasks` and closes it when the component closes, so
nothing outlives what started it. Two kinds of task:

- **jobs** (`spawn`): one-off work such as a settings write or a service move. A job
  that fails is logged with its traceback.
- **workers** (`keep_running`): loops that must run as long as their owner, such as a
  source or the engine loop. A worker that raises or returns is logged with its
  traceback and started again after a backoff that doubles up to a cap (and starts
  small again once the worker has run for a while). A *critical* worker is not
  restarted: the failure is handed to `on_fatal`, which stops the app with a non-zero
  exit so that daemontools restarts the whole process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Self

log = logging.getLogger(__name__)

Fatal = Callable[[str], None]

MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0
# A worker that ran this long before failing starts again from the smallest backoff.
HEALTHY_RUN = 300.0
# Seconds a cancelled task may take to end before it is cancelled again (cancel_and_wait).
RECANCEL = 1.0


def _log_stop(owner: str, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("%s: task %s failed", owner, task.get_name(), exc_info=error)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], owner: str) -> None:
    """Cancel these tasks and wait until each has ended.

    One still running after RECANCEL seconds is cancelled again: a cancellation can be
    lost when it comes together with a timeout. Python 3.11's asyncio.wait_for returns
    its future's result then (gh-86296; aiomqtt connects through it), and aiohttp 3.9's
    request timeout (the GX's) raises TimeoutError instead, which a worker takes for a
    failed request. Shutdown would wait for such a task forever.
    """
    pending, told = set(tasks), False
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL)
        if pending and not told:
            told = True
            names = ", ".join(sorted(t.get_name() for t in pending))
            log.warning("%s: %s did not stop when cancelled; cancelling again", owner, names)


class Tasks:
    """The tasks of one component (an async context manager)."""

    def __init__(self, owner: str, on_fatal: Fatal | None = None) -> None:
        self.owner = owner
        self._on_fatal = on_fatal
        self._tasks: set[asyncio.Task[Any]] = set()
        self.restarts = 0

    @property
    def names(self) -> list[str]:
        """The tasks that are running now."""
        return sorted(t.get_name() for t in self._tasks if not t.done())

    def spawn(self, job: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a one-off job; its failure is logged with the traceback."""
        task = asyncio.get_running_loop().create_task(job, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        _log_stop(self.owner, task)

    def keep_running(
        self,
        name: str,
        worker: Callable[[], Awaitable[None]],
        *,
        critical: bool = False,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> asyncio.Task[None]:
        """Run `worker()` for as long as this owner lives (see the module docstring)."""
        return self.spawn(self._supervise(name, worker, critical, min_backoff, max_backoff), name)

    async def _supervise(
        self,
        name: str,
        worker: Callable[[], Awaitable[None]],
        critical: bool,
        min_backoff: float,
        max_backoff: float,
    ) -> None:
        backoff = min_backoff
        while True:
            started = time.monotonic()
            try:
                await worker()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: %s failed", self.owner, name)
            else:
                log.error("%s: %s ended although it must keep running", self.owner, name)
            if critical and self._on_fatal is not None:
                self._on_fatal(f"{self.owner}: {name} stopped")
                return
            if time.monotonic() - started >= HEALTHY_RUN:
                backoff = min_backoff
            self.restarts += 1
            log.warning("%s: restarting %s in %g s", self.owner, name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)

    def cancel(self) -> None:
        """Cancel every task; each leaves this set once it has ended."""
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """Cancel every task and wait until each has ended (see `cancel_and_wait`)."""
        await cancel_and_wait(self._tasks, self.owner)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
