"""The engine: decide() per cycle by size, a simulated day, relay switchings per day."""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).parent))

from common import consumers_yaml, report

from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Settings, Snapshot
from hems_rules.ruleset import RuleSet, load_rules
from hems_rules.simulate.day import SolarDay
from hems_rules.simulate.scenario import Scenario, run_scenario

REPO = Path(__file__).parent.parent
START = datetime(2026, 6, 21, tzinfo=UTC)


def rules_of(count: int) -> RuleSet:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rules.yaml").write_text(consumers_yaml(count))
        return load_rules(tmp)


def decide_per_cycle(count: int, cycles: int) -> float:
    rules = rules_of(count)
    rng = random.Random(1)
    state = EngineState()
    devices = {c.id: DeviceFact(on=False) for c in rules.consumers}
    total = 0.0
    for i in range(cycles):
        system: dict[str, float | None] = {"/Dc/Battery/Soc": 60.0, "/Dc/Pv/Power": 3000.0}
        for p in ("L1", "L2", "L3"):
            system[f"/Ac/PvOnGrid/{p}/Power"] = rng.uniform(0, 200.0 * count)
            system[f"/Ac/Consumption/{p}/Power"] = rng.uniform(200, 2000)
        snapshot = Snapshot(
            system=MappingProxyType(system),
            settings=Settings(mode=1),
            variables=MappingProxyType({"tank_temp": 50.0}),
            devices=MappingProxyType(devices),
        )
        start = time.perf_counter()
        plan, state = decide(rules, snapshot, state, START + timedelta(seconds=i * 2))
        total += time.perf_counter() - start
        for d in plan.decisions:
            if d.command is not None:
                power = rules.consumer(d.consumer).power if d.command else None
                devices[d.consumer] = DeviceFact(on=d.command, power=power)
    return total / cycles


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
