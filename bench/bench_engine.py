"""The engine: decide() per cycle by size, a simulated day, relay switchings per day."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report
from workload import decide_per_cycle

from hems_rules.core.model import Settings
from hems_rules.ruleset import load_rules
from hems_rules.simulate.day import SolarDay
from hems_rules.simulate.scenario import Scenario, run_scenario

REPO = Path(__file__).parent.parent
START = datetime(2026, 6, 21, tzinfo=UTC)


def simulated_day() -> None:
    rules = load_rules(REPO / "rules")
    scenario = Scenario("day", rules, Settings(mode=1), (), (), START)
    day = SolarDay()
    start = time.perf_counter()
    outcome = run_scenario(scenario, driver=day.apply, until=24 * 3600)
    wall = time.perf_counter() - start
    report("day_24h_1s_wall", wall, "s")
    report("day_24h_cycles", outcome.cycles, "cycles")
    report("day_24h_switch_ons", outcome.switchings, "switch-ons")
    report("day_24h_end_soc", day.soc, "%")


if __name__ == "__main__":
    for count, cycles in ((10, 2000), (100, 500), (1000, 100)):
        report(f"decide_{count}_consumers", decide_per_cycle(count, cycles) * 1e6, "us/cycle")
    simulated_day()
