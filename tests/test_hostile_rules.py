"""Rules a careless user or an attacker writes: each is a located error, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hems_rules.cli import main
from hems_rules.errors import RulesError
from hems_rules.ruleset import load_rules

RULES = """\
site:
  loop_interval: 2s
  battery_reservation: "2000 - SOC * 20"
  continuous_inverter_power: 4000
consumers:
  - id: heater
    name: Heater
    shelly: {host: 10.0.0.5, switch: 0}
    power: 1000
    off_margin: 0
    min_on: 30s
"""

LONG = "9" * 400


def errors(directory: Path, text: str) -> list[str]:
    (directory / "rules.yaml").write_text(text)
    with pytest.raises(RulesError) as info:
        load_rules(directory)
    return [str(p) for p in info.value.problems]


def the_error(directory: Path, old: str, new: str) -> str:
    text = RULES.replace(old, new)
    assert text != RULES, old
    found = errors(directory, text)
    assert len(found) == 1, found
    return found[0].removeprefix(f"{directory}/rules.yaml:")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "off_margin: 0",
            "off_margin: .nan",
            "10:17: consumers[0].off_margin: nan is not a",
        ),
        ("power: 1000", "power: .nan", "9:12: consumers[0].power: nan is not a finite number"),
        ("min_on: 30s", "min_on: .inf", "11:13: consumers[0].min_on: inf is not a finite number"),
        ("min_on: 30s", "min_on: -.inf", "11:13: consumers[0].min_on: -inf is not a finite"),
        ("loop_interval: 2s", f"loop_interval: {LONG}", "2:18: site.loop_interval: 999999999999"),
        ("power: 1000", f"power: {'9' * 5000}", "9:12: consumers[0].power: 999999999999..."),
        ("power: 1000", f"power: 0x{'f' * 2000}", "(2002 characters) is too long for a number"),
        ("power: 1000", "power: 1.0e+300", "9:12: consumers[0].power: 1e+300 is beyond ±1e+15"),
        ("power: 1000", "power: 0x7fffffffffffffffff", "power: a number beyond ±1e+15"),
        (
            "continuous_inverter_power: 4000",
            f"continuous_inverter_power: {LONG}",
            "4:30: site.continuous_inverter_power: 999999999999... (400 characters) is too long",
        ),
        (
            'battery_reservation: "2000 - SOC * 20"',
            f"battery_reservation: {LONG}",
            "3:24: site.battery_reservation: 999999999999... (400 characters) is too long",
        ),
    ],
)
def test_numbers_that_are_not_finite_or_too_big_are_located_errors(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    error = the_error(tmp_path, old, new)
    assert expected in error, error


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("power: 1000", "power: 1000001", "power: 1000001 is greater than the maximum of 1000000"),
        (
            "off_margin: 0",
            "off_margin: 2.0e+6",
            "off_margin: 2000000.0 is greater than the max",
        ),
        (
            "continuous_inverter_power: 4000",
            "continuous_inverter_power: 1.0e+9",
            "continuous_inverter_power: 1000000000.0 is greater than the maximum of 1000000",
        ),
        (
            'battery_reservation: "2000 - SOC * 20"',
            "battery_reservation: 5.0e+6",
            "site.battery_reservation: 5000000.0 is not a number from 0 to 1000000",
        ),
        ("loop_interval: 2s", "loop_interval: 0", "site.loop_interval: 0 is shorter than 100ms"),
        ("loop_interval: 2s", "loop_interval: 1h", 'site.loop_interval: "1h" is longer than 10m'),
        (
            "loop_interval: 2s",
            'loop_interval: "99999999999d"',
            'site.loop_interval: "99999999999d" is longer than 10m',
        ),
        ("min_on: 30s", "min_on: 8d", 'consumers[0].min_on: "8d" is longer than 7d'),
        ("min_on: 30s", f'min_on: "{LONG}s"', 'consumers[0].min_on: "99999'),
        ("switch: 0}", "switch: 0, toggle_after: 0}", "toggle_after: 0 is shorter than 1s"),
        ("min_on: 30s", "max_starts_per_day: 100000", "100000 is greater than the maximum of 1440"),
        ("min_on: 30s", "priority: 1000000000000", "is greater than the maximum of 1000"),
    ],
)
def test_every_number_and_duration_has_a_documented_range(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    error = the_error(tmp_path, old, new)
    assert expected in error, error


def test_variable_durations_have_ranges_too(tmp_path: Path) -> None:
    text = RULES.replace("site:\n", "site:\n  mqtt: {host: 127.0.0.1}\n") + (
        "variables:\n"
        "  t: {http: {url: 'http://10.0.0.7/', every: 0}}\n"
        "  u: {mqtt: {topic: a/b, stale_after: 0.5}}\n"
    )
    found = errors(tmp_path, text)
    assert any("variables.t.http.every: 0 is shorter than 1s" in e for e in found), found
    assert any("variables.u.mqtt.stale_after: 0.5 is shorter than 1s" in e for e in found), found


def test_the_largest_values_in_range_still_load(tmp_path: Path) -> None:
    text = (
        RULES.replace("power: 1000", "power: 1000000")
        .replace("min_on: 30s", "min_on: 7d\n    max_starts_per_day: 1440\n    priority: 1000")
        .replace("loop_interval: 2s", "loop_interval: 10m")
    )
    (tmp_path / "rules.yaml").write_text(text)
    rules = load_rules(tmp_path)
    assert rules.consumers[0].min_on == 7 * 86400
    assert rules.site.loop_interval == 600


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("name: Heater", 'name: "Heat\\0er"', "7:11: consumers[0].name: contains U+0000"),
        ("name: Heater", 'name: "\\e[2J\\e[31mHeater"', "7:11: consumers[0].name: contains U+001B"),
        ("name: Heater", 'name: "Heater\\x85"', "consumers[0].name: contains U+0085"),
        ("name: Heater", 'name: "\\x7f"', "consumers[0].name: contains U+007F"),
        (
            "host: 10.0.0.5",
            'host: "10.0.0.5\\r"',
            "8:20: consumers[0].shelly.host: contains U+000D",
        ),
        ("id: heater", '"id\\x1b": heater', "6:5: consumers[0]: contains U+001B"),
    ],
)
def test_control_characters_in_strings_are_located_errors(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    error = the_error(tmp_path, old, new)
    assert expected in error, error
    assert "\x1b" not in error and "\x00" not in error


def test_a_raw_control_character_is_located_where_it_is(tmp_path: Path) -> None:
    error = the_error(tmp_path, "name: Heater", "name: Heat\x1b[31mer")
    assert (
        error
        == "7:15: YAML error: unacceptable character U+001B: control characters are not allowed"
    )


def test_check_output_never_carries_terminal_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "\x1b[31mred.yaml").write_text("consumers: [\n")
    (tmp_path / "rules.yaml").write_text(RULES.replace("name: Heater", 'name: "\\e]0;pwned\\a"'))
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "\\x1b[31mred.yaml:2:1: YAML error" in out.err
    assert "consumers[0].name: contains U+001B" in out.err
    assert not any(ch in out.err + out.out for ch in "\x1b\x07\x00")


@pytest.mark.parametrize(
    ("equation", "why"),
    [
        ('"1/0"', "ZeroDivisionError"),
        ("abs", "is not a finite number"),
        ("1e999", "inf is not a finite number"),
        ('"0**-1"', "ZeroDivisionError"),
        ('"SOC / (SOC - SOC)"', "ZeroDivisionError"),
    ],
)
def test_a_reservation_that_fails_at_every_soc_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], equation: str, why: str
) -> None:
    error = the_error(tmp_path, '"2000 - SOC * 20"', equation)
    assert error.startswith("3:24: site.battery_reservation: fails at every SOC from 0 to 100 %")
    assert why in error
    assert main(["check", str(tmp_path)]) == 1
    assert "rules OK" not in capsys.readouterr().out


def test_a_reservation_that_fails_at_some_soc_still_loads(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES.replace('"2000 - SOC * 20"', '"1000 / (SOC - 50)"'))
    rules = load_rules(tmp_path)
    assert rules.site.battery_reservation.evaluate({"SOC": 50.0}).error


def test_entries_that_look_like_rule_files_but_are_not_are_errors(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "missing.yaml")
    (tmp_path / "loop_a.yaml").symlink_to(tmp_path / "loop_b.yaml")
    (tmp_path / "loop_b.yaml").symlink_to(tmp_path / "loop_a.yaml")
    (tmp_path / "old.yaml").mkdir()
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / ".hidden.yaml").symlink_to(tmp_path / "missing.yaml")
    (tmp_path / "notes.txt").mkdir()
    with pytest.raises(RulesError) as info:
        load_rules(tmp_path)
    found = sorted(str(p).removeprefix(f"{tmp_path}/") for p in info.value.problems)
    assert found == [
        f"gone.yaml:1:1: a symbolic link to {tmp_path}/missing.yaml, which does not exist",
        "loop_a.yaml:1:1: a loop of symbolic links",
        "loop_b.yaml:1:1: a loop of symbolic links",
        "old.yaml:1:1: a directory, not a rule file",
        "pipe.yaml:1:1: not a regular file",
    ]


def test_a_symlinked_rule_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "site.yaml").write_text(RULES)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "site.yaml").symlink_to(tmp_path / "real" / "site.yaml")
    assert load_rules(tmp_path / "rules").consumers[0].id == "heater"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "variables:\n  t: {mqtt: {topic: a/b}}\n",
            "13:7: variables.t.mqtt: needs site.mqtt, the broker to subscribe to",
        ),
        (
            "variables:\n  t: {mqtt: {topic: a/#/b}}\n",
            '14:21: variables.t.mqtt.topic: "a/#/b" is not an MQTT topic filter: # only as the',
        ),
        (
            "variables:\n  t: {mqtt: {topic: a/b#}}\n",
            'variables.t.mqtt.topic: "a/b#" is not an MQTT topic filter: # only as the last level',
        ),
        (
            "variables:\n  t: {mqtt: {topic: a+/b}}\n",
            'variables.t.mqtt.topic: "a+/b" is not an MQTT topic filter: + only as a whole level',
        ),
        (
            "consumers:\n  - {id: twin, shelly: {host: 10.0.0.5}, power: 500}\n",
            "13:24: consumers[1].shelly: the same relay as heater (",
        ),
    ],
)
def test_mqtt_and_relay_mistakes_are_located(tmp_path: Path, extra: str, expected: str) -> None:
    text = RULES + extra.replace("consumers:\n", "")
    if "needs site.mqtt" not in expected:
        text = text.replace("site:\n", "site:\n  mqtt: {host: 127.0.0.1}\n")
    found = errors(tmp_path, text)
    assert len(found) == 1, found
    assert expected in found[0], found


def test_the_same_relay_in_two_files_is_an_error_naming_both(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        "consumers:\n  - {id: twin, shelly: {host: 10.0.0.5, port: 80, switch: 0}, power: 5}\n"
    )
    found = errors(tmp_path, RULES)
    assert found == [
        f"{tmp_path}/rules.yaml:8:13: consumers[0].shelly: the same relay as twin "
        f"({tmp_path}/b.yaml:2), which would fight it"
    ]


def test_another_switch_of_the_same_shelly_is_fine(tmp_path: Path) -> None:
    text = RULES + "  - {id: other, shelly: {host: 10.0.0.5, switch: 1}, power: 500}\n"
    (tmp_path / "rules.yaml").write_text(text)
    assert len(load_rules(tmp_path).consumers) == 2


def test_an_auto_writes_portal_is_one_topic_level(tmp_path: Path) -> None:
    text = RULES.replace("site:\n", "site:\n  mqtt: {host: h, auto_writes: {portal: a/b}}\n")
    [error] = errors(tmp_path, text)
    assert 'site.mqtt.auto_writes.portal: "a/b" is not one topic level' in error


def test_settle_is_bounded_like_the_loop(tmp_path: Path) -> None:
    error = the_error(tmp_path, "loop_interval: 2s", "loop_interval: 2s\n  settle: 1h")
    assert 'site.settle: "1h" is longer than 1m' in error
