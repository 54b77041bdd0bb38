"""The async loop around the pure engine.

A cycle runs as soon as an input changes, when one of the engine's timers falls due (a
min_on that ends, switches that settle, a daily runtime that becomes due or reaches
its maximum: core/timers.py), and at least every `loop_interval`. A burst
of changes (several D-Bus signals read in one go, a relay's report with its power) is
one decision: the loop lets the event loop run until a pass brings no further change,
for at most `COALESCE_LIMIT`, instead of sleeping a fixed debounce that would be most
of the reaction time.

Commands go to the relay sink without waiting for the relays; what they report back is
an input for the next cycle. Publishers (the switch service, the VRM battery view, the
history) get each cycle's result. Nothing that goes wrong in a cycle, a publisher or a
rules swap ends the loop: it is logged and the next cycle runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, Self

from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.core.model import CycleResult, Plan
from hems_rules.core.timers import next_timer
from hems_rules.localtime import local_now
from hems_rules.ruleset.rules import RuleSet
from hems_rules.tasks import Fatal, Tasks

log = logging.getLogger(__name__)

# A steady stream of changes delays a cycle by at most this long (s).
COALESCE_LIMIT = 0.005
# Cycles for the engine's timers come at most this often (s), each this long after its
# deadline, so that the deadline has passed by the engine's clock too.
TIMER_RESOLUTION = 0.05
PAST_DEADLINE = 0.001


class RelaySink(Protocol):
    def command(self, consumer_id: str, on: bool) -> None: ...


class Publisher(Protocol):
    def publish(self, result: CycleResult) -> None: ...


class EngineLoop:
    """Cycles for as long as it is open (an async context manager owning its task)."""

    def __init__(
        self,
        controller: Controller,
        inputs: Inputs,
        relays: RelaySink,
        publishers: Sequence[Publisher] = (),
        *,
        coalesce_limit: float = COALESCE_LIMIT,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = local_now,
        on_fatal: Fatal | None = None,
    ) -> None:
        self.controller = controller
        self.inputs = inputs
        self.relays = relays
        self.publishers = list(publishers)
        self.latest: CycleResult | None = None  # the last cycle's result
        self.cycles = 0
        self.loop_time = 0.0
        self._coalesce_limit = coalesce_limit
        self._monotonic = monotonic
        self._wall = wall
        self._rules_changed: list[Callable[[RuleSet], None]] = []
        self._deadline: float | None = None  # the engine's next timer, a wall timestamp
        self._tasks = Tasks("engine", on_fatal)
        # The inputs' change flag as an event to wait on; a change already flagged stays.
        self._changed = asyncio.Event()
        if inputs.changed.is_set():
            self._changed.set()
        inputs.changed = self._changed

    async def __aenter__(self) -> Self:
        # Critical: run() survives failing cycles, so if it ends anyway the process must
        # restart (daemontools) rather than leave the relays without control.
        self._tasks.keep_running("engine loop", self.run, critical=True)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()

    async def decide_first(self) -> None:
        """The first decision, before the loop runs, out on the bus when this returns.

        The app makes it as soon as the inputs it needs are in, and starts the rest (the
        relay workers, the history, the page) after it, while the loop is not yet running.
        """
        self._changed.clear()  # what changes from now on is for the loop's first cycle
        self._guarded_cycle()
        # Publishers send on the next tick of the event loop (a BusService batches its
        # ItemsChanged): let that run before whatever starts next holds the event loop.
        await asyncio.sleep(0)

    def add_publisher(self, publisher: Publisher) -> None:
        """Publish to `publisher` from now on, starting with the last cycle's result."""
        self.publishers.append(publisher)
        if self.latest is not None:
            self._publish(publisher, self.latest)

    def on_rules(self, callback: Callable[[RuleSet], None]) -> None:
        """Call `callback` after each rules swap (after the releases have been sent)."""
        self._rules_changed.append(callback)

    def swap_rules(self, rules: RuleSet) -> None:
        """New rules from now on; removed consumers are released in a cycle right away.

        Called by the rules watcher: whatever fails here is logged, and the watcher and
        the loop go on with the new rules.
        """
        self.controller.swap_rules(rules)
        self.inputs.rules = rules
        self._guarded_cycle()
        for callback in self._rules_changed:
            try:
                callback(rules)
            except Exception:
                log.exception("applying the new rules to %s failed", callback)

    def cycle(self) -> Plan:
        """One decision, its commands sent (switch-offs first) and the result published."""
        started = time.perf_counter()
        snapshot = self.inputs.snapshot(self._monotonic())
        at = self._wall()
        plan, changed = self.controller.cycle(snapshot, at)
        commands = sorted(
            (d for d in changed if d.command is not None), key=lambda d: bool(d.command)
        )
        for decision in commands:
            assert decision.command is not None
            self.relays.command(decision.consumer, decision.command)
        for decision in changed:
            log.info("%s %s: %s", decision.consumer, decision.state, decision.reason)
        self.cycles += 1
        self.loop_time = time.perf_counter() - started
        result = self.latest = CycleResult(plan, tuple(changed), snapshot, at, self.loop_time)
        for publisher in self.publishers:
            self._publish(publisher, result)
        # Last, when the decision is out: should this fail, loop_interval still holds.
        self._deadline = None
        self._deadline = next_timer(self.controller.rules, self.controller.state, at)
        return plan

    def _publish(self, publisher: Publisher, result: CycleResult) -> None:
        try:
            publisher.publish(result)
        except Exception:
            log.exception("%s could not publish the cycle", type(publisher).__name__)

    def _guarded_cycle(self) -> None:
        try:
            self.cycle()
        except Exception:
            # A bug in one cycle must not end control for good; the next may succeed.
            log.exception("cycle failed")

    async def run(self) -> None:
        """Cycle forever: once per burst of changes, when a timer of the engine's falls
        due, and at least every loop_interval."""
        changed = self._changed
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._wait()):
                    await changed.wait()
            await self._coalesce()
            changed.clear()
            self._guarded_cycle()

    def _wait(self) -> float:
        """How long to wait for a change before cycling anyway (s)."""
        interval = self.controller.rules.site.loop_interval
        if self._deadline is None:
            return interval
        until = self._deadline - self._wall().timestamp() + PAST_DEADLINE
        return min(interval, max(TIMER_RESOLUTION, until))

    async def _coalesce(self) -> None:
        """Return once a full pass of the event loop has brought no further change.

        Two yields make one pass: the first lets the loop poll the sockets, whose
        callbacks are queued behind this task, the second lets those callbacks run.
        """
        changed = self._changed
        deadline = time.perf_counter() + self._coalesce_limit
        while changed.is_set() and time.perf_counter() < deadline:
            changed.clear()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
