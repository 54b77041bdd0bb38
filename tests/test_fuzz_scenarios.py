"""Fuzz: malformed scenarios end in a located error or a run, within a time bound.

Three kinds of documents, from one scenario that uses every key of the language:
- its values replaced by hostile scalars (those of the rule fuzz, plus wrong words,
  unknown names, spans at and beyond the limits, odd times and zones);
- its data with any value replaced by a random one (any type, nested, null, huge,
  NaN, control characters), a key dropped or an unknown key added, written by PyYAML;
- its text with lines dropped (a missing `at`, broken nesting).
Whatever loads must be sound (finite times within the span, known names, states that
exist) and cost at most the documented cycles; a cheap one is run to its end.
"""

from __future__ import annotations

import copy
import math
import re
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.errors import RulesError
from hems_rules.simulate.scenario import (
    MAX_CYCLES,
    MAX_DECISIONS,
    Scenario,
    load_scenario,
    run_scenario,
)
from tests.test_fuzz_rules import HOSTILE, mutated

TIME_BOUND = 3.0  # s for one load and run; a hang or an expansion shows
RUN_CYCLES = 3000  # scenarios cheaper than this are run to their end
FUZZ = settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
YEAR = 366 * 86400.0

TEMPLATE = """\
description: {description}
start: {start}
plant: {{meter_lag: {meter_lag}}}
settings: {{Mode: {mode}, BatteryReservationEquation: {equation}, ContinuousInverterPower: {cip}}}
rules:
  site: {{phases: 1, battery_reservation: "0", loop_interval: {loop_interval}}}
  variables:
    tank: {{mqtt: {{topic: tank}}}}
    manual: {{dbus: {{service: com.victronenergy.switch.x, path: /SwitchableOutput/0/State}}}}
  consumers:
    - {{id: heater, shelly: {{host: h.invalid}}, power: {power}, auto_when: "tank < 70"}}
    - {{id: pump, shelly: {{host: p.invalid}}, power: 500}}
timeline:
  - at: {at0}
    system: {{/Ac/PvOnGrid/L1/Power: {pv}, /Ac/Consumption/L1/Power: {load}, /Dc/Battery/Soc: {soc}, /ActiveBmsService: {bms}}}
    variables: {{{variable}: {tank}}}
  - at: {at1}
    auto: {{{auto_id}: {auto}}}
    devices: {{{device_id}: {{{device_key}: {device_value}}}}}
    dbus: {{{dbus_service}: {{{dbus_path}: {dbus_value}}}}}
    settings: {{Mode: {mode2}}}
  - at: {at2}
    system: {system}
    rules: {step_rules}
expect:
  - at: {expect_at}
    state: {{{state_id}: {state}}}
    reservation: {reservation}
    reason: {{heater: {reason}}}
    relays: {{pump: {relay}}}
    switches: {{heater: {switches}}}
    runtime: {{heater: {runtime}}}
"""  # noqa: E501
GOOD = {
    "description": "a cloud passes",
    "start": '"2026-06-21T12:00:00+02:00[Europe/Berlin]"',
    "meter_lag": "1s",
    "mode": "1",
    "equation": '"1000 - SOC * 10"',
    "cip": "-1",
    "loop_interval": "2s",
    "power": "1000",
    "at0": "0s",
    "pv": "3000",
    "load": "500",
    "soc": "50",
    "bms": "com.victronenergy.battery.bms",
    "variable": "tank",
    "tank": "60",
    "at1": "20s",
    "at2": "30s",
    "auto_id": "pump",
    "auto": "0",
    "device_id": "heater",
    "device_key": "power",
    "device_value": "800",
    "dbus_service": "com.victronenergy.switch.x",
    "dbus_path": "/SwitchableOutput/0/State",
    "dbus_value": "1",
    "mode2": "1",
    "system": "{/Ac/PvOnGrid/L1/Power: 900}",
    "step_rules": '{site: {phases: 1, battery_reservation: "0"}, consumers: [{id: heater, '
    "shelly: {host: h.invalid}, power: 1000}]}",
    "expect_at": "40s",
    "state": "on",
    "state_id": "heater",
    "reservation": "500",
    "reason": "on",
    "relay": "off",
    "switches": "1",
    "runtime": "30s",
}
WRONG = st.sampled_from(
    [
        "{a: 1}",
        "[1, 2]",
        "{heater: on}",
        "[{at: 0s}]",
        "lots",
        "maybe",
        "nope",
        "heater",
        "pump",
        "tank",
        "Mode",
        "366d",
        "367d",
        "99999999999d",
        "30d",
        "1ms",
        "100ms",
        "25h",
        "11m",
        "on",
        "unavailable",
        '"2026-06-21T12:00:00+02:00[Europe/Berlin]"',
        '"2026-06-21T12:00:00[Nowhere/City]"',
        '"2026-06-21T12:00:00[../../etc/passwd]"',
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+14:00",
        "1969-12-31T23:00:00-05:00",
        "2026-06-21",
        "/Info/MaxChargeCurrent",
        "com.victronenergy.battery.x",
        "com.victronenergy.settings",
        "/Settings/CGwacs/Hub4Mode",
        "{site: {phases: 1, loop_interval: 100ms}}",
        "{consumers: [{id: x, shelly: {host: x.invalid}, power: 1}]}",
        "{site: {loop_interval: 0}}",
        '"\\x1b[2J"',
        "1e300",
        "-1",
        "1000001",
    ]
)


KEYS = st.one_of(
    st.text(max_size=8),
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=False),
    st.sampled_from(["heater", "tank", "/Dc/Battery/Soc", "com.victronenergy.battery.b"]),
)
ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(min_value=-1e6, max_value=1e6)
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=20)
    | st.sampled_from(
        [
            *("heater", "pump", "tank", "on", "off", "5s", "366d", "1e999", "\x1b[2J", "\x00"),
            *(10**30, -(10**20), 1e300, math.nan, math.inf, -math.inf),
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def places(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in `data`."""
    found = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            found += places(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += places(value, (*path, index))
    return found


@st.composite
def mutated_data(draw: st.DrawFn) -> str:
    data = yaml.safe_load(TEMPLATE.format(**GOOD))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(places(data)))
        if not path:
            data = draw(ANY)
            break
        *parents, last = path
        parent = data
        for part in parents:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "drop", "add", "rename"]))
        if action == "replace":
            parent[last] = draw(ANY)
        elif action == "drop":
            del parent[last]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(last)
        elif isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=10))] = draw(ANY)
        else:
            parent[last] = copy.deepcopy(parent)  # nested one level deeper
    return yaml.safe_dump(data, allow_unicode=False)


@st.composite
def dropped_lines(draw: st.DrawFn) -> str:
    lines = TEMPLATE.format(**GOOD).splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        del lines[draw(st.integers(min_value=0, max_value=len(lines) - 1))]
    return "\n".join(lines) + "\n"


def assert_sound(scenario: Scenario) -> None:
    """What the loader lets through: bounded, finite, and only names that exist."""
    consumers = {c.id for c in scenario.rules.consumers} | {
        c.id for s in scenario.steps if s.rules for c in s.rules.consumers
    }
    assert scenario.settings.mode in (0, 1)
    assert 0 <= scenario.meter_lag <= 600
    assert 1970 <= scenario.start.year <= 9997 and scenario.start.tzinfo is not None
    for step in scenario.steps:
        assert 0 <= step.at <= YEAR
    for expectation in scenario.expectations:
        assert 0 <= expectation.at <= YEAR
        for states in (expectation.state, expectation.relays):
            assert set(states.values()) <= {"on", "off", "unavailable"}
            assert set(states) <= consumers
        assert expectation.reservation is None or math.isfinite(expectation.reservation)
        for named in (expectation.reason, expectation.switches, expectation.runtime):
            assert set(named) <= consumers
    cycles, decisions = scenario.cost()
    assert cycles <= MAX_CYCLES and decisions <= MAX_DECISIONS


def simulate(tmp_path: Path, text: str) -> None:
    """The promise of `simulate` for one document, within the time bound."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    started = time.monotonic()
    try:
        scenario = load_scenario(path)
    except RulesError as err:
        assert err.problems
        for problem in err.problems:
            assert problem.file == str(path) and problem.line >= 1 and problem.column >= 1
            assert problem.message and not CONTROL.search(str(problem))
    else:
        assert_sound(scenario)
        if scenario.cost()[0] <= RUN_CYCLES:
            run_scenario(scenario)
    assert time.monotonic() - started < TIME_BOUND


def test_the_template_itself_loads_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(TEMPLATE.format(**GOOD))
    outcome = run_scenario(load_scenario(path))
    assert outcome.cycles > 20, outcome


@FUZZ
@given(mutated(TEMPLATE, GOOD, st.one_of(HOSTILE, WRONG)))
def test_hostile_values_in_a_scenario(tmp_path_factory: Any, text: str) -> None:
    simulate(tmp_path_factory.mktemp("fuzz"), text)


@FUZZ
@given(mutated_data())
def test_any_value_anywhere_in_a_scenario(tmp_path_factory: Any, text: str) -> None:
    simulate(tmp_path_factory.mktemp("fuzz"), text)


@FUZZ
@given(dropped_lines())
def test_lines_missing_from_a_scenario(tmp_path_factory: Any, text: str) -> None:
    simulate(tmp_path_factory.mktemp("fuzz"), text)


WRONG_VALUES: list[Any] = [None, True, -1, 10**15, "x", [1], {"a": 1}]
WRONG_KEYS: list[Any] = [None, True, 0, "x"]


def at(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def test_every_place_with_every_kind_of_wrong_value(tmp_path: Path) -> None:
    """Each value of the scenario (its rules have their own fuzz) replaced by each kind
    of wrong value, and each key by each kind of wrong key, one at a time: a sweep the
    random corpus may miss (a number as a dbus service name crashed the loader)."""
    good = yaml.safe_load(TEMPLATE.format(**GOOD))
    paths = [p for p in places(good) if p and "rules" not in p]
    for path in paths:
        for wrong in WRONG_VALUES:
            data = copy.deepcopy(good)
            at(data, path[:-1])[path[-1]] = wrong
            simulate(tmp_path, yaml.safe_dump(data))
        if isinstance(at(good, path[:-1]), dict):
            for key in WRONG_KEYS:
                data = copy.deepcopy(good)
                parent = at(data, path[:-1])
                parent[key] = parent.pop(path[-1])
                simulate(tmp_path, yaml.safe_dump(data))
    assert len(paths) > 40
