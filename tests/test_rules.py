"""Rule files: what loads, what is refused, and how the refusal reads."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.errors import RulesError
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.compiler import compile_documents
from hems_rules.ruleset.schema import schema
from hems_rules.ruleset.yamldoc import parse_yaml

GOOD = """\
site:
  phases: 3
  battery_reservation: "5000 - SOC * 50 if SOC < 98 else 0"
  continuous_inverter_power: 4000
variables:
  tank_temp: {http: {url: "http://127.0.0.1/tank", json: value, stale_after: 5m}}
  rod_temp: {shelly_temperature: {host: 127.0.0.1, sensor: 101}}
consumers:
  - id: heater_l1
    shelly: {host: 127.0.0.1, switch: 0}
    power: 1150
    phase: L1
    priority: 40
    min_on: 30s
    min_off: 1m
    auto_when: "tank_temp < 70 and rod_temp < 90"
    on_release: off
  - id: pool_pump
    class: primary
    shelly: {host: 127.0.0.1, port: 8080}
    power: 600
    phase: 3P
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_rules(directory)
    return [str(p) for p in info.value.problems]


def test_a_good_file_compiles_with_defaults_and_seconds(tmp_path: Path) -> None:
    write(tmp_path, "rules.yaml", GOOD)
    rules = load_rules(tmp_path)
    heater, pump = rules.consumers
    assert heater.min_on == 30.0 and heater.min_off == 60.0
    assert heater.on_margin == 0 and heater.max_starts_per_day is None
    assert not heater.release_keeps and not heater.stale_holds
    assert pump.primary and pump.priority == 50
    assert pump.shelly is not None and pump.shelly.port == 8080
    assert rules.site.loop_interval == 2.0 and rules.site.dc_efficiency == 0.925
    assert rules.variables["tank_temp"].source.stale_after == 300.0
    assert rules.site.battery_reservation.evaluate({"SOC": 50}).value == 2500.0


def test_the_issue_example_error_reads_as_promised(tmp_path: Path) -> None:
    text = GOOD.replace("min_on: 30s", 'min_on: "30 seconds"')
    write(tmp_path, "heaters.yaml", text)
    [error] = errors_of(tmp_path)
    assert error == (
        f"{tmp_path}/heaters.yaml:14:13: consumers[0].min_on: "
        '"30 seconds" is not a duration like 30s, 5m, 1h'
    )


def test_every_error_of_every_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD.replace("priority: 40", "priorty: 40"))
    write(tmp_path, "b.yaml", "consumers:\n  - {id: x, shelly: {host: h}, power: 1, power: 2}\n")
    write(tmp_path, "c.yaml", "consumers: [\n")
    errors = errors_of(tmp_path)
    assert len(errors) == 3
    assert (
        "a.yaml:13:5: consumers[0].priorty: unknown key 'priorty', did you mean 'priority'?"
        in (errors[0])
    )
    assert "b.yaml:2:42: duplicate key 'power' (first at line 2)" in errors[1]
    assert "c.yaml:2:1: YAML error" in errors[2]


def test_duplicate_ids_and_sites_name_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(
        tmp_path,
        "b.yaml",
        "site: {phases: 1}\nconsumers:\n  - {id: heater_l1, shelly: {host: h}, power: 1}\n",
    )
    errors = errors_of(tmp_path)
    assert any(
        "b.yaml:1:1: site: site is already defined at" in e and "a.yaml:1" in e for e in errors
    )
    assert any("id 'heater_l1' is already used at" in e and "a.yaml:9" in e for e in errors)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            ("phase: L1", "phase: L4"),
            'consumers[0].phase: "L4" is not one of "L1", "L2", "L3", "3P"',
        ),
        (("power: 1150", "power: -5"), "consumers[0].power: -5 is less than the minimum of 0"),
        (("id: heater_l1", "id: Heater"), '"Heater" is not a name'),
        (("tank_temp < 70", "tank_tmp < 70"), "unknown name 'tank_tmp' (did you mean tank_temp?)"),
        (("5000 - SOC * 50", "__import__('os')"), "site.battery_reservation"),
        (("phases: 3", "phases: 1"), "consumers[1].phase: 3P needs a 3-phase site"),
        (("shelly: {host: 127.0.0.1, switch: 0}", "shelly: {}"), "'host' is a required property"),
        (("stale_after: 5m", "stale_after: soon"), '"soon" is not a duration'),
        (
            ("continuous_inverter_power: 4000", "web: {control: true}"),
            "rules.yaml:4:18: site.web.control: control needs a password",
        ),
        (("continuous_inverter_power: 4000", "history: {days: 0}"), "site.history.days: 0 is less"),
    ],
)
def test_refusals_point_at_the_problem(
    tmp_path: Path, change: tuple[str, str], fragment: str
) -> None:
    write(tmp_path, "rules.yaml", GOOD.replace(*change))
    errors = errors_of(tmp_path)
    assert any(fragment in e for e in errors), errors


def test_the_page_and_the_history_are_on_by_default_and_can_be_turned_off(
    tmp_path: Path,
) -> None:
    write(tmp_path, "rules.yaml", GOOD)
    site = load_rules(tmp_path).site
    assert site.web is not None and site.web.port == 8089 and not site.web.control
    assert site.history is not None and site.history.days == 31
    assert site.history.max_bytes == 64 << 20
    off = "web: {enabled: false}\n  history: {enabled: false}"
    write(tmp_path, "rules.yaml", GOOD.replace("continuous_inverter_power: 4000", off))
    site = load_rules(tmp_path).site
    assert site.web is None and site.history is None
    on = "web: {control: true, password: correct-horse, port: 0}"
    write(tmp_path, "rules.yaml", GOOD.replace("continuous_inverter_power: 4000", on))
    web = load_rules(tmp_path).site.web
    assert web is not None and web.control and web.password == "correct-horse" and web.port == 0
    assert "correct-horse" not in repr(web)


def test_an_empty_directory_is_an_error_not_an_empty_house(tmp_path: Path) -> None:
    assert "no rule files" in errors_of(tmp_path)[0]


def test_the_example_rules_of_the_repository_load() -> None:
    rules = load_rules(Path(__file__).parent.parent / "rules")
    assert len(rules.consumers) >= 5


_yaml_alphabet = string.ascii_letters + string.digits + " :-_{}[],'\"\n#.&*!|>"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(min_value=0, max_value=len(GOOD)),
    cut=st.integers(min_value=0, max_value=20),
    insert=st.text(alphabet=_yaml_alphabet, max_size=12),
)
def test_mutated_yaml_never_crashes_and_errors_are_located(
    position: int, cut: int, insert: str
) -> None:
    text = GOOD[:position] + insert + GOOD[position + cut :]
    doc, problems = parse_yaml("fuzz.yaml", text)
    try:
        if doc is not None:
            compile_documents([doc], problems)
    except RulesError as err:
        assert err.problems
        for problem in err.problems:
            assert problem.file == "fuzz.yaml"
            assert problem.line >= 1 and problem.column >= 1
            assert problem.message


def test_docs_describe_every_key_the_schema_allows() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "rules.md").read_text()
    keys: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            keys.update(node.get("properties", {}))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema())
    missing = sorted(k for k in keys if f"`{k}`" not in docs)
    assert not missing, f"docs/rules.md does not describe {missing}"


def test_the_schema_is_valid_json_schema_2020_12() -> None:
    jsonschema = pytest.importorskip("jsonschema")  # a development dependency only
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


DBUS_RELAY = (
    "  - {id: pump, dbus: {service: com.victronenergy.switch.shelly_a1_0, output: 0}, power: 5}\n"
)


def test_a_dbus_relay_compiles_with_its_output_as_a_label(tmp_path: Path) -> None:
    write(tmp_path, "rules.yaml", "consumers:\n" + DBUS_RELAY)
    [pump] = load_rules(tmp_path).consumers
    assert pump.shelly is None and pump.dbus is not None
    assert (pump.dbus.service, pump.dbus.output) == ("com.victronenergy.switch.shelly_a1_0", "0")


@pytest.mark.parametrize(
    ("relay", "expected"),
    [
        ("", "consumers[0]: needs exactly one relay: shelly: or dbus:"),
        (
            "shelly: {host: 10.0.0.5}, dbus: {service: com.victronenergy.switch.x, output: 0}, ",
            "consumers[0]: needs exactly one relay: shelly: or dbus:",
        ),
        ("dbus: {service: com.victronenergy.switch.x}, ", "'output' is a required property"),
        ("dbus: {service: switch.x, output: 0}, ", "is not a service name like"),
        ("dbus: {service: com.victronenergy.switch.x, output: -1}, ", "is not an output"),
        ("dbus: {service: com.victronenergy.switch.x, output: a/b}, ", "is not an output"),
        ("dbus: {service: com.victronenergy.switch.hems, output: 0}, ", "hems-rules' own"),
    ],
)
def test_a_consumer_needs_exactly_one_valid_relay(
    tmp_path: Path, relay: str, expected: str
) -> None:
    write(tmp_path, "rules.yaml", f"consumers:\n  - {{id: pump, {relay}power: 5}}\n")
    [error] = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path}/rules.yaml:2:") and expected in error, error


def test_two_consumers_on_one_dbus_output_are_refused_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "consumers:\n" + DBUS_RELAY)
    write(tmp_path, "b.yaml", "consumers:\n" + DBUS_RELAY.replace("id: pump", "id: twin"))
    assert errors_of(tmp_path) == [
        f"{tmp_path}/b.yaml:2:22: consumers[0].dbus: the same relay as pump "
        f"({tmp_path}/a.yaml:2), which would fight it"
    ]
