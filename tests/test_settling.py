"""A switch settles before the next (DESIGN §5.10): a lagging meter causes no chatter."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Settings, Snapshot
from hems_rules.expressions import RESERVATION_NAMES, compile_expression
from hems_rules.ruleset.rules import Consumer, RuleSet, ShellyEndpoint, Site
from hems_rules.simulate.meter import LaggingMeter
from hems_rules.simulate.scenario import load_scenario, run_scenario

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / "shared" / "scenarios"
LAGGING = [*sorted(HERE.glob("scenarios/s*_lag_*.yaml")), SHARED / "12_meter_lag_settles.yaml"]
START = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)


def test_a_lagging_meter_shows_each_load_lag_seconds_late() -> None:
    meter = LaggingMeter(2.0)
    assert meter.shown("heater", 0.0) == 0.0
    meter.record("heater", 1000.0, 10.0)
    assert not meter.record("heater", 1000.0, 10.5)  # unchanged: not a new step
    assert meter.shown("heater", 11.9) == 0.0
    assert meter.shown("heater", 12.0) == 1000.0
    meter.record("heater", 0.0, 13.0)
    meter.record("heater", 800.0, 13.5)
    assert meter.shown("heater", 15.2) == 0.0
    assert meter.shown("heater", 15.5) == 800.0


def test_an_instant_meter_shows_a_load_when_it_switches() -> None:
    meter = LaggingMeter()
    meter.record("heater", 1000.0, 10.0)
    assert meter.shown("heater", 10.0) == 1000.0


@pytest.mark.parametrize("path", LAGGING, ids=lambda p: p.stem)
def test_a_lagging_meter_costs_no_extra_switching(path: Path) -> None:
    """Each relay receives as many commands as with a meter that shows loads at once."""
    scenario = load_scenario(path)
    assert scenario.meter_lag > 0
    lagging = run_scenario(scenario)
    instant = run_scenario(replace(scenario, meter_lag=0.0))
    assert lagging.passed, lagging.failures
    assert lagging.commands == instant.commands


@st.composite
def sites(draw: st.DrawFn) -> RuleSet:
    phases = draw(st.sampled_from([1, 3]))
    choices = ["L1"] if phases == 1 else ["L1", "L2", "L3", "3P"]
    consumers = tuple(
        Consumer(
            id=f"c{i}",
            name=f"c{i}",
            shelly=ShellyEndpoint(host=f"c{i}.invalid"),
            power=draw(st.sampled_from([300, 1000, 1150, 2000, 3000])),
            phase=draw(st.sampled_from(choices)),
            priority=draw(st.integers(min_value=0, max_value=3)),
            primary=draw(st.booleans()),
            min_on=draw(st.sampled_from([0.0, 10.0])),
            min_off=draw(st.sampled_from([0.0, 10.0])),
            on_delay=draw(st.sampled_from([0.0, 3.0])),
            off_delay=draw(st.sampled_from([0.0, 3.0])),
        )
        for i in range(draw(st.integers(min_value=2, max_value=5)))
    )
    site = Site(
        battery_reservation=compile_expression(
            draw(st.sampled_from(["0", "500"])), RESERVATION_NAMES
        ),
        phases=phases,
        continuous_inverter_power=draw(st.sampled_from([None, 2000.0, 3000.0])),
        settle=draw(st.sampled_from([3.0, 5.0])),
    )
    return RuleSet(site=site, consumers=consumers)


STEP = 0.25  # a cycle every 250 ms: faster than a GX's meters, the harder case
STEADY = 20.0  # the trace is constant from here on
BOUND = 45.0  # by then the relays must have stopped switching
END = 70.0


@settings(max_examples=100, deadline=None)
@given(
    rules=sites(),
    lag_fraction=st.floats(min_value=0.0, max_value=1.0),
    trace=st.lists(st.integers(min_value=0, max_value=9000), min_size=1, max_size=6),
    base=st.integers(min_value=0, max_value=1500),
)
def test_any_lag_up_to_settle_stops_switching_and_keeps_the_inverter_limit(
    rules: RuleSet, lag_fraction: float, trace: list[int], base: int
) -> None:
    """PV steps every few seconds, then stays: the relays come to rest, and no switch-on
    ever makes the true consumption of a phase exceed its continuous inverter power."""
    meter = LaggingMeter(lag_fraction * rules.site.settle)
    phases = rules.site.phase_names
    power = {c.id: c.power for c in rules.consumers}
    relays = dict.fromkeys(power, False)
    state = EngineState()
    last_command = 0.0
    for i in range(int(END / STEP)):
        t = i * STEP
        pv = trace[min(int(t / STEADY * len(trace)), len(trace) - 1)] / len(phases)
        shown = dict.fromkeys(phases, float(base))
        true = dict.fromkeys(phases, float(base))
        for consumer in rules.consumers:
            for phase, share in consumer.shares(meter.shown(consumer.id, t)):
                shown[phase] += share
            for phase, share in consumer.shares(power[consumer.id] if relays[consumer.id] else 0):
                true[phase] += share
        system: dict[str, float | None] = {"/Dc/Battery/Soc": 50.0, "/Dc/Pv/Power": 0.0}
        for phase in phases:
            system[f"/Ac/PvOnGrid/{phase}/Power"] = pv
            system[f"/Ac/Consumption/{phase}/Power"] = shown[phase]
        devices = {
            cid: DeviceFact(on=on, power=power[cid] if on else None) for cid, on in relays.items()
        }
        snapshot = Snapshot(
            system=MappingProxyType(system),
            settings=Settings(mode=1),
            devices=MappingProxyType(devices),
        )
        plan, state = decide(rules, snapshot, state, START + timedelta(seconds=t))
        commands = [d for d in plan.decisions if d.command is not None]
        for decision in commands:
            assert decision.command is not None
            relays[decision.consumer] = decision.command
            meter.record(decision.consumer, power[decision.consumer] * decision.command, t)
            last_command = t
        limit = rules.site.continuous_inverter_power
        if limit is not None and any(d.command for d in commands):
            after = dict.fromkeys(phases, float(base))
            for consumer in rules.consumers:
                if relays[consumer.id]:
                    for phase, share in consumer.shares(power[consumer.id]):
                        after[phase] += share
            for phase in phases:
                # Only what the house itself takes may exceed it; no switch-on adds to that.
                allowed = max(limit + pv, true[phase])
                assert after[phase] <= allowed + 1e-6, (t, phase, after, plan)
    assert last_command <= BOUND, f"still switching at {last_command} s"


def test_settling_keeps_surplus_switches_until_the_meter_shows_the_last() -> None:
    """Pure decide(): the next load waits while the meter lags, and starts once it shows."""
    site = Site(battery_reservation=compile_expression("0", RESERVATION_NAMES), phases=1)
    consumers = tuple(
        Consumer(id=name, name=name, shelly=ShellyEndpoint(host="h.invalid"), power=1000)
        for name in ("a", "b")
    )
    rules = RuleSet(site=site, consumers=consumers)

    def at(consumption: float, a_on: bool) -> Snapshot:
        return Snapshot(
            system=MappingProxyType(
                {"/Ac/PvOnGrid/L1/Power": 1700.0, "/Ac/Consumption/L1/Power": consumption}
            ),
            settings=Settings(mode=1),
            devices=MappingProxyType(
                {"a": DeviceFact(on=a_on, power=1000.0 if a_on else None), "b": DeviceFact()}
            ),
        )

    plan, state = decide(rules, at(500, False), EngineState(), START)
    assert plan.decision("a").command is True and plan.decision("b").command is None
    # a reports on, the meter does not show it yet: 2200 W surplus seems to fit b too
    later = START + timedelta(seconds=1)
    plan, state = decide(rules, at(500, True), state, later)
    assert plan.decision("b").state == "off"
    assert plan.decision("b").reason == "off: waiting for the meter to show a (4 s at most)"
    # the meter moved by half of a's draw: settled, and the true surplus says no
    plan, state = decide(rules, at(1000, True), state, later + timedelta(seconds=1))
    assert plan.decision("b").code == "no_surplus"
    assert state.settling is None
