"""The name a user gives a consumer in the switch pane is the name Reasons use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from hems_rules.core.engine import decide
from hems_rules.core.model import DeviceFact, EngineState, Settings, Snapshot
from tests.conftest import rules_from

START = datetime(2026, 6, 21, 11, 0, tzinfo=UTC)


def test_a_reason_naming_another_consumer_uses_its_custom_name() -> None:
    rules = rules_from(
        "site: {phases: 1, battery_reservation: 0}\nconsumers:\n"
        "  - {id: a, shelly: {host: h.invalid}, power: 1000}\n"
        "  - {id: b, shelly: {host: b.invalid}, power: 1000}\n"
    )

    def at(a_on: bool, pv: float) -> Snapshot:
        return Snapshot(
            system=MappingProxyType(
                {"/Ac/PvOnGrid/L1/Power": pv, "/Ac/Consumption/L1/Power": 500.0}
            ),
            settings=Settings(mode=1),
            devices=MappingProxyType({"a": DeviceFact(on=a_on), "b": DeviceFact()}),
            names=MappingProxyType({"a": "Boiler rod"}),
        )

    _, state = decide(rules, at(False, 1700.0), EngineState(), START)
    # a is on, the meter does not show it yet, and more sun would let b start: it waits
    plan, _ = decide(rules, at(True, 2700.0), state, START + timedelta(seconds=1))
    assert plan.decision("b").reason.startswith("off: waiting for the meter to show Boiler rod")
