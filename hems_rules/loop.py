"""The async loop around the pure engine.

A cycle runs when an input changes (after a short debounce, so a burst of D-Bus
updates is one decision) and at least every `loop_interval`. Commands go to the relay
sink without waiting for the relays; what they report back is an input for the next
cycle. Plan publishers (the switch service, the VRM battery view, logs) see every plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.core.model import Decision, Plan
from hems_rules.ruleset.rules import RuleSet

log = logging.getLogger(__name__)

DEBOUNCE = 0.1


class RelaySink(Protocol):
    def command(self, consumer_id: str, on: bool) -> None: ...


class PlanPublisher(Protocol):
    def publish(self, plan: Plan, changed: Sequence[Decision], loop_time: float) -> None: ...


def local_now() -> datetime:
    return datetime.now().astimezone()


class EngineLoop:
    def __init__(
        self,
        controller: Controller,
        inputs: Inputs,
        relays: RelaySink,
        publishers: Sequence[PlanPublisher] = (),
        *,
        debounce: float = DEBOUNCE,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = local_now,
    ) -> None:
        self.controller = controller
        self.inputs = inputs
        self.relays = relays
        self.publishers = list(publishers)
        self.cycles = 0
        self.loop_time = 0.0
        self._debounce = debounce
        self._monotonic = monotonic
        self._wall = wall
        self._rules_changed: list[Callable[[RuleSet], None]] = []

    def on_rules(self, callback: Callable[[RuleSet], None]) -> None:
        """Call `callback` after each rules swap (after the releases have been sent)."""
        self._rules_changed.append(callback)

    def swap_rules(self, rules: RuleSet) -> None:
        """New rules from now on; removed consumers are released in a cycle right away."""
        self.controller.swap_rules(rules)
        self.inputs.rules = rules
        self.cycle()
        for callback in self._rules_changed:
            callback(rules)

    def cycle(self) -> Plan:
        """One decision, its commands sent (switch-offs first) and the plan published."""
        started = time.perf_counter()
        now = self._monotonic()
        plan, changed = self.controller.cycle(self.inputs.snapshot(now), self._wall())
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
        for publisher in self.publishers:
            try:
                publisher.publish(plan, changed, self.loop_time)
            except Exception:
                log.exception("publishing the plan failed")
        return plan

    async def run(self) -> None:
        """Cycle forever: on change (debounced) and at least every loop_interval."""
        while True:
            interval = self.controller.rules.site.loop_interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self.inputs.changed.wait()
                await asyncio.sleep(self._debounce)
            self.inputs.changed.clear()
            try:
                self.cycle()
            except Exception:
                # A bug in one cycle must not end control for good; the next may succeed.
                log.exception("cycle failed")
