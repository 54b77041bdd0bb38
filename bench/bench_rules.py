"""Rules: compile time by size, expression evaluation per call, reload latency."""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import best_of, consumers_yaml, report

from hems_rules.expressions import compile_expression
from hems_rules.ruleset import load_rules


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


if __name__ == "__main__":
    compile_times()
    evaluation()
