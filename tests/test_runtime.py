"""Daily runtime (DESIGN §5.11): the rules, the local day, and decisions at the edges."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from hems_rules.cli import main
from hems_rules.core.daily import Day
from hems_rules.core.engine import decide
from hems_rules.core.model import ConsumerState, DeviceFact, EngineState, Settings, Snapshot
from hems_rules.core.reasons import span
from hems_rules.errors import RulesError
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import Runtime

BERLIN = ZoneInfo("Europe/Berlin")


def rules_with(tmp_path: Path, runtime: str) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "consumers:\n"
        f"  - {{id: filter, shelly: {{host: f.invalid}}, power: 500, runtime: {runtime}}}\n"
    )
    return tmp_path


def problems(tmp_path: Path, runtime: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        load_rules(rules_with(tmp_path, runtime))
    return [str(p) for p in info.value.problems]


def test_runtime_compiles_to_seconds_and_minutes_after_midnight(tmp_path: Path) -> None:
    rules = load_rules(rules_with(tmp_path, '{min: 5h, by: "21:00", max: 8h}'))
    assert rules.consumer("filter").runtime == Runtime(min=18000, by=1260, max=28800)
    rules = load_rules(rules_with(tmp_path, "{min: 30m}"))
    assert rules.consumer("filter").runtime == Runtime(min=1800, by=1440)


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ('{min: 6h, max: 5h, by: "20:00"}', "runtime.min: min 6h is longer than max 5h"),
        ('{min: 7h, by: "06:00"}', "runtime.min: min 7h does not fit between midnight and 06:00"),
        ('{by: "20:00"}', "runtime.by: by needs a min to finish by then"),
        ('{min: 1h, by: "25:00"}', 'runtime.by: "25:00" is not a local time like "20:00"'),
        ('{min: 1h, by: "8:00"}', 'runtime.by: "8:00" is not a local time like "20:00"'),
        ("{min: 2d}", 'runtime.min: "2d" is longer than 1d'),
        ("{mim: 1h}", "runtime.mim: unknown key 'mim', did you mean 'min'?"),
        ("{}", "runtime: {} should be non-empty"),
    ],
)
def test_a_runtime_no_day_can_meet_is_a_located_error(
    tmp_path: Path, runtime: str, message: str
) -> None:
    found = problems(tmp_path, runtime)
    assert any(message in p and "rules.yaml:2:" in p for p in found), found


def test_check_says_what_the_runtime_asks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(Path(__file__).parent.parent / "rules")]) == 0
    assert "runtime at least 5 h a day by 21:00" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (60, "1 min"),
        (2400, "40 min"),
        (6000, "1 h 40 min"),
        (21600, "6 h"),
    ],
)
def test_spans_read_as_people_say_them(seconds: float, words: str) -> None:
    assert span(seconds) == words


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2026-03-29", 23), ("2026-06-21", 24), ("2026-10-25", 25)],
)
def test_a_local_day_has_the_hours_of_its_wall_clock(day: str, hours: int) -> None:
    noon = Day(datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=BERLIN))
    assert noon.at(24 * 60) - noon.at(0) == hours * 3600
    # 05:00 on the wall clock, whatever happened at 02:00 or 03:00
    five = datetime.fromtimestamp(noon.at(5 * 60), BERLIN)
    assert (five.hour, five.minute) == (5, 0)


def snapshot(consumption: float | None, on: bool) -> Snapshot:
    system = {"/Ac/PvOnGrid/L1/Power": 0.0, "/Dc/Battery/Soc": 50.0}
    if consumption is not None:
        system["/Ac/Consumption/L1/Power"] = consumption
    return Snapshot(
        system=MappingProxyType(system),
        settings=Settings(mode=1),
        devices=MappingProxyType({"filter": DeviceFact(on=on, power=500.0 if on else None)}),
    )


def test_a_due_consumer_keeps_running_while_the_surplus_is_unknown(tmp_path: Path) -> None:
    """It needs no surplus; but one that is off does not start blind to the inverter limit."""
    (tmp_path / "rules.yaml").write_text(
        "site: {phases: 1, continuous_inverter_power: 3000}\n"
        "consumers:\n"
        '  - {id: filter, shelly: {host: f.invalid}, power: 500, runtime: {min: 1h, by: "16:00"}}\n'
    )
    rules = load_rules(tmp_path)
    now = datetime(2026, 6, 21, 15, 30, tzinfo=BERLIN)
    today = ConsumerState(day=now.date(), runtime=600.0, on=True, controlled=True)
    state = EngineState(MappingProxyType({"filter": today}))
    plan, _ = decide(rules, snapshot(None, on=True), state, now)
    assert plan.decision("filter").state == "on"
    assert "(due, 50 min of its 1 h left before 16:00)" in plan.decision("filter").reason
    resting = EngineState(MappingProxyType({"filter": today._replace(on=False)}))
    plan, _ = decide(rules, snapshot(None, on=False), resting, now)
    assert plan.decision("filter").state == "off"
    assert plan.decision("filter").reason.startswith("off: surplus unknown")


def test_runtime_today_is_in_every_decision(tmp_path: Path) -> None:
    """The switch service publishes it as /Devices/<n>/RuntimeToday."""
    rules = load_rules(rules_with(tmp_path, "{max: 2h}"))
    now = datetime(2026, 6, 21, 15, 30, tzinfo=BERLIN)
    ran = ConsumerState(day=now.date(), runtime=3000.0, on=True, counted_at=now.timestamp() - 60)
    plan, state = decide(
        rules, snapshot(800, on=True), EngineState(MappingProxyType({"filter": ran})), now
    )
    assert plan.decision("filter").runtime == pytest.approx(3060)
    assert state.consumers["filter"].runtime == pytest.approx(3060)
