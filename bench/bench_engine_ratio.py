"""decide() now against an earlier commit: the same workload, side by side, as a ratio.

Absolute times on a shared machine are noise; two trees timed in alternation, best of
several rounds each, are not. The earlier tree is taken from git (`git archive`), so
this needs a checkout. Usage: bench_engine_ratio.py [REF] (default: before the engine
work of issues 9, 10 and 14).

The workload meters what the relays draw, as a GX does, so both engines see the same
world and make the same decisions.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report

REPO = Path(__file__).parent.parent
BEFORE = "82efd66"
SIZES = ((10, 2000), (100, 300), (1000, 40))
ROUNDS = 5

WORKLOAD = r"""
import random, sys, tempfile, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
sys.path.insert(0, "bench")
from common import consumers_yaml
from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Settings, Snapshot
from hems_rules.ruleset import load_rules

def per_cycle(count, cycles):
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
            if devices[c.id].on:
                for phase, watts in c.shares(devices[c.id].power):
                    load[phase] += watts
        system = {"/Dc/Battery/Soc": 60.0, "/Dc/Pv/Power": 3000.0}
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

print(" ".join(str(per_cycle(n, c)) for n, c in SIZES))
"""


def _timings(tree: Path) -> list[float]:
    code = f"SIZES = {SIZES!r}\n{WORKLOAD}"
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    return [float(v) for v in out.stdout.split()]


def main(ref: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        best_before = [float("inf")] * len(SIZES)
        best_now = [float("inf")] * len(SIZES)
        for _ in range(ROUNDS):
            best_before = [min(a, b) for a, b in zip(best_before, _timings(before), strict=True)]
            best_now = [min(a, b) for a, b in zip(best_now, _timings(REPO), strict=True)]
    for (count, _), old, new in zip(SIZES, best_before, best_now, strict=True):
        report(f"decide_{count}_consumers_before_{ref}", old * 1e6, "us/cycle")
        report(f"decide_{count}_consumers_now", new * 1e6, "us/cycle")
        report(f"decide_{count}_consumers_ratio_now_to_before", new / old, "x")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else BEFORE)
