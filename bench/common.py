"""Helpers for benchmarks: one `BENCH name=value unit` line per figure."""

from __future__ import annotations

import time
from collections.abc import Callable


def report(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name}={value:.4g} {unit}", flush=True)


def best_of(repeat: int, number: int, action: Callable[[], object]) -> float:
    """Best mean seconds per call over `repeat` rounds of `number` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            action()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def consumers_yaml(count: int, phases: int = 3) -> str:
    """A rule file with `count` consumers spread over the phases and priorities."""
    lines = [
        "site:",
        f"  phases: {phases}",
        '  battery_reservation: "5000 - SOC * 50 if SOC < 98 else 0"',
        "  continuous_inverter_power: 4000",
        "  mqtt: {host: 127.0.0.1}",
        "variables:",
        "  tank_temp: {mqtt: {topic: tank/temp, json: value}}",
        "consumers:",
    ]
    for i in range(count):
        phase = ("L1", "L2", "L3")[i % phases]
        lines += [
            f"  - id: c{i}",
            f"    shelly: {{host: 127.0.0.1, port: {10000 + i}}}",
            f"    power: {300 + (i * 37) % 2000}",
            f"    phase: {phase}",
            f"    priority: {(i * 7) % 100}",
            "    min_on: 30s",
            "    min_off: 1m",
            '    auto_when: "tank_temp < 70"',
        ]
    return "\n".join(lines) + "\n"
