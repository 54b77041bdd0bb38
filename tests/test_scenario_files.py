"""Scenario files as a careless user writes them: a located error and exit 2, or a run.

Each case names where `simulate` must point (file:line:col: path) and what it must say.
Before, these ended in a traceback, ran forever, or ran a scenario other than the one
written (a string read as 0, an unknown consumer ignored, `maybe` reported as FAILED).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from hems_rules.cli import main
from hems_rules.errors import HemsError
from hems_rules.ruleset import schema
from hems_rules.simulate.scenario import (
    MAX_CYCLES,
    MAX_DECISIONS,
    ScenarioError,
    load_scenario,
    run_scenario,
)
from hems_rules.sources.dbus import SYSTEM_PATHS

REPO = Path(__file__).parent.parent

RULES = """\
rules:
  site: {phases: 1, battery_reservation: "0"}
  variables:
    tank: {mqtt: {topic: tank}}
  consumers:
    - {id: heater, shelly: {host: h.invalid}, power: 1000}
"""
STEP = "  - at: 0s\n    system: {/Ac/PvOnGrid/L1/Power: 2000, /Ac/Consumption/L1/Power: 500}\n"
CHECK = "  - at: 5s\n    state: {heater: on}\n"


def scenario(step: str = STEP, check: str = CHECK, top: str = "", rules: str = RULES) -> str:
    """The rules above, `top` keys, one timeline step and one expectation."""
    return rules + top + "timeline:\n" + step + "expect:\n" + check


def step(body: str) -> str:
    return scenario(step=f"  - at: 0s\n    {body}\n")


def check(body: str) -> str:
    return scenario(check=f"  - at: 5s\n    {body}\n")


def top(body: str) -> str:
    return scenario(top=f"{body}\n")


def refused(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    """What `simulate` prints for a scenario it must refuse with exit code 2."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert main(["simulate", str(path)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and not captured.out
    return captured.err.replace(str(path), "s.yaml")


# Issue 15 item 9: each of these ended in a traceback, or in a message without a place
# (NaN and infinity already end in the YAML loader's number check: the examples).
CRASHES = [
    (
        scenario(step="  - at: .nan\n    variables: {tank: 1}\n"),
        "8:9: timeline[0].at:",
        "nan is not a finite number",
    ),
    (
        step("system: {/Dc/Battery/Soc: []}"),
        "9:31: timeline[0].system./Dc/Battery/Soc:",
        "[] is not a number or null",
    ),
    (
        step("system: {/Dc/Battery/Soc: {}}"),
        "9:31: timeline[0].system./Dc/Battery/Soc:",
        "{} is not a number or null",
    ),
    (
        step("system: {/Dc/Battery/Soc: .nan}"),
        "9:31: timeline[0].system./Dc/Battery/Soc:",
        "nan is not a finite number",
    ),
    (
        step("system: {/Dc/Battery/Soc: .inf}"),
        "9:31: timeline[0].system./Dc/Battery/Soc:",
        "inf is not a finite number",
    ),
    (check("reservation: lots"), "12:18: expect[0].reservation:", '"lots" is not a power'),
    (
        step("auto: {heater: x}"),
        "9:20: timeline[0].auto.heater:",
        '"x" is not 0 (manual) or 1 (automatic)',
    ),
    (
        step("variables: {tank: {a: 1}}"),
        "9:23: timeline[0].variables.tank:",
        '{"a": 1} is not a number or null',
    ),
    (RULES + "settings: {Nope: 1}\n", "7:12: settings.Nope:", "unknown key 'Nope'"),
    (RULES + "settings: [1]\n", "7:11: settings:", "[1] is not a mapping of Mode"),
    (RULES + "timeline: 5\n", "7:11: timeline:", "5 is not a list of steps"),
    (RULES + "expect: [5]\n", "7:10: expect[0]:", "5 is not of type 'object'"),
    (top("start: yesterday"), "7:8: start:", '"yesterday" is not a time like'),
    (top("start: 5"), "7:8: start:", "int is not a time like"),
    (top("start: 2026-06-21"), "7:8: start:", "a date alone"),
    (top("start: 9999-12-31T23:00:00Z"), "7:8: start:", "9999 is not a year from 1970 to 9997"),
    (
        top('start: "2026-06-21T12:00:00[Mars/Olympus]"'),
        "7:8: start:",
        '"Mars/Olympus" is not a time zone',
    ),
    (top('start: "2026-06-21T12:00:00[../../etc/passwd]"'), "7:8: start:", "is not a time zone"),
    (top("plant: {meter_lag: lots}"), "7:20: plant.meter_lag:", "is not a duration"),
    (
        step("devices: {heater: 5}"),
        "9:23: timeline[0].devices.heater:",
        "5 is not a mapping of offline, power or stuck",
    ),
    (
        step("devices: {heater: {power: lots}}"),
        "9:31: timeline[0].devices.heater.power:",
        '"lots" is not a power',
    ),
    (
        step("devices: {heater: {offline: 1}}"),
        "9:33: timeline[0].devices.heater.offline:",
        "1 is not of type 'boolean'",
    ),
    (step("rules: 5"), "9:12: timeline[0].rules:", "5 is not a rule document"),
    (check("switches: {heater: x}"), "12:24: expect[0].switches.heater:", '"x" is not a count'),
    (check("runtime: {heater: lots}"), "12:23: expect[0].runtime.heater:", "is not a duration"),
    (check("reason: {heater: [1]}"), "12:22: expect[0].reason.heater:", "[1] is not a text"),
    ("- 1\n", "1:1:", "[1] is not a scenario"),
    ("", "1:1:", "null is not a scenario"),
]


def test_a_file_that_is_not_a_scenario_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"rules: {}\n\xff\xfe")
    assert main(["simulate", str(path)]) == 2
    assert "s.yaml:1:1: not UTF-8 text: byte 10 is 0xff" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path)]) == 2
    assert "a directory, not a scenario" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml:1:1: vanished while it was read" in capsys.readouterr().err


def test_every_problem_is_listed_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = scenario(
        step="  - at: 0s\n    auto: {heatr: 1}\n    variables: {tnk: 1}\n",
        check="  - at: 5s\n    state: {pump: on}\n",
    )
    lines = refused(tmp_path, text, capsys).splitlines()
    assert lines == [
        "s.yaml:9:12: timeline[0].auto.heatr: unknown consumer 'heatr': did you mean 'heater'?",
        "s.yaml:10:17: timeline[0].variables.tnk: unknown variable 'tnk': did you mean 'tank'?",
        "s.yaml:13:13: expect[0].state.pump: unknown consumer 'pump': not in the scenario's rules",
    ]


# Issue 15 item 10: these ran forever (or for days).
SPANS = [
    (
        scenario(check="  - at: .inf\n    state: {heater: on}\n"),
        "11:9: expect[0].at:",
        "inf is not a finite number",
    ),
    (
        scenario(check="  - at: 99999999999d\n    state: {heater: on}\n"),
        "11:9: expect[0].at:",
        '"99999999999d" is longer than 366d',
    ),
    (
        scenario(check="  - at: 367d\n    state: {heater: on}\n"),
        "11:9: expect[0].at:",
        '"367d" is longer than 366d',
    ),
    (
        scenario(step="  - at: 400d\n    variables: {tank: 1}\n"),
        "8:9: timeline[0].at:",
        '"400d" is longer than 366d',
    ),
    (
        scenario(
            check="  - at: 30d\n    state: {heater: on}\n",
            rules=RULES.replace("phases: 1,", "phases: 1, loop_interval: 100ms,"),
        ),
        "11:9: expect[0].at:",
        "the scenario runs 30d: 25,920,000 loop cycles, more than the 16,000,000 simulate runs",
    ),
]


def consumers(count: int) -> str:
    listed = "\n".join(
        f"    - {{id: c{i}, shelly: {{host: c{i}.invalid}}, power: 100}}" for i in range(count)
    )
    return f'rules:\n  site: {{phases: 1, battery_reservation: "0"}}\n  consumers:\n{listed}\n'


def test_the_limits_count_the_loop_interval_and_consumers_of_each_reload(tmp_path: Path) -> None:
    """A year at the default 2 s is allowed; faster loops and more consumers cost more."""
    path = tmp_path / "s.yaml"
    year = "expect:\n  - at: 366d\n    state: {c0: on}\n"
    path.write_text(consumers(6) + year)
    cycles, decisions = load_scenario(path).cost()
    assert cycles == 366 * 86400 / 2 <= MAX_CYCLES and decisions == 6 * cycles <= MAX_DECISIONS

    path.write_text(consumers(7) + year)
    with pytest.raises(
        ScenarioError, match="110,678,400 consumer decisions, more than 100,000,000"
    ):
        load_scenario(path)

    # From day 10 the rules loop every 100 ms: day 10 to 366 would be 308 million cycles.
    fast = consumers(1).replace("phases: 1,", "phases: 1, loop_interval: 100ms,")
    reload = "    rules:\n" + "\n".join("    " + line for line in fast.splitlines()[1:]) + "\n"
    path.write_text(
        consumers(1) + "timeline:\n  - at: 10d\n" + reload + year.replace("366d", "11d")
    )
    cycles, _ = load_scenario(path).cost()
    assert cycles == pytest.approx(10 * 86400 / 2 + 86400 / 0.1)
    path.write_text(consumers(1) + "timeline:\n  - at: 10d\n" + reload + year)
    with pytest.raises(ScenarioError, match=r"s.yaml:12:9: expect\[0\].at: the scenario runs 366d"):
        load_scenario(path)


# Issue 15 item 11: each of these ran without a word about the mistake.
SILENT = [
    (step("auto: {pump: 0}"), "9:12: timeline[0].auto.pump:", "unknown consumer 'pump'"),
    (
        step("devices: {pump: {offline: true}}"),
        "9:15: timeline[0].devices.pump:",
        "unknown consumer 'pump'",
    ),
    (check("relays: {pump: on}"), "12:14: expect[0].relays.pump:", "unknown consumer 'pump'"),
    (check("switches: {pump: 1}"), "12:16: expect[0].switches.pump:", "unknown consumer 'pump'"),
    (check("runtime: {pump: 1h}"), "12:15: expect[0].runtime.pump:", "unknown consumer 'pump'"),
    (check("reason: {pump: x}"), "12:14: expect[0].reason.pump:", "unknown consumer 'pump'"),
    (check("state: {pump: on}"), "12:13: expect[0].state.pump:", "unknown consumer 'pump'"),
    (step("variables: {temp: 50}"), "9:17: timeline[0].variables.temp:", "unknown variable 'temp'"),
    (
        scenario(step="  - system: {/Dc/Battery/Soc: 50}\n"),
        "8:5: timeline[0]:",
        "'at' is a required property",
    ),
    (
        scenario(check="  - state: {heater: on}\n"),
        "11:5: expect[0]:",
        "'at' is a required property",
    ),
    (scenario(step="  - at: 5s\n"), "8:5: timeline[0]:", "a step changes something"),
    (scenario(check="  - at: 5s\n"), "11:5: expect[0]:", "an expectation checks something"),
    (
        step("system: {/Ac/PvOnGrid/L1/Power: lots}"),
        "9:37: timeline[0].system./Ac/PvOnGrid/L1/Power:",
        '"lots" is not a number or null',
    ),
    (
        step('system: {/Ac/PvOnGrid/L1/Power: "3000"}'),
        "9:37: timeline[0].system./Ac/PvOnGrid/L1/Power:",
        '"3000" is not a number or null',
    ),
    (
        step("system: {/Ac/PvOnGrid/L1/Power: true}"),
        "9:37: timeline[0].system./Ac/PvOnGrid/L1/Power:",
        "true is not a number or null",
    ),
    (
        step("variables: {tank: on}"),
        "9:23: timeline[0].variables.tank:",
        "true is not a number or null",
    ),
    (
        step("system: {/Ac/Consumtion/L1/Power: 500}"),
        "9:14: timeline[0].system./Ac/Consumtion/L1/Power:",
        "did you mean '/Ac/Consumption/L1/Power'?",
    ),
    (
        step("system: {/ActiveBmsService: 5}"),
        "9:33: timeline[0].system./ActiveBmsService:",
        "5 is not a battery service name",
    ),
    (top("settings: {Mode: 7}"), "7:18: settings.Mode:", "7 is not 0 (off) or 1 (on)"),
    (top("settings: {Mode: on}"), "7:18: settings.Mode:", "true is not 0 (off) or 1 (on)"),
    (
        top("settings: {ContinuousInverterPower: -5}"),
        "7:37: settings.ContinuousInverterPower:",
        "-5 is not a power from 0 to 1000000 W, or -1",
    ),
    (
        step("auto: {heater: on}"),
        "9:20: timeline[0].auto.heater:",
        "true is not 0 (manual) or 1 (automatic)",
    ),
    (
        check("state: {heater: maybe}"),
        "12:21: expect[0].state.heater:",
        '"maybe" is not on, off or unavailable',
    ),
    (
        check("relays: {heater: 1}"),
        "12:22: expect[0].relays.heater:",
        "1 is not on, off or unavailable",
    ),
    (
        check('reason: {heater: ""}'),
        "12:22: expect[0].reason.heater:",
        '"" is not a text of 1 to 500 characters',
    ),
    (
        step("dbus: {com.victronenergy.battery.bms: {/Info/MaxChargCurrent: 40}}"),
        "9:44: timeline[0].dbus.com.victronenergy.battery.bms./Info/MaxChargCurrent:",
        "nothing reads /Info/MaxChargCurrent of com.victronenergy.battery.bms",
    ),
    (
        step("dbus: {com.victronenergy.switch.x: {/SwitchableOutput/0/State: 1}}"),
        "9:41: timeline[0].dbus.com.victronenergy.switch.x./SwitchableOutput/0/State:",
        "nothing reads",
    ),
    (
        step("dbus: {battery: {/Info/MaxChargeCurrent: 40}}"),
        "9:11: timeline[0].dbus:",
        "'battery' does not match",
    ),
]


@pytest.mark.timeout(20)  # a span that runs instead of being refused shows
@pytest.mark.parametrize(("text", "place", "message"), CRASHES + SPANS + SILENT)
def test_wrong_scenarios_are_located_errors_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, place: str, message: str
) -> None:
    err = refused(tmp_path, text, capsys)
    assert err.startswith(f"s.yaml:{place}"), err
    assert message in err, err


def test_inline_rules_are_located_by_their_whole_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reload = "  - at: 10s\n    rules:\n      consumers:\n        - {id: heater, power: -1}\n"
    text = scenario(step=STEP + reload, rules=RULES.replace("power: 1000", "power: lots"))
    assert refused(tmp_path, text, capsys).splitlines() == [
        "s.yaml:6:54: rules.consumers[0].power: 'lots' is not of type 'number'",
        "s.yaml:13:11: timeline[1].rules.consumers[0]: needs exactly one relay: shelly: or dbus:",
        "s.yaml:13:31: timeline[1].rules.consumers[0].power: -1 is less than the minimum of 0",
    ]


def test_inline_rules_and_a_rules_directory_are_one_too_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(scenario())
    assert main(["simulate", str(path), "--rules", str(REPO / "rules")]) == 2
    assert "s.yaml:1:1: rules: the scenario has its own rules" in capsys.readouterr().err


def test_a_consumer_the_rules_no_longer_have_fails_its_expectations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """reason: and runtime: of a removed consumer crashed the run with a KeyError."""
    reload = "  - at: 10s\n    rules: {site: {phases: 1}}\n"
    check = "  - at: 20s\n    reason: {heater: x}\n    runtime: {heater: 10s}\n"
    path = tmp_path / "s.yaml"
    path.write_text(scenario(step=STEP + reload, check=check))
    assert main(["simulate", str(path)]) == 1
    assert "expect[0] at 20s: heater is not in the rules now" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("start", "local"),
    [
        (
            "2026-06-21T12:00:00+02:00",
            datetime(2026, 6, 21, 12, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "'2026-06-21T12:00:00+02:00'",
            datetime(2026, 6, 21, 12, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-06-21 10:00:00", datetime(2026, 6, 21, 10, tzinfo=UTC)),
        (
            "'2026-03-29T00:00:00+01:00[Europe/Berlin]'",
            datetime(2026, 3, 29, 0, tzinfo=timezone(timedelta(hours=1))),
        ),
        # A time without an offset is the zone's wall clock (it was read as the machine's).
        (
            "'2026-10-25T12:00:00[Europe/Berlin]'",
            datetime(2026, 10, 25, 12, tzinfo=timezone(timedelta(hours=1))),
        ),
    ],
)
def test_start_as_users_write_it(tmp_path: Path, start: str, local: datetime) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(scenario(top=f"start: {start}\n"))
    loaded = load_scenario(path).start
    assert loaded == local and loaded.utcoffset() == local.utcoffset()


def test_the_scenario_schema_lists_the_system_paths_the_appliance_reads() -> None:
    system = schema.schema(schema.SCENARIO)["$defs"]["system"]["properties"]
    assert set(system) == SYSTEM_PATHS


def test_every_scenario_of_the_project_loads_and_none_is_refused() -> None:
    """The checks refuse what is wrong, not what the shipped scenarios say."""
    files = sorted((REPO / "tests" / "scenarios").glob("*.yaml"))
    files += sorted((REPO.parent / "shared" / "scenarios").glob("*.yaml"))
    assert len(files) > 30
    for file in files:
        try:
            loaded = load_scenario(file)
        except HemsError as err:
            pytest.fail(f"{file.name}: {err}")
        assert loaded.cost()[0] < 100_000


def test_control_characters_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = check('reason: {"heater\\e[2J": x}')
    err = refused(tmp_path, text, capsys)
    assert "control character" in err and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", err)


def test_a_valid_scenario_still_runs_and_prints_its_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(scenario())
    assert main(["simulate", str(path)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["switch"] == "on"
    assert run_scenario(load_scenario(path)).passed


def a_long_run(tmp_path: Path) -> Path:
    """Hundreds of kB of decision lines (a cloud every 10 s for 3 h), then a quiet day."""
    steps = "".join(
        f"  - at: {10 * i}s\n    system: {{/Ac/PvOnGrid/L1/Power: {2000 if i % 2 else 0}}}\n"
        for i in range(1, 1081)
    )
    fast = RULES.replace("phases: 1,", "phases: 1, loop_interval: 100ms,")
    path = tmp_path / "long.yaml"
    path.write_text(
        scenario(step=STEP + steps, check="  - at: 1d\n    state: {heater: on}\n", rules=fast)
    )
    return path


def start_simulate(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hems_rules.cli", "simulate", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith('{"t": 0.0')  # it is running
    return process


@pytest.mark.timeout(60)
def test_a_reader_that_leaves_ends_simulate_quietly(tmp_path: Path) -> None:
    """`simulate long.yaml | head -1` ended in a BrokenPipeError traceback."""
    process = start_simulate(a_long_run(tmp_path))
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 141 and err == ""


@pytest.mark.timeout(60)
def test_ctrl_c_ends_a_long_simulation_without_a_traceback(tmp_path: Path) -> None:
    process = start_simulate(a_long_run(tmp_path))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and err == "simulate: interrupted\n"
