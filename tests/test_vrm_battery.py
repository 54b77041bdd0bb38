"""The VRM battery view publishes what the cycle decided, tested without a bus."""

from __future__ import annotations

from datetime import datetime
from types import MappingProxyType

import pytest

from hems_rules.core.model import CycleResult, Decision, DeviceFact, Plan, Snapshot
from hems_rules.sinks.vrm_battery import VrmBatteries, _battery
from tests.conftest import rules_from

RULES = """\
site: {phases: 1}
consumers:
  - {id: rod, name: Heating rod, shelly: {host: a.invalid}, power: 1000, priority: 7, vrm: true}
"""


def view() -> VrmBatteries:
    vrm = VrmBatteries(None, rules_from(RULES))  # type: ignore[arg-type]  # no settings needed
    vrm.reservation = _battery("reservation", None, 200, "HEMS reservation")
    vrm.consumers["rod"] = _battery("rod", None, 201, "Heating rod")
    vrm._names = {"rod": "Heating rod"}
    return vrm


def cycle(reservation: float | None, state: str, battery: float | None) -> CycleResult:
    plan = Plan(
        decisions=(Decision("rod", state, True, "x", "because"),),  # type: ignore[arg-type]
        active=True,
        reservation=reservation,
        reservation_state="OK" if reservation is not None else "ERROR",
    )
    system = {"/Dc/Battery/Voltage": 52.0}
    if battery is not None:
        system["/Dc/Battery/Power"] = battery
    snapshot = Snapshot(
        system=MappingProxyType(system),
        devices=MappingProxyType({"rod": DeviceFact(on=state == "on", power=990.0)}),
    )
    return CycleResult(plan, (), snapshot, datetime(2026, 6, 21, 12), 0.001)


@pytest.mark.parametrize(
    ("reservation", "battery", "name", "soc"),
    [
        (1000.0, 1200.0, "HEMS reservation 1000 W (OK)", 100.0),
        (1000.0, 250.0, "HEMS reservation 1000 W (OK)", 25.0),
        (0.0, -300.0, "HEMS reservation 0 W (OK)", 100.0),  # nothing reserved: met
        (None, 1200.0, "HEMS reservation unknown (ERROR)", None),  # defect 7: never "met"
        (1000.0, None, "HEMS reservation 1000 W (OK)", None),  # battery power unknown
    ],
)
async def test_the_reservation_tile(
    reservation: float | None, battery: float | None, name: str, soc: float | None
) -> None:
    vrm = view()
    vrm.publish(cycle(reservation, "off", battery))
    assert vrm.reservation is not None
    assert vrm.reservation["/CustomName"] == name
    assert vrm.reservation["/Soc"] == soc
    assert vrm.reservation["/Dc/0/Power"] == battery


async def test_a_consumer_tile_is_named_as_its_docstring_says() -> None:
    vrm = view()
    vrm.publish(cycle(1000.0, "on", 1200.0))
    rod = vrm.consumers["rod"]
    assert rod["/CustomName"] == "Heating rod: on"
    assert (rod["/Soc"], rod["/Dc/0/Power"]) == (100.0, 990.0)
    vrm.publish(cycle(1000.0, "unavailable", 1200.0))
    assert rod["/CustomName"] == "Heating rod: unavailable"
    assert rod["/Soc"] == 0.0
