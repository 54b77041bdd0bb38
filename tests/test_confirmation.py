"""Facts over intentions (DESIGN §5.8) between a command and the relay's read-back.

A switch-on counts from the cycle it is sent; a switch-off only once the relay confirms
it: until then its load still draws what the relay last reported.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Plan, Settings, Snapshot
from hems_rules.core.observe import CONFIRM_WITHIN
from hems_rules.expressions import RESERVATION_NAMES, compile_expression
from hems_rules.ruleset.rules import Consumer, RuleSet, ShellyEndpoint, Site

START = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)


def rules(cip: float, *consumers: tuple[str, float, int]) -> RuleSet:
    site = Site(
        battery_reservation=compile_expression("0", RESERVATION_NAMES),
        phases=1,
        continuous_inverter_power=cip,
    )
    return RuleSet(
        site=site,
        consumers=tuple(
            Consumer(id=i, name=i, shelly=ShellyEndpoint(host=f"{i}.invalid"), power=w, priority=p)
            for i, w, p in consumers
        ),
    )


def world(
    consumption: float, relays: dict[str, float | None], *, ac_pv: float = 0, dc_pv: float = 0
) -> Snapshot:
    """The meter's consumption and each relay's report: its draw while on, None when off."""
    return Snapshot(
        system=MappingProxyType(
            {
                "/Ac/PvOnGrid/L1/Power": ac_pv,
                "/Ac/Consumption/L1/Power": consumption,
                "/Dc/Pv/Power": dc_pv,
                "/Dc/Battery/Soc": 50.0,
            }
        ),
        settings=Settings(mode=1),
        devices=MappingProxyType(
            {i: DeviceFact(on=w is not None, power=w if w else None) for i, w in relays.items()}
        ),
    )


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def commands(plan: Plan) -> dict[str, bool]:
    return {d.consumer: d.command for d in plan.decisions if d.command is not None}


def test_a_switch_on_is_not_shed_by_the_next_cycle_on_the_same_inputs() -> None:
    """Found by the soak: "rod_l1 on: 1500 W, 468 W left", then 3 ms later "off: shed".

    The meter does not show the rod yet and its relay has not reported: the base load
    counted the rod as the meter will show it, and the walk counted it once more.
    """
    site = rules(500, ("rod_l1", 1500, 10))
    plan, state = decide(site, world(800, {"rod_l1": None}, ac_pv=2500), EngineState(), at(0))
    assert commands(plan) == {"rod_l1": True}
    assert plan.decision("rod_l1").reason == "on: 1500 W, 200 W left"
    for report in (None, 1500.0):  # not reported yet, then on but not measured
        relays = {"rod_l1": report}
        plan, state = decide(site, world(800, relays, ac_pv=2500), state, at(0.003))
        assert commands(plan) == {}
        assert plan.decision("rod_l1").reason == "on: 1500 W, 200 W left"


def test_nothing_starts_into_the_power_of_an_unconfirmed_switch_off() -> None:
    """A Shelly hangs as it is told to shed: its load still runs, and a load that would
    fit only without it stays off until the relay confirms."""
    site = rules(2000, ("a", 1500, 10), ("b", 1000, 20))
    plan, state = decide(site, world(300, {"a": None, "b": None}, dc_pv=5000), EngineState(), at(0))
    assert commands(plan) == {"a": True}
    # a kettle: the phase is over the limit, a is shed (and its relay hangs)
    plan, state = decide(site, world(2700, {"a": 1500, "b": None}, dc_pv=5000), state, at(1))
    assert commands(plan) == {"a": False}
    # the kettle is off again; a's relay still reports on: b would take its room
    plan, state = decide(site, world(1800, {"a": 1500, "b": None}, dc_pv=5000), state, at(1.5))
    assert commands(plan) == {}
    assert plan.decision("b").reason == (
        "off: 1000 W more would exceed the continuous inverter power on L1"
    )
    # a confirms: the room is free again, and a, first by priority, takes it
    plan, state = decide(site, world(300, {"a": None, "b": None}, dc_pv=5000), state, at(1.6))
    assert commands(plan) == {"a": True}


def test_a_switch_off_not_confirmed_in_time_counts_for_every_load() -> None:
    """A load switched on in the cycle that sheds another (switch-offs go first) is shed in
    turn when the other's relay has not confirmed within CONFIRM_WITHIN: the phase is
    over the inverter limit for as long as the shed load runs. Before that, a read-back
    a moment late sheds nothing."""
    site = rules(2000, ("a", 1500, 10), ("b", 1000, 20))
    plan, state = decide(site, world(300, {"a": None, "b": None}, dc_pv=5000), EngineState(), at(0))
    assert commands(plan) == {"a": True}
    plan, state = decide(site, world(2500, {"a": 1500, "b": None}, dc_pv=5000), state, at(1))
    assert commands(plan) == {"a": False, "b": True}
    hung = world(2500, {"a": 1500, "b": 1000}, dc_pv=5000)  # the meter lags b
    plan, state = decide(site, hung, state, at(1.1))
    assert commands(plan) == {}
    plan, state = decide(site, hung, state, at(1 + CONFIRM_WITHIN))
    assert commands(plan) == {"b": False}
    assert plan.decision("b").reason == "off: shed, L1 would exceed the continuous inverter power"
