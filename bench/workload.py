"""Pure workloads that bench_compare.py runs against any version of hems_rules.

Run as `PYTHONPATH=<tree> python bench/workload.py decide RULES.yaml CYCLES` or
`... day RULES_DIR`; prints one `RESULT {json}` line. Only names that every version since
the comparison base has are used, looked up where each version keeps them (the package
layout changed), so the same workload runs on the old code and the new.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any

START = datetime(2026, 6, 21, tzinfo=UTC)
PHASES = ("L1", "L2", "L3")

# An editable install of the checkout would serve modules the tree under test lacks:
# only PYTHONPATH's tree may answer.
sys.meta_path[:] = [
    f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable_")
]


def module(*names: str) -> ModuleType:
    """The first of `names` that this version of hems_rules has."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(" or ".join(names))


def decide_cycles(rules_file: Path, cycles: int, rounds: int = 3) -> dict[str, Any]:
    """decide() on a random day of readings; the meter shows each relay at once.

    CPU time of this process (the machine is shared), the best of `rounds` runs of the
    same day.
    """
    load_rules = module("hems_rules.ruleset").load_rules
    rules = load_rules(rules_file.parent)
    best, switches = min(_decide_day(rules, cycles) for _ in range(rounds))
    return {"seconds_per_cycle": best / cycles, "cycles": cycles, "switches": switches}


def _decide_day(rules: Any, cycles: int) -> tuple[float, int]:
    engine = module("hems_rules.core.engine", "hems_rules.engine")
    model = module("hems_rules.core.model", "hems_rules.model")
    rng = random.Random(1)
    state = model.EngineState()
    on: dict[str, bool] = {c.id: False for c in rules.consumers}
    phase_of = {c.id: c.phase for c in rules.consumers}
    power_of = {c.id: c.power for c in rules.consumers}
    total = 0.0
    switches = 0
    for i in range(cycles):
        system: dict[str, float | None] = {"/Dc/Battery/Soc": 60.0, "/Dc/Pv/Power": 3000.0}
        for p in PHASES:
            drawn = sum(
                power_of[c] / (3 if phase_of[c] == "3P" else 1)
                for c, running in on.items()
                if running and phase_of[c] in (p, "3P")
            )
            system[f"/Ac/PvOnGrid/{p}/Power"] = rng.uniform(0, 200.0 * len(on))
            system[f"/Ac/Consumption/{p}/Power"] = rng.uniform(200, 2000) + drawn
        snapshot = model.Snapshot(
            system=MappingProxyType(system),
            settings=model.Settings(mode=1),
            variables=MappingProxyType({"tank_temp": 50.0}),
            devices=MappingProxyType(
                {
                    c: model.DeviceFact(on=running, power=power_of[c] if running else None)
                    for c, running in on.items()
                }
            ),
        )
        start = time.process_time()
        plan, state = engine.decide(rules, snapshot, state, START + timedelta(seconds=i * 2))
        total += time.process_time() - start
        for d in plan.decisions:
            if d.command is not None:
                on[d.consumer] = bool(d.command)
                switches += 1
    return total, switches


def simulated_day(rules_dir: Path) -> dict[str, Any]:
    """A 24 h solar day with a reading every second, as `simulate` would run it."""
    scenario_module = module("hems_rules.simulate.scenario", "hems_rules.sim.scenario")
    day_module = module("hems_rules.simulate.day", "hems_rules.sim.day")
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "day.yaml"
        file.write_text('start: "2026-06-21T00:00:00+00:00"\nsettings: {Mode: 1}\n')
        scenario = scenario_module.load_scenario(file, rules_dir)
    day = day_module.SolarDay()
    start = time.perf_counter()
    outcome = scenario_module.run_scenario(scenario, driver=day.apply, until=24 * 3600)
    wall = time.perf_counter() - start
    return {
        "wall": wall,
        "cycles": outcome.cycles,
        "skipped": getattr(outcome, "skipped", 0),  # none before skipping existed
        "switch_ons": outcome.switchings,
        "end_soc": round(day.soc, 2),
    }


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "decide":
        result = decide_cycles(Path(argv[1]), int(argv[2]))
    elif kind == "day":
        result = simulated_day(Path(argv[1]))
    else:
        raise SystemExit(f"unknown workload {kind!r}")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
