"""Replay: a recorded day through the engine with other rules, beside what really happened."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from hems_rules.history.recorder import Recorder, rules_summary
from hems_rules.history.recording import Batch, Event, Recording
from hems_rules.ruleset import RuleSet, load_rules
from hems_rules.ruleset.rules import HistoryConfig
from hems_rules.simulate import scenario
from hems_rules.simulate.day import cycles
from hems_rules.simulate.replay import replay, report
from tests.conftest import rules_from
from tests.history_rig import RULES

REPO = Path(__file__).parent.parent
START = datetime(2026, 6, 21, 11, 0).astimezone()


def hand_made(rules: RuleSet) -> Recording:
    """Two 5 s buckets on one phase: a sunny one, and one where the sun drops."""
    t0 = START.timestamp()
    recording = Recording.empty(t0, t0 + 10)
    columns: dict[str, list[float | None]] = {
        "sys:/Ac/PvOnGrid/L1/Power": [3000.0, 1500.0],
        "sys:/Ac/Consumption/L1/Power": [1900.0, 1900.0],  # house 400, pump 500, heater 1000
        "draw:pump": [500.0, 500.0],
        "on:pump": [1.0, 1.0],
        "draw:heater": [1000.0, 1000.0],
        "on:heater": [1.0, 1.0],
        "plan:reservation": [1000.0, 1000.0],
    }
    events = [
        Event(t0 - 60, "rules", "rules", rules_summary(rules)),
        Event(t0 - 60, "settings", "Mode", 1),
        Event(t0 + 1, "decision", "heater", {"state": "on", "reason": "r", "command": True}),
    ]
    recording.add(Batch(5.0, recording.first, columns, events))
    return recording


def test_the_figures_of_a_recorded_day_follow_their_definitions() -> None:
    rules = rules_from(RULES.replace('"1000"}', '"1000", continuous_inverter_power: 100}'))
    recorded = replay(hand_made(rules), rules).recorded
    pump, heater = recorded.consumer("pump"), recorded.consumer("heater")
    hours = 5 / 3600
    # Sunny: 2600 W beyond the house; the pump (first) takes 500, the heater 1000.
    # Cloudy: 1100 W; the pump takes 500 (400 of it from the lowest 1000 W, the
    # reservation), the heater the last 600 (all of it reserved) and 400 W from the grid.
    assert pump.from_surplus_wh == pytest.approx(1000 * hours)
    assert heater.from_surplus_wh == pytest.approx(1600 * hours)
    assert heater.from_grid_wh == pytest.approx(400 * hours)
    assert pump.shortfall_wh == pytest.approx(400 * hours)
    assert heater.shortfall_wh == pytest.approx(600 * hours)
    assert recorded.unused_surplus_wh == pytest.approx(1100 * hours)
    # 1900 W against 100 W of inverter plus 1500 W of PV in the second bucket.
    assert recorded.total.over_limit_s == 5 and pump.over_limit_s == 5 and heater.over_limit_s == 5
    assert heater.starts == 1 and pump.starts == 0
    assert pump.runtime_s == 10


@pytest.fixture(scope="module")
def recorded_day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RuleSet]]:
    """Ninety minutes of the demo's solar day with the example rules, recorded at 1 s cycles."""
    rules = load_rules(REPO / "rules")
    directory = tmp_path_factory.mktemp("history")

    async def record() -> None:
        async with Recorder(HistoryConfig(path=str(directory)), rules) as recorder:
            for record in cycles(rules, START, 1.5):
                recorder.publish(record)

    asyncio.run(record())
    yield directory, rules


def read(directory: Path) -> Recording:
    async def day() -> Recording:
        async with Recorder(HistoryConfig(path=str(directory)), load_rules(REPO / "rules")) as r:
            return await r.read(START.date())

    return asyncio.run(day())


def test_the_same_rules_replay_the_recorded_day(recorded_day: tuple[Path, RuleSet]) -> None:
    directory, rules = recorded_day
    comparison = replay(read(directory), rules)
    recorded, what_if = comparison.recorded, comparison.what_if
    assert comparison.seconds == pytest.approx(5400, abs=10)
    assert recorded.total.from_surplus_wh > 5000  # the heaters and the pool really ran
    assert what_if.total.from_surplus_wh == pytest.approx(recorded.total.from_surplus_wh, rel=0.03)
    for mine in recorded.consumers:
        theirs = what_if.consumer(mine.id)
        assert theirs.runtime_s == pytest.approx(mine.runtime_s, abs=60), mine.id
        assert abs(theirs.starts - mine.starts) <= 1, mine.id
    assert what_if.unused_surplus_wh == pytest.approx(recorded.unused_surplus_wh, rel=0.05)


def test_a_consumer_taken_out_leaves_its_energy_to_the_others(
    recorded_day: tuple[Path, RuleSet],
) -> None:
    directory, rules = recorded_day
    without = replace(rules, consumers=tuple(c for c in rules.consumers if c.id != "heater_l1"))
    comparison = replay(read(directory), without)
    recorded, what_if = comparison.recorded, comparison.what_if
    gone = recorded.consumer("heater_l1").from_surplus_wh
    assert gone > 500
    assert what_if.consumer("heater_l1").runtime_s == 0
    # Its share goes to the pool e-heater behind it or stays with the battery / export.
    others = what_if.total.from_surplus_wh - (recorded.total.from_surplus_wh - gone)
    assert others + (what_if.unused_surplus_wh - recorded.unused_surplus_wh) == pytest.approx(
        gone, rel=0.1
    )
    text = report(comparison, "rules/")
    assert "Heater L1" in text and "energy from the surplus (kWh)" in text


def test_a_lower_inverter_limit_is_obeyed_in_the_what_if(
    recorded_day: tuple[Path, RuleSet],
) -> None:
    directory, rules = recorded_day
    tight = replace(rules, site=replace(rules.site, continuous_inverter_power=600.0))
    comparison = replay(read(directory), tight)
    assert comparison.what_if.total.from_surplus_wh < comparison.recorded.total.from_surplus_wh
    assert comparison.what_if.total.over_limit_s < 60


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hems_rules.cli", "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


def test_the_command_prints_the_comparison_and_json(recorded_day: tuple[Path, RuleSet]) -> None:
    directory, _ = recorded_day
    shown = cli(str(directory), "--rules", "rules")
    assert shown.returncode == 0, shown.stderr
    assert "as recorded, beside the same day with the rules of rules" in shown.stdout
    assert "Pool heat pump" in shown.stdout and "total" in shown.stdout
    data = json.loads(cli(str(directory / "history.db"), "--json").stdout)
    assert data["day"] == START.date().isoformat()
    assert set(data["recorded"]["consumers"]) == set(data["what_if"]["consumers"])
    assert data["what_if"]["total"]["from_surplus_wh"] > 5000


def test_the_command_says_what_it_lacks(tmp_path: Path, recorded_day: tuple[Path, RuleSet]) -> None:
    directory, _ = recorded_day
    other = (START - timedelta(days=3)).date().isoformat()
    missing = cli(str(directory), "--day", other)
    assert missing.returncode == 1
    assert f"nothing was recorded on {other}" in missing.stderr
    assert START.date().isoformat() in missing.stderr
    empty = cli(str(tmp_path / "nowhere"))
    assert empty.returncode == 2 and "cannot read the history" in empty.stderr


def test_the_what_if_is_the_same_with_idle_cycles_skipped(
    recorded_day: tuple[Path, RuleSet], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, rules = recorded_day
    skipped = replay(read(directory), rules).as_json()
    every_cycle = functools.partial(scenario.run_scenario, skip_idle=False)
    monkeypatch.setattr("hems_rules.simulate.replay.run_scenario", every_cycle)
    assert replay(read(directory), rules).as_json() == skipped
