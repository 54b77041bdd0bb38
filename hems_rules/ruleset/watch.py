"""Hot reload: look at the rules directory every second, validate the whole set, swap
only when it is good.

Editors save in many ways (in place, a temporary file renamed into place, backup and
rename), and the rules path may vanish, come back, or be replaced by a file or by a
symlink to another directory. The watcher handles all of them the same way: every
`CHECK_EVERY` seconds it takes the *signature* of what the path names (the directory,
through symlinks, and each rule file's inode, size and times); when that changed, it
waits until it holds still for `DEBOUNCE` (the end of a save's burst of writes) and
reloads. A bad edit is logged with its places and the last good rules keep running.

Looking is a few stat calls on the event loop: no thread, no inotify watch to run out
of, no fallback. watchdog, which did this with inotify, cost `run` about 1.5 MiB of its
memory on a GX and two threads, to make a save take effect a second sooner.

Each load runs in its own daemon thread under a time budget; a load that overruns it
is reported like any other error (and never holds up shutdown), and an unexpected
exception in the loader is reported too. Reloads (saves and SIGHUP) run one at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from hems_rules.errors import Problem, RulesError
from hems_rules.ruleset.changes import compare
from hems_rules.ruleset.compiler import Signature, load_rules, signature
from hems_rules.ruleset.rules import RuleSet
from hems_rules.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# A save is in force within CHECK_EVERY + DEBOUNCE seconds (kill -HUP: at once). Each look
# wakes the process: about 0.3 ms of CPU on a PC with its caches cold (0.03 % of a core
# at one a second; watchdog's threads took half that), some ten times that on a GX.
CHECK_EVERY = 1.0
DEBOUNCE = 0.3
# A thousand consumers load in well under a second on a GX; a load that takes this long
# is stuck (a hung file system, a bug) and is reported instead of waited for.
LOAD_BUDGET = 10.0


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
        seen: Signature | None = None,
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
        self._seen = seen  # the directory as `rules` came from it; None: as it is at start
        self._one_at_a_time = asyncio.Lock()
        self._loading: concurrent.futures.Future[RuleSet] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def loading(self) -> bool:
        """A load thread is still running (perhaps past its budget)."""
        return self._loading is not None and not self._loading.done()

    async def __aenter__(self) -> RulesWatcher:
        # A save from then on is seen (`run` takes it before the rules load).
        seen = signature(self.directory) if self._seen is None else self._seen
        self._task = asyncio.create_task(self._run(seen), name="rules-watcher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task], "rules watcher")

    # -- watching ---------------------------------------------------------------------

    async def _run(self, seen: Signature | None) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            now = signature(self.directory)
            if now == seen:
                continue
            seen = await self._settle(now)
            try:
                await self.reload()
            except Exception:  # reload() reports what it knows; this would be a bug
                log.exception("reloading the rules failed; the watcher goes on")

    async def _settle(self, now: Signature | None) -> Signature | None:
        """The signature once it has held still for the debounce (a save is over)."""
        while True:
            await asyncio.sleep(self._debounce)
            later = signature(self.directory)
            if later == now:
                return now
            now = later

    # -- loading ----------------------------------------------------------------------

    async def reload(self) -> bool:
        """Load the directory now; swap on success, keep the last good rules otherwise."""
        async with self._one_at_a_time:
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
