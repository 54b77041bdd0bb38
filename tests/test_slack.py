"""A plan's slack keeps its promise: readings that moved less decide the same.

decide() reports how far the power readings and the reservation may move before any of
its comparisons comes out otherwise (core/slack.py); the simulator skips the cycles
whose readings moved less. Here each cycle of random rules on random readings is
decided again on readings moved just short of its slack, from the same state at the
same time: every consumer must end in the same state for the same kind of reason, and
the engine must remember the same. A comparison that does not report to the slack, or
a gain that understates how far a booking stretches a move, shows up as a difference.
"""

from __future__ import annotations

import math
import random
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Plan, Settings, Snapshot
from hems_rules.core.slack import POWER, ROUNDING, Baseline
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import RuleSet

START = datetime(2026, 6, 21, 12, tzinfo=UTC)
SOC = "/Dc/Battery/Soc"


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSet:
    consumers = [
        {
            "id": f"c{i}",
            "shelly": {"host": f"c{i}.invalid"},
            "power": draw(st.sampled_from([300, 800, 1500, 2500])),
            "phase": draw(st.sampled_from(["L1", "L2", "L3", "3P"])),
            "priority": draw(st.integers(0, 3)),
            "class": draw(st.sampled_from(["primary", "secondary"])),
            "min_on": draw(st.sampled_from([0, 30])),
            "min_off": draw(st.sampled_from([0, 30])),
            "on_delay": draw(st.sampled_from([0, 10])),
            "off_delay": draw(st.sampled_from([0, 10])),
            "on_margin": draw(st.sampled_from([0, 150])),
            "off_margin": draw(st.sampled_from([0, 150])),
        }
        for i in range(draw(st.integers(1, 6)))
    ]
    site: dict[str, Any] = {
        "phases": 3,
        "settle": draw(st.sampled_from([0, 5])),
        "dc_efficiency": draw(st.sampled_from([0.7, 0.925, 1.0])),
        "battery_reservation": draw(st.sampled_from(["0", "1500", "3000 - SOC * 30"])),
    }
    limit = draw(st.sampled_from([None, 1000, 2500]))
    if limit is not None:
        site["continuous_inverter_power"] = limit
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rules.yaml").write_text(
            yaml.safe_dump({"site": site, "consumers": consumers})
        )
        return load_rules(tmp)


def readings(rng: random.Random) -> dict[str, float | None]:
    system: dict[str, float | None] = {
        "/Dc/Pv/Power": rng.choice([0.0, rng.uniform(0, 3000)]),
        SOC: rng.uniform(20, 99),
    }
    for p in ("L1", "L2", "L3"):
        system[f"/Ac/PvOnGrid/{p}/Power"] = rng.uniform(0, 3000)
        system[f"/Ac/PvOnOutput/{p}/Power"] = rng.choice([0.0, rng.uniform(0, 500)])
        system[f"/Ac/Consumption/{p}/Power"] = rng.uniform(100, 2500)
    return system


def snapshot(
    system: dict[str, float | None], devices: dict[str, DeviceFact], hub4: int | None
) -> Snapshot:
    return Snapshot(
        system=MappingProxyType(dict(system)),
        settings=Settings(mode=1),
        devices=MappingProxyType(dict(devices)),
        hub4_mode=hub4,
    )


def moved_within(
    rules: RuleSet, plan: Plan, before: Snapshot, rng: random.Random
) -> Snapshot | None:
    """`before` with its readings moved by nearly the plan's slack (None: no room)."""
    if not ROUNDING * 2 < plan.slack < math.inf:
        return None
    baseline = Baseline(rules, plan, before)
    steps = {path: rng.uniform(-1, 1) for path in POWER if before.system.get(path) is not None}
    soc_step = rng.choice([0.0, rng.uniform(-2, 2)])
    scale = plan.slack  # the readings alone could move this far: then less, until it holds
    for _ in range(60):
        system = dict(before.system)
        total = sum(abs(step) for step in steps.values()) or 1.0
        for path, step in steps.items():
            system[path] = before.system[path] + step / total * scale  # type: ignore[operator]
        system[SOC] = before.system[SOC] + soc_step * scale / plan.slack  # type: ignore[operator]
        after = Snapshot(
            system=MappingProxyType(system),
            settings=before.settings,
            devices=before.devices,
            hub4_mode=before.hub4_mode,
        )
        if baseline.holds(after):
            return after
        scale *= 0.97
    return None


def outcome(plan: Plan, state: EngineState) -> tuple[Any, ...]:
    """What the slack promises: each decision's kind, and what the engine remembers
    (a new settling batch starts from the consumption of its cycle, which moved)."""
    decisions = [(d.consumer, d.state, d.code, d.controlled, d.command) for d in plan.decisions]
    settling = state.settling and replace(state.settling, baseline=None)
    return decisions, dict(state.consumers), settling


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_sets(), st.integers(0, 2**32), st.sampled_from([None, 1]))
def test_readings_moved_within_the_slack_decide_the_same(
    rules: RuleSet, seed: int, hub4: int | None
) -> None:
    rng = random.Random(seed)
    state = EngineState()
    devices = {c.id: DeviceFact(on=False) for c in rules.consumers}
    for cycle in range(25):
        now = START + timedelta(seconds=cycle * rng.choice([1, 3, 20]))
        before = snapshot(readings(rng), devices, hub4)
        plan, after_state = decide(rules, before, state, now)
        moved = moved_within(rules, plan, before, rng)
        if moved is not None:
            again, again_state = decide(rules, moved, state, now)
            assert outcome(again, again_state) == outcome(plan, after_state)
        state = after_state
        for d in plan.decisions:
            if d.command is not None and rng.random() < 0.9:  # now and then a relay lags
                power = rules.consumer(d.consumer).power if d.command else None
                devices[d.consumer] = DeviceFact(on=d.command, power=power)
