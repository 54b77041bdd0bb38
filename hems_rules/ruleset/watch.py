"""Hot reload: watch the rules directory, validate the whole set, swap only when it is good.

Editors save in many ways (in place, temp file renamed into place, backup-and-rename);
every one of them ends in a burst of events on a .yaml path, so events are filtered on
both source and destination paths and debounced into one reload. A bad edit is logged
with its places and the last good rules keep running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from hems_rules.errors import RulesError
from hems_rules.ruleset.changes import compare
from hems_rules.ruleset.compiler import RULE_SUFFIXES, load_rules
from hems_rules.ruleset.rules import RuleSet

log = logging.getLogger(__name__)

DEBOUNCE = 0.3


def _is_rule_path(path: str | bytes) -> bool:
    name = Path(path if isinstance(path, str) else path.decode()).name
    return name.endswith(RULE_SUFFIXES) and not name.startswith(".")


class _Bridge(FileSystemEventHandler):
    """Runs on watchdog's thread; only pokes the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, poke: Callable[[], None]) -> None:
        self._loop = loop
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        dest = getattr(event, "dest_path", "")
        if _is_rule_path(event.src_path) or (dest and _is_rule_path(dest)):
            self._loop.call_soon_threadsafe(self._poke)


class RulesWatcher:
    """The rules in force, kept current from the directory (an async context manager).

    `on_swap(rules)` is called on the event loop after each good reload, and
    `on_error(error)` after each reload that failed (with None once the rules load again).
    """

    def __init__(
        self,
        directory: Path,
        rules: RuleSet,
        on_swap: Callable[[RuleSet], None],
        debounce: float = DEBOUNCE,
        on_error: Callable[[RulesError | None], None] | None = None,
    ) -> None:
        self.directory = directory
        self.rules = rules
        self.error: RulesError | None = None
        self.reloads = 0
        self._on_swap = on_swap
        self._on_error = on_error
        self._debounce = debounce
        self._changed = asyncio.Event()
        self._observer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RulesWatcher:
        loop = asyncio.get_running_loop()
        bridge = _Bridge(loop, self._changed.set)
        try:
            self._observer = Observer()
            self._observer.schedule(bridge, str(self.directory), recursive=False)
            self._observer.start()
        except OSError as err:
            log.warning("inotify unavailable (%s); polling %s every 2 s", err, self.directory)
            self._observer = PollingObserver(timeout=2)
            self._observer.schedule(bridge, str(self.directory), recursive=False)
            self._observer.start()
        self._task = asyncio.create_task(self._run(), name="rules-watcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            while True:
                try:
                    async with asyncio.timeout(self._debounce):
                        await self._changed.wait()
                except TimeoutError:
                    break
                self._changed.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Load the directory now; swap on success, keep the last good rules otherwise."""
        try:
            # In a thread: a large rule set takes long enough to delay a cycle.
            rules = await asyncio.to_thread(load_rules, self.directory)
        except RulesError as err:
            self.error = err
            if self._on_error is not None:
                self._on_error(err)
            log.error(
                "rules not reloaded, the last good rules keep running:\n%s",
                "\n".join(str(p) for p in err.problems),
            )
            return False
        recovered = self.error is not None
        self.error = None
        if recovered and self._on_error is not None:
            self._on_error(None)
        change = compare(self.rules, rules)
        self.rules = rules
        self.reloads += 1
        log.info("rules reloaded%s: %s", " (errors fixed)" if recovered else "", change)
        self._on_swap(rules)
        return True
