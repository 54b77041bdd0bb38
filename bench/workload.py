"""The decide() workload of the engine benchmarks, runnable against any commit.

bench_engine_ratio.py copies this file into an earlier tree and runs it there and here:
`python bench/workload.py 10:2000 100:300` prints seconds per cycle for each size. It
uses only what every version of the engine offers.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).parent))

from common import consumers_yaml

from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Settings, Snapshot
from hems_rules.ruleset import load_rules


def decide_per_cycle(count: int, cycles: int) -> float:
    """Seconds per decide() with `count` consumers, over random sun and house loads.

    The meters show what the relays draw, as a GX's do.
    """
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rules.yaml").write_text(consumers_yaml(count))
        rules = load_rules(tmp)
    start = datetime(2026, 6, 21, tzinfo=UTC)
    rng = random.Random(1)
    state = EngineState()
    devices = {c.id: DeviceFact(on=False) for c in rules.consumers}
    total = 0.0
    for i in range(cycles):
        load = dict.fromkeys(("L1", "L2", "L3"), 0.0)
        for c in rules.consumers:
            fact = devices[c.id]
            if fact.on and fact.power is not None:
                for phase, watts in c.shares(fact.power):
                    load[phase] += watts
        system: dict[str, float | None] = {"/Dc/Battery/Soc": 60.0, "/Dc/Pv/Power": 3000.0}
        for p in ("L1", "L2", "L3"):
            system[f"/Ac/PvOnGrid/{p}/Power"] = rng.uniform(0, 200.0 * count)
            system[f"/Ac/Consumption/{p}/Power"] = rng.uniform(200, 2000) + load[p]
        snapshot = Snapshot(
            system=MappingProxyType(system),
            settings=Settings(mode=1),
            variables=MappingProxyType({"tank_temp": 50.0}),
            devices=MappingProxyType(devices),
        )
        began = time.perf_counter()
        plan, state = decide(rules, snapshot, state, start + timedelta(seconds=i * 2))
        total += time.perf_counter() - began
        for d in plan.decisions:
            if d.command is not None:
                power = rules.consumer(d.consumer).power if d.command else None
                devices[d.consumer] = DeviceFact(on=d.command, power=power)
    return total / cycles


if __name__ == "__main__":
    sizes = [tuple(int(n) for n in arg.split(":")) for arg in sys.argv[1:]]
    print(" ".join(str(decide_per_cycle(count, cycles)) for count, cycles in sizes))
