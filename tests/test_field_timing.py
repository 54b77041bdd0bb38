"""The live appliance against a meter that lags, as a GX's does: no chatter.

The case of issue #9, on the private bus: three 1000 W consumers without min_on, a step
from 100 W to 2700 W of surplus, then down to 1800 W. Deciding on a surplus that does
not yet show the last switch cascades relays on and off; with settling, each emulated
Shelly receives exactly the commands that were needed: a on, b on then off, c nothing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from dbus_fast import Variant

from hems_rules.app import App, AppOptions
from hems_rules.dbus.client import open_client
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import ShellyEndpoint
from hems_rules.simulate.meter import LaggingMeter
from tests.bus import DbusDaemon
from tests.conftest import wait_until

LAG = 1.5  # s: what the demo's simulated GX uses too; a GX takes 1-3 s
HOUSE = 500.0
PV = "/Ac/PvOnGrid/L1/Power"
CONSUMPTION = "/Ac/Consumption/L1/Power"

RULES = """\
site: {{phases: 1, battery_reservation: 0, loop_interval: 0.5s, settle: 5s}}
consumers:
  - {{id: a, shelly: {{host: a.invalid, port: {a}}}, power: 1000, priority: 10}}
  - {{id: b, shelly: {{host: b.invalid, port: {b}}}, power: 1000, priority: 20}}
  - {{id: c, shelly: {{host: c.invalid, port: {c}}}, power: 1000, priority: 30}}
"""


def sets(device: EmulatedShelly) -> list[bool]:
    return [bool(params["on"]) for method, params in device.calls if method == "Switch.Set"]


async def test_a_lagging_meter_gets_the_fewest_commands(
    dbus_daemon: DbusDaemon, tmp_path: Path
) -> None:
    async with (
        SimulatedSettings(dbus_daemon.address) as settings,
        SimulatedSystem(dbus_daemon.address) as system,
        EmulatedShelly() as a,
        EmulatedShelly() as b,
        EmulatedShelly() as c,
    ):
        devices = {"a": a, "b": b, "c": c}
        (tmp_path / "rules.yaml").write_text(RULES.format(a=a.port, b=b.port, c=c.port))
        system.update({PV: HOUSE + 100.0, CONSUMPTION: HOUSE, "/Dc/Pv/Power": 0.0})
        meter = LaggingMeter(LAG)

        async def metering() -> None:
            # The GX's consumption: the house plus each relay's draw, LAG seconds late.
            while True:
                now = time.monotonic()
                shown = 0.0
                for name, device in devices.items():
                    switch = device.switches[0]
                    meter.record(name, switch.load if switch.output else 0.0, now)
                    shown += meter.shown(name, now)
                system.update({CONSUMPTION: HOUSE + shown})
                await asyncio.sleep(0.02)

        def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
            return "127.0.0.1", endpoint.port

        options = AppOptions(
            tmp_path, dbus_daemon.address, shelly_address=loopback, poll_interval=0.2
        )
        app = App(options, load_rules(tmp_path))
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(stop))
        meter_task = asyncio.create_task(metering())
        try:
            await asyncio.wait_for(app.ready.wait(), 10)
            async with open_client(dbus_daemon.address) as client:
                mode = await client.set_value(settings.name, "/Settings/HEMS/Mode", Variant("i", 1))
                assert mode == 0
            system.update({PV: HOUSE + 2700.0})  # a and b fit, c does not
            await wait_until(
                lambda: a.switches[0].output and b.switches[0].output,
                timeout=20,
                what="a and b on",
            )
            # Until the meter shows b and settle has passed, c might still be tempted.
            await wait_until(lambda: app.loop is not None and settled(app), timeout=15)
            system.update({PV: HOUSE + 1800.0})  # a fits exactly, b must go
            await wait_until(lambda: not b.switches[0].output, timeout=20, what="b off")
            await wait_until(lambda: settled(app), timeout=15, what="the meter shows b off")
            assert (sets(a), sets(b), sets(c)) == ([True], [True, False], [])
            assert a.switches[0].output and not c.switches[0].output
        finally:
            meter_task.cancel()
            stop.set()
            await asyncio.wait_for(running, 15)
            await asyncio.gather(meter_task, return_exceptions=True)


def settled(app: App) -> bool:
    """No decision waits for the meter any more."""
    assert app.loop is not None
    plan = app.loop.controller.plan
    return plan is not None and not any("waiting for" in d.reason for d in plan.decisions)
