"""The simulator skips cycles that cannot change the plan, and that changes nothing.

Every scenario, random scenarios and a solar day print the same decision lines and
meet the same expectations with and without skipping. The random scenarios expect what
hardly ever is, so that the failure messages show the plan each expectation read (state,
reason with its numbers, runtime, reservation, relays, switches): skipped cycles must
leave it exactly as running them would.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.core.model import Settings
from hems_rules.ruleset import load_rules
from hems_rules.simulate.day import SolarDay
from hems_rules.simulate.scenario import (
    Outcome,
    Scenario,
    decision_line,
    load_scenario,
    run_scenario,
)

REPO = Path(__file__).parent.parent
SCENARIOS = sorted((REPO / "tests" / "scenarios").glob("*.yaml")) + sorted(
    (REPO.parent / "shared" / "scenarios").glob("*.yaml")
)


def simulate(scenario: Scenario, *, skip: bool, **kwargs: Any) -> tuple[list[str], Outcome]:
    """The decision lines `simulate` prints, and the outcome."""
    lines: list[str] = []
    outcome = run_scenario(
        scenario, lambda at, d: lines.append(decision_line(at, d)), skip_idle=skip, **kwargs
    )
    return lines, outcome


def both_ways(scenario: Scenario) -> tuple[list[str], Outcome]:
    """The same lines, failures and commands with skipping and without."""
    lines, outcome = simulate(scenario, skip=True)
    every_lines, every = simulate(scenario, skip=False)
    assert lines == every_lines
    assert [str(f) for f in outcome.failures] == [str(f) for f in every.failures]
    assert outcome.commands == every.commands
    assert (outcome.cycles, every.skipped) == (every.cycles, 0)
    return lines, outcome


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_decides_the_same_with_idle_cycles_skipped(path: Path) -> None:
    both_ways(load_scenario(path))


def test_idle_cycles_are_skipped() -> None:
    """A day of daily runtime runs a handful of cycles, not one per loop_interval."""
    _, outcome = both_ways(load_scenario(REPO / "tests/scenarios/s61_runtime_min_and_max.yaml"))
    assert outcome.skipped > 5000
    assert outcome.cycles - outcome.skipped < 50


def test_a_solar_hour_decides_the_same_with_idle_cycles_skipped() -> None:
    """The example rules under a driver that changes the world every second."""
    start = datetime(2026, 6, 21, 5, 50, tzinfo=UTC)
    scenario = Scenario("day", load_rules(REPO / "rules"), Settings(mode=1), (), (), start, 2.0)
    days = []
    for skip in (True, False):
        day = SolarDay(start_h=5 + 50 / 60, soc=60.0, cloud_count=200)
        lines, _ = simulate(scenario, skip=skip, driver=day.apply, until=3600.0)
        days.append((lines, day.soc, day.tank_temp))
    assert days[0] == days[1]
    assert len(days[0][0]) > 5


# -- random scenarios -----------------------------------------------------------------

STARTS = [
    "2026-06-21T12:00:00+02:00",
    "2026-06-21T23:40:00+02:00",  # midnight on the way
    "2026-03-29T01:45:00+01:00[Europe/Berlin]",  # a 23 h day
]
DURATIONS = [0, 5, 10, 30, 60, 90]  # s
HORIZON = 2400  # s


@st.composite
def consumers(draw: st.DrawFn, index: int, phases: int, start: datetime) -> dict[str, Any]:
    consumer: dict[str, Any] = {
        "id": f"c{index}",
        "shelly": {"host": f"c{index}.invalid"},
        "power": draw(st.sampled_from([300, 500, 1000, 2000])),
        "phase": draw(st.sampled_from(["L1"] if phases == 1 else ["L1", "L2", "L3", "3P"])),
        "priority": draw(st.integers(0, 3)),
        "class": draw(st.sampled_from(["primary", "secondary"])),
        "min_on": draw(st.sampled_from(DURATIONS)),
        "min_off": draw(st.sampled_from(DURATIONS)),
        "on_delay": draw(st.sampled_from(DURATIONS)),
        "off_delay": draw(st.sampled_from(DURATIONS)),
        "on_margin": draw(st.sampled_from([0, 100])),
        "off_margin": draw(st.sampled_from([0, 100])),
        "on_stale": draw(st.sampled_from(["off", "hold"])),
        "on_release": draw(st.sampled_from(["off", "keep"])),
    }
    if draw(st.booleans()):
        consumer["max_starts_per_day"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        consumer["auto_when"] = "temp < 50"
    if draw(st.booleans()):
        runtime: dict[str, Any] = {}
        if draw(st.booleans()):
            runtime["min"] = draw(st.sampled_from([60, 300, 900]))
            by = datetime.fromtimestamp(
                start.timestamp() + draw(st.integers(0, HORIZON // 60)) * 60, start.tzinfo
            )
            # A deadline must leave the day room for the minimum.
            fits = (by.hour * 60 + by.minute) * 60 >= runtime["min"]
            runtime["by"] = by.strftime("%H:%M") if fits else "24:00"
        if draw(st.booleans()):
            runtime["max"] = runtime.get("min", 0) + draw(st.sampled_from([30, 120, 600]))
        if runtime:
            consumer["runtime"] = runtime
    return consumer


@st.composite
def steps(draw: st.DrawFn, ids: list[str], phases: int) -> dict[str, Any]:
    step: dict[str, Any] = {"at": draw(st.integers(0, HORIZON))}
    names = ["L1", "L2", "L3"][:phases]
    system: dict[str, Any] = {}
    for phase in names:
        if draw(st.booleans()):
            system[f"/Ac/PvOnGrid/{phase}/Power"] = draw(st.sampled_from([0, 800, 1500, 4000]))
        if draw(st.booleans()):
            system[f"/Ac/Consumption/{phase}/Power"] = draw(st.sampled_from([None, 200, 900]))
    if draw(st.booleans()):
        system["/Dc/Battery/Soc"] = draw(st.sampled_from([None, 20, 60, 99]))
    if system:
        step["system"] = system
    if draw(st.booleans()):
        step["variables"] = {"temp": draw(st.sampled_from([None, 40, 60]))}
    if draw(st.booleans()):
        step["auto"] = {draw(st.sampled_from(ids)): draw(st.sampled_from([0, 1]))}
    if draw(st.booleans()):
        device = draw(
            st.sampled_from([{"offline": True}, {"offline": False}, {"power": 0}, {"stuck": True}])
        )
        step["devices"] = {draw(st.sampled_from(ids)): device}
    if draw(st.integers(0, 5)) == 0:
        step["settings"] = {"Mode": draw(st.sampled_from([0, 1]))}
    return step


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    start_text = draw(st.sampled_from(STARTS))
    start = datetime.fromisoformat(start_text.partition("[")[0])
    phases = draw(st.sampled_from([1, 3]))
    names = ["L1", "L2", "L3"][:phases]
    site: dict[str, Any] = {
        "phases": phases,
        "loop_interval": draw(st.sampled_from([1, 2, 5])),
        "settle": draw(st.sampled_from([1, 5])),
        "battery_reservation": draw(st.sampled_from(["0", "1000", "3000 - SOC * 30"])),
    }
    limit = draw(st.sampled_from([None, 1500, 3000]))
    if limit is not None:
        site["continuous_inverter_power"] = limit
    temp: dict[str, Any] = {"service": "com.victronenergy.temperature.t", "path": "/Temperature"}
    stale_after = draw(st.sampled_from([None, 30, 300]))
    if stale_after is not None:
        temp["stale_after"] = stale_after
    listed = [draw(consumers(i, phases, start)) for i in range(draw(st.integers(1, 4)))]
    ids = [c["id"] for c in listed]
    first = {
        "at": 0,
        "system": {f"/Ac/PvOnGrid/{p}/Power": 2000 for p in names}
        | {f"/Ac/Consumption/{p}/Power": 300 for p in names}
        | {"/Dc/Battery/Soc": 50},
        "variables": {"temp": 40},
    }
    # Expect what hardly ever is: the failure messages show the plan each one read.
    expect = [
        {
            "at": at,
            "state": dict.fromkeys(ids, "unavailable"),
            "runtime": dict.fromkeys(ids, "25h"),
            "relays": dict.fromkeys(ids, "unavailable"),
            "switches": dict.fromkeys(ids, 999),
            "reservation": 999999,
        }
        for at in draw(st.lists(st.integers(0, HORIZON), min_size=1, max_size=6))
    ]
    return {
        "start": start_text,
        "plant": {"meter_lag": draw(st.sampled_from([0, 2]))},
        "rules": {"site": site, "variables": {"temp": {"dbus": temp}}, "consumers": listed},
        "timeline": [first, *draw(st.lists(steps(ids, phases), max_size=8))],
        "expect": expect,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_scenarios_decide_the_same_with_idle_cycles_skipped(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "random.yaml"
        file.write_text(yaml.safe_dump(data))
        scenario = load_scenario(file)
    _, outcome = both_ways(scenario)
    assert outcome.failures  # every expectation fails, naming what it read


# -- random worlds that move every second --------------------------------------------

WORLD_SPAN = 1800.0  # s of a solar day, from a random hour


@st.composite
def moving_worlds(draw: st.DrawFn) -> tuple[Scenario, dict[str, Any]]:
    """Random rules under a solar day with clouds and house spikes, every reading moving
    each second: the skipping on slack (core/slack.py) meets every comparison there is,
    feeding a phase from another at the inverter's efficiency or at par (Hub4Mode 1),
    inverter limits, settling, auto_when on a tank the loads heat, reservations of SOC."""
    start = datetime(2026, 6, 21, tzinfo=UTC)
    listed = [draw(consumers(i, 3, start)) for i in range(draw(st.integers(2, 5)))]
    for consumer in listed:
        if "auto_when" in consumer:
            consumer["auto_when"] = "tank_temp < 44"
    site: dict[str, Any] = {
        "phases": 3,
        "loop_interval": draw(st.sampled_from([1, 2])),
        "settle": draw(st.sampled_from([1, 5])),
        "dc_efficiency": draw(st.sampled_from([0.8, 0.925])),
        "battery_reservation": draw(
            st.sampled_from(["0", "1000", "3000 - SOC * 30", "2000 if SOC < 50.5 else 0"])
        ),
    }
    limit = draw(st.sampled_from([None, 800, 1500, 3000]))
    if limit is not None:
        site["continuous_inverter_power"] = limit
    source = {"service": "com.victronenergy.temperature.t", "path": "/Temperature"}
    data: dict[str, Any] = {
        "start": start.isoformat(),
        "plant": {"meter_lag": draw(st.sampled_from([0, 2]))},
        "rules": {"site": site, "variables": {"tank_temp": {"dbus": source}}, "consumers": listed},
        "timeline": [],
    }
    if draw(st.booleans()):
        hub4 = {"/Settings/CGwacs/Hub4Mode": 1}
        data["timeline"] = [{"at": 0, "dbus": {"com.victronenergy.settings": hub4}}]
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "world.yaml"
        file.write_text(yaml.safe_dump(data))
        scenario = load_scenario(file)
    world = {
        "start_h": draw(st.sampled_from([6.5, 9.0, 12.0, 15.5, 19.8])),
        "ac_pv_peak": draw(st.sampled_from([1500.0, 6000.0, 9000.0])),
        "dc_pv_peak": draw(st.sampled_from([0.0, 800.0, 4000.0])),
        "house_base": draw(st.sampled_from([100.0, 600.0])),
        "soc": draw(st.sampled_from([49.9, 50.4, 97.0])),
        "battery_wh": 2000.0,  # SOC moves fast
        "tank_temp": 43.9,
        "tank_wh_per_k": 20.0,  # the loads heat it past auto_when's bound in seconds
        "tank_heaters": tuple(c["id"] for c in listed),
        "cloud_count": draw(st.sampled_from([0, 400])),
        "seed": draw(st.integers(0, 1000)),
    }
    return scenario, world


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moving_worlds())
def test_random_moving_worlds_decide_the_same_with_cycles_skipped_on_slack(
    world: tuple[Scenario, dict[str, Any]],
) -> None:
    scenario, parameters = world
    runs = []
    for skip in (True, False):
        day = SolarDay(**parameters)
        lines, outcome = simulate(scenario, skip=skip, driver=day.apply, until=WORLD_SPAN)
        runs.append((lines, outcome.commands, day.soc, day.tank_temp))
    assert runs[0] == runs[1]
