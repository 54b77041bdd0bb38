"""Rules: compile time by size, expression evaluation per call, reload latency."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import best_of, consumers_yaml, report

from hems_rules.expressions import compile_expression
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.watch import RulesWatcher


def compile_times() -> None:
    for count in (10, 100, 1000):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            (directory / "rules.yaml").write_text(consumers_yaml(count))
            seconds = best_of(3, 1, partial(load_rules, directory))
        report(f"rules_compile_{count}_consumers", seconds * 1000, "ms")


def evaluation() -> None:
    equation = compile_expression("5000 - SOC * 50 if SOC < 98 else 0", {"SOC"})
    values = {"SOC": 57.0}
    report("expression_eval", best_of(5, 20000, lambda: equation.evaluate(values)) * 1e6, "us/call")
    condition = compile_expression(
        "not manual and tank < 70 and rod < 90", {"manual", "tank", "rod"}
    )
    inputs = {"manual": 0.0, "tank": 55.0, "rod": 60.0}
    report("condition_eval", best_of(5, 20000, lambda: condition.evaluate(inputs)) * 1e6, "us/call")


async def reload_latency(saves: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "rules.yaml").write_text(consumers_yaml(10))
        swapped: asyncio.Queue[float] = asyncio.Queue()
        watcher = RulesWatcher(
            directory, load_rules(directory), lambda r: swapped.put_nowait(time.perf_counter())
        )
        samples = []
        async with watcher:
            for n in range(saves):
                start = time.perf_counter()
                temp = directory / ".rules.yaml.tmp"
                temp.write_text(consumers_yaml(10 + n % 2))
                os.replace(temp, directory / "rules.yaml")  # an editor's atomic save
                samples.append(await asyncio.wait_for(swapped.get(), 10) - start)
        report("reload_save_to_active_p50", statistics.median(samples) * 1000, "ms")
        report("reload_save_to_active_max", max(samples) * 1000, "ms")


if __name__ == "__main__":
    compile_times()
    evaluation()
    asyncio.run(reload_latency(20))
