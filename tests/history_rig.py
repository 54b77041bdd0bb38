"""Cycles for the history tests: the real controller on a plant, records as the loop makes them."""

from __future__ import annotations

from datetime import datetime, timedelta

from hems_rules.core.controller import Controller
from hems_rules.core.model import CycleResult, Decision, Plan, Settings, Snapshot
from hems_rules.ruleset import RuleSet
from hems_rules.simulate.plant import Plant
from tests.conftest import rules_from

RULES = """\
site: {phases: 1, battery_reservation: "1000"}
consumers:
  - {id: pump, shelly: {host: pump.invalid}, power: 300, priority: 5, class: primary}
  - {id: heater, shelly: {host: heater.invalid}, power: 1000, priority: 20}
"""

START = datetime(2026, 6, 21, 10, 0).astimezone()


def record(plan: Plan, changed: list[Decision], snapshot: Snapshot, at: datetime) -> CycleResult:
    return CycleResult(plan, tuple(changed), snapshot, at, 0.0)


class Day:
    """A 1-phase house whose PV the test sets; every `cycle()` is one loop cycle."""

    def __init__(self, rules: RuleSet | None = None, start: datetime = START) -> None:
        self.rules = rules or rules_from(RULES)
        self.plant = Plant(self.rules, Settings(mode=1))
        self.controller = Controller(self.rules)
        self.start = start
        self.t = 0.0
        self.pv = 0.0
        self.house = 400.0

    def cycle(self, seconds: float = 1.0) -> CycleResult:
        self.t += seconds
        self.plant.update_system(
            {
                "/Ac/PvOnGrid/L1/Power": self.pv,
                "/Ac/Consumption/L1/Power": self.house,
                "/Dc/Battery/Soc": 60.0,
                "/Dc/Battery/Power": 0.0,
            }
        )
        snapshot = self.plant.snapshot(self.t)
        wall = self.start + timedelta(seconds=self.t)
        plan, changed = self.controller.cycle(snapshot, wall)
        for decision in changed:
            if decision.command is not None:
                self.plant.switch(decision.consumer, decision.command, self.t)
        return record(plan, changed, snapshot, wall)
