"""Hot reload: watch the rules directory, validate the whole set, swap only when it is good.

Editors save in many ways (in place, temp file renamed into place, backup-and-rename);
every one of them ends in a burst of events on a .yaml path, so events are filtered on
both source and destination paths and debounced into one reload. A bad edit is logged
with its places and the last good rules keep running.

The watcher survives whatever happens to the directory and whatever the loader does.
The rules path may vanish, come back, or be replaced by a file or by a symlink to
another directory: every few seconds the watcher checks which directory the path names
and watches that one. Each load runs in its own daemon thread under a time budget; a
load that overruns it is reported like any other error (and never holds up shutdown),
and an unexpected exception in the loader is reported too. Reloads (saves and SIGHUP)
run one at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from hems_rules.errors import Problem, RulesError
from hems_rules.ruleset.changes import compare
from hems_rules.ruleset.compiler import RULE_SUFFIXES, load_rules
from hems_rules.ruleset.rules import RuleSet

log = logging.getLogger(__name__)

DEBOUNCE = 0.3
# How often the watcher checks that the rules path still names the directory it watches.
CHECK_EVERY = 2.0
# A thousand consumers load in well under a second on a GX; a load that takes this long
# is stuck (a hung file system, a bug) and is reported instead of waited for.
LOAD_BUDGET = 10.0

_Identity = tuple[int, int]


def _is_rule_path(path: str | bytes) -> bool:
    name = Path(os.fsdecode(path)).name
    return name.endswith(RULE_SUFFIXES) and not name.startswith(".")


def _identity(directory: Path) -> _Identity | None:
    """Which directory the rules path names now (through symlinks); None if none."""
    try:
        info = directory.stat()
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


class _Bridge(FileSystemEventHandler):
    """Runs on watchdog's thread; only pokes the event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, poke: Callable[[], None], lost: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._poke = poke
        self._lost = lost
        self.root = ""  # the real path of the watched directory

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type == "deleted" and os.fsdecode(event.src_path) == self.root:
            self._loop.call_soon_threadsafe(self._lost)  # its watch died with it
            return
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        dest = getattr(event, "dest_path", "")
        if _is_rule_path(event.src_path) or (dest and _is_rule_path(dest)):
            self._loop.call_soon_threadsafe(self._poke)


def _problem(directory: Path, message: str) -> RulesError:
    return RulesError([Problem(str(directory), 1, 1, "", message)])


class RulesWatcher:
    """The rules in force, kept current from the directory (an async context manager).

    `on_swap(rules)` is called on the event loop after each good reload, and
    `on_error(error)` after each reload that failed (with None once the rules load again).
    `reload()` loads now (SIGHUP); it never raises and may be called at any time.
    """

    def __init__(
        self,
        directory: Path,
        rules: RuleSet,
        on_swap: Callable[[RuleSet], None],
        debounce: float = DEBOUNCE,
        on_error: Callable[[RulesError | None], None] | None = None,
        *,
        check_every: float = CHECK_EVERY,
        load_budget: float = LOAD_BUDGET,
    ) -> None:
        self.directory = directory
        self.rules = rules
        self.error: RulesError | None = None
        self.reloads = 0
        self._on_swap = on_swap
        self._on_error = on_error
        self._debounce = debounce
        self._check_every = check_every
        self._load_budget = load_budget
        self._changed = asyncio.Event()
        self._one_at_a_time = asyncio.Lock()
        self._observer: Any = None
        self._bridge: _Bridge | None = None
        self._watched: _Identity | None = None
        self._loading: concurrent.futures.Future[RuleSet] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def loading(self) -> bool:
        """A load thread is still running (perhaps past its budget)."""
        return self._loading is not None and not self._loading.done()

    async def __aenter__(self) -> RulesWatcher:
        self._bridge = _Bridge(asyncio.get_running_loop(), self._changed.set, self._lost)
        self._observer = Observer()
        self._observer.start()
        self._arm()
        self._task = asyncio.create_task(self._run(), name="rules-watcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)

    # -- watching ---------------------------------------------------------------------

    def _lost(self) -> None:
        """The watched directory was deleted: the next check watches whatever comes back."""
        self._watched = None
        self._changed.set()

    def _arm(self) -> None:
        """Watch the directory the rules path names now, if it is not the one watched."""
        identity = _identity(self.directory)
        if self._observer is None or self._bridge is None or identity == self._watched:
            return
        self._observer.unschedule_all()
        self._watched = None
        if identity is None:
            return  # nothing to watch; the periodic check notices when it comes back
        # The real path: inotify does not follow a symlink it is given.
        self._bridge.root = os.path.realpath(self.directory)
        try:
            self._observer.schedule(self._bridge, self._bridge.root, recursive=False)
        except OSError as err:
            if isinstance(self._observer, PollingObserver):
                log.warning("cannot watch %s: %s", self.directory, err)
                return
            log.warning("inotify unavailable (%s); polling %s every 2 s", err, self.directory)
            self._observer.stop()
            self._observer = PollingObserver(timeout=2)
            self._observer.start()
            self._arm()
            return
        self._watched = identity

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self._check_every):
                    await self._changed.wait()
            except TimeoutError:
                if _identity(self.directory) == self._watched:
                    continue  # same directory, nothing saved
            await self._settle()
            try:
                await self.reload()
            except Exception:  # reload() reports what it knows; this would be a bug
                log.exception("reloading the rules failed; the watcher goes on")

    async def _settle(self) -> None:
        """Wait until the burst of events of one save is over."""
        self._changed.clear()
        while True:
            try:
                async with asyncio.timeout(self._debounce):
                    await self._changed.wait()
            except TimeoutError:
                return
            self._changed.clear()

    # -- loading ----------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load the directory now; swap on success, keep the last good rules otherwise."""
        async with self._one_at_a_time:
            self._arm()
            try:
                rules = await self._load()
            except RulesError as err:
                self._failed(err)
                return False
            except Exception as err:
                log.error("the rules loader failed", exc_info=err)
                why = f"the rules could not be loaded: {type(err).__name__}: {err}"
                self._failed(_problem(self.directory, why))
                return False
            recovered = self.error is not None
            self.error = None
            if recovered:
                self._tell(None)
            change = compare(self.rules, rules)
            self.rules = rules
            self.reloads += 1
            log.info("rules reloaded%s: %s", " (errors fixed)" if recovered else "", change)
            try:
                self._on_swap(rules)
            except Exception:
                log.exception("the new rules could not be put in force")
            return True

    async def _load(self) -> RuleSet:
        """load_rules in a daemon thread, within the time budget."""
        budget = f"{self._load_budget:g} s"
        if self.loading:
            raise _problem(
                self.directory,
                f"the previous load is still running after more than {budget}; "
                "the last good rules keep running",
            )
        future: concurrent.futures.Future[RuleSet] = concurrent.futures.Future()
        directory = self.directory

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(load_rules(directory))
            except BaseException as err:
                future.set_exception(err)

        # A daemon thread, not the default executor: a stuck load must not hold up exit.
        threading.Thread(target=work, name="rules-load", daemon=True).start()
        self._loading = future
        try:
            async with asyncio.timeout(self._load_budget):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise _problem(
                self.directory,
                f"loading took longer than {budget}; the last good rules keep running",
            ) from None

    def _failed(self, err: RulesError) -> None:
        self.error = err
        log.error(
            "rules not reloaded, the last good rules keep running:\n%s",
            "\n".join(str(p) for p in err.problems),
        )
        self._tell(err)

    def _tell(self, error: RulesError | None) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(error)
        except Exception:
            log.exception("showing the rules error failed")
