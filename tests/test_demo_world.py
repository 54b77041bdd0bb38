"""The demo's simulated GX meters its relays late, as a GX does."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from dbus_fast import NameFlag

from hems_rules.core.inputs import Inputs
from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import DbusError
from hems_rules.demo.demo import METER_LAG, DemoWorld, Relays, run_demo
from hems_rules.demo.gx import SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from tests.bus import DbusDaemon
from tests.conftest import rules_from

CONSUMPTION = "/Ac/Consumption/L1/Power"


async def test_the_simulated_meter_shows_a_switched_relay_late() -> None:
    rules = rules_from(
        "site: {phases: 1}\nconsumers:\n"
        "  - {id: h, shelly: {host: h.invalid}, power: 1000, phase: L1}\n"
    )
    async with EmulatedShelly(loads=[1000.0]) as shelly:
        t = [0.0]
        system = SimulatedSystem(None)  # not on a bus: only its values are read here
        world = DemoWorld(rules, system, Inputs(rules), Relays({"h": shelly}, {}), now=lambda: t[0])
        world.update_system({CONSUMPTION: 300.0})
        assert system[CONSUMPTION] == 300.0
        shelly.switches[0].output = True  # the relay switches at t = 0
        world.meter()  # as the demo's metering does every few milliseconds
        assert system[CONSUMPTION] == 300.0
        t[0] = METER_LAG - 0.1
        world.meter()
        assert system[CONSUMPTION] == 300.0, "not yet on the meter"
        t[0] = METER_LAG
        world.meter()
        assert system[CONSUMPTION] == 1300.0


async def test_an_appliance_that_cannot_start_ends_the_demo_at_once_saying_why(
    dbus_daemon: DbusDaemon, tmp_path: Path
) -> None:
    """Not a silent wait for a start that never comes: the cause, in seconds."""
    (tmp_path / "rules.yaml").write_text(
        "site: {phases: 1}\nconsumers:\n  - {id: h, shelly: {host: h.invalid}, power: 1000}\n"
    )
    squatter = await connect(dbus_daemon.address)
    try:
        await squatter.request_name("com.victronenergy.switch.hems", NameFlag.DO_NOT_QUEUE)
        demo = run_demo(
            tmp_path,
            duration=60,
            out=io.StringIO(),
            bus_address=dbus_daemon.address,
            history=None,
            port=None,
        )
        with pytest.raises(DbusError, match="already taken"):
            await asyncio.wait_for(demo, 10)
    finally:
        squatter.disconnect()
