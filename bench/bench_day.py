"""The example rules over simulated days: switching with a lagging meter, daily runtime.

- Issue 9: switch commands per relay over a cloudy day with the meter 2 s late (as on a
  GX) against a meter that shows loads at once. Settling should make them equal.
- Issue 10: for each consumer with a runtime target, on a sunny and an overcast day:
  the runtime reached, how much of it ran on surplus, and the energy its due runs took
  from the grid or the battery (the part of its draw the site's PV did not cover).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report

from hems_rules.core.model import Decision, Settings
from hems_rules.core.reasons import Code
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import PHASES, RuleSet
from hems_rules.simulate.day import SolarDay
from hems_rules.simulate.plant import Plant
from hems_rules.simulate.scenario import Outcome, Scenario, run_scenario

REPO = Path(__file__).parent.parent
START = datetime(2026, 6, 21, tzinfo=UTC)
DAY = 24 * 3600.0


def days() -> dict[str, SolarDay]:
    return {
        "sunny": SolarDay(),
        "cloudy": SolarDay(cloud_count=120),
        "overcast": SolarDay(ac_pv_peak=1800.0, dc_pv_peak=1200.0, cloud_count=60),
    }


@dataclass
class Tally:
    """Per second: who is on and why, and what the due runs took from grid or battery."""

    rules: RuleSet
    day: SolarDay
    current: dict[str, Decision] = field(default_factory=dict)
    on_surplus: dict[str, float] = field(default_factory=dict)
    on_due: dict[str, float] = field(default_factory=dict)
    due_from_grid_wh: dict[str, float] = field(default_factory=dict)

    def changed(self, _: float, decision: Decision) -> None:
        self.current[decision.consumer] = decision

    def second(self, t: float, plant: Plant) -> None:
        self.day.apply(t, plant)
        sun = self.day.sun(t)
        pv = self.day.ac_pv_peak * sun + self.day.dc_pv_peak * sun * self.rules.site.dc_efficiency
        house = sum(self.day.house(t, p) for p in PHASES)
        managed = sum(plant.drawn(c.id) for c in self.rules.consumers)
        deficit = max(0.0, house + managed - pv)
        for consumer in self.rules.consumers:
            decision = self.current.get(consumer.id)
            if consumer.runtime is None or decision is None or decision.state != "on":
                continue
            if decision.code is Code.DUE:
                self.on_due[consumer.id] = self.on_due.get(consumer.id, 0.0) + 1.0
                taken = min(plant.drawn(consumer.id), deficit) / 3600
                grid = self.due_from_grid_wh
                grid[consumer.id] = grid.get(consumer.id, 0.0) + taken
            else:
                self.on_surplus[consumer.id] = self.on_surplus.get(consumer.id, 0.0) + 1.0


def run_day(rules: RuleSet, day: SolarDay, meter_lag: float, tally: Tally | None = None) -> Outcome:
    scenario = Scenario("day", rules, Settings(mode=1), (), (), START, meter_lag)
    if tally is None:
        return run_scenario(scenario, driver=day.apply, until=DAY)
    return run_scenario(scenario, tally.changed, driver=tally.second, until=DAY)


def switching_with_a_lagging_meter(rules: RuleSet) -> None:
    for lag in (0.0, 2.0):
        began = time.perf_counter()
        outcome = run_day(rules, days()["cloudy"], lag)
        wall = time.perf_counter() - began
        for consumer in rules.consumers:
            sent = outcome.commands.get(consumer.id, 0)
            report(f"cloudy_day_lag_{lag:g}s_commands_{consumer.id}", sent, "commands")
        report(
            f"cloudy_day_lag_{lag:g}s_commands_total", sum(outcome.commands.values()), "commands"
        )
        report(f"cloudy_day_lag_{lag:g}s_wall", wall, "s")


def daily_runtime(rules: RuleSet) -> None:
    for name in ("sunny", "overcast"):
        day = days()[name]
        tally = Tally(rules, day)
        run_day(rules, day, 0.0, tally)
        for consumer in rules.consumers:
            if consumer.runtime is None:
                continue
            surplus = tally.on_surplus.get(consumer.id, 0.0)
            due = tally.on_due.get(consumer.id, 0.0)
            report(f"{name}_day_{consumer.id}_runtime", (surplus + due) / 3600, "h")
            report(f"{name}_day_{consumer.id}_runtime_on_surplus", surplus / 3600, "h")
            report(f"{name}_day_{consumer.id}_runtime_due", due / 3600, "h")
            grid = tally.due_from_grid_wh.get(consumer.id, 0.0)
            report(f"{name}_day_{consumer.id}_due_from_grid_or_battery", grid, "Wh")


if __name__ == "__main__":
    example = load_rules(REPO / "rules")
    switching_with_a_lagging_meter(example)
    daily_runtime(example)
