"""The switch service read and written as gui-v2 does: the GX's own switch pane.

The appliance runs on a private bus with a simulated GX, one consumer on an emulated
Shelly (HTTP) and one on an emulated dbus-shelly service (a `dbus:` relay).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dbus_fast import Variant

from hems_rules.app import App, AppOptions
from hems_rules.dbus.client import BusClient, Values, open_client
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.demo.switch_emulator import EmulatedSwitchService, Output
from hems_rules.numbers import number
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import ShellyEndpoint
from tests.bus import DbusDaemon
from tests.conftest import wait_until

SWITCH = "com.victronenergy.switch.hems"
ACLOAD = "com.victronenergy.acload.shelly_e4b063a1b2c3_0"
HEATER = "  - {{id: heater, shelly: {{host: heater.invalid, port: {port}}}, power: 1000}}\n"
POOL = f"  - {{id: pool, dbus: {{service: {ACLOAD}, output: 0}}, power: 600, priority: 10}}\n"
SITE = 'site: {phases: 1, battery_reservation: "0", loop_interval: 0.2s}\nconsumers:\n'


@dataclass
class Pane:
    """The appliance and what gui-v2 would see of it."""

    daemon: DbusDaemon
    settings: SimulatedSettings
    system: SimulatedSystem
    heater: EmulatedShelly
    pool: EmulatedSwitchService
    client: BusClient
    options: AppOptions
    app: App | None = None
    signals: list[Values] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[int] | None = None

    async def start(self) -> App:
        self.app = App(self.options, load_rules(self.options.rules_dir))
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.app.run(self._stop))
        await asyncio.wait_for(self.app.ready.wait(), 10)
        return self.app

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            assert await asyncio.wait_for(self._task, 10) == 0

    def n(self, consumer: str) -> int:
        assert self.app is not None
        return self.app.numbers.numbers[consumer]

    async def get(self, path: str) -> object:
        (variant,) = await self.client.call(SWITCH, path, "GetValue")
        assert isinstance(variant, Variant)
        return variant.value

    async def set(self, path: str, value: Variant) -> int:
        return await self.client.set_value(SWITCH, path, value)

    def decision(self, consumer: str) -> str:
        loop = self.app.loop if self.app else None
        plan = loop.controller.plan if loop else None
        return plan.decision(consumer).reason if plan else ""


@pytest.fixture
async def pane(dbus_daemon: DbusDaemon, tmp_path: Path) -> AsyncIterator[Pane]:
    address = dbus_daemon.address
    async with (
        SimulatedSettings(address) as settings,
        SimulatedSystem(address) as system,
        EmulatedShelly() as heater,
        EmulatedSwitchService(ACLOAD, address, [Output("0", load=600.0)]) as pool,
        open_client(address) as client,
    ):
        system.update(
            {
                "/Ac/PvOnGrid/L1/Power": 500.0,  # no surplus: the engine wants everything off
                "/Ac/Consumption/L1/Power": 500.0,
                "/Dc/Pv/Power": 0.0,
                "/Dc/Battery/Soc": 60.0,
            }
        )
        (tmp_path / "rules.yaml").write_text(SITE + HEATER.format(port=heater.port) + POOL)

        def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
            return "127.0.0.1", endpoint.port

        options = AppOptions(
            rules_dir=tmp_path, bus_address=address, shelly_address=loopback, poll_interval=0.2
        )
        pane = Pane(dbus_daemon, settings, system, heater, pool, client, options)
        await pane.start()
        await client.watch(SWITCH, pane.signals.append, lambda: None)
        settings.set("/Settings/HEMS/Mode", 1)
        yield pane
        await pane.stop()


async def test_gui_v2_finds_a_three_state_switch_for_every_consumer(pane: Pane) -> None:
    items = await pane.client.get_items(SWITCH)
    for consumer, name in (("heater", "Heater"), ("pool", "Pool")):
        output = f"/SwitchableOutput/{pane.n(consumer)}"
        assert items[f"{output}/Settings/Type"] == 9
        assert items[f"{output}/Settings/ValidTypes"] == 1 << 9
        assert items[f"{output}/Name"] == name
        assert items[f"{output}/State"] in (0, 1), "gui-v2 hides an output without a State"
        assert items[f"{output}/Auto"] == 1
        assert items[f"{output}/Settings/Function"] == 2
        assert items[f"{output}/Settings/ValidFunctions"] == 1 << 2
        assert items[f"{output}/Settings/ShowUIControl"] == 1
        assert items[f"{output}/Settings/Group"] == "HEMS"
        assert items[f"{output}/Settings/CustomName"] == ""
    assert len({pane.n("heater"), pane.n("pool")}) == 2


async def test_auto_is_one_value_on_two_paths(pane: Pane) -> None:
    n = pane.n("pool")
    device, output = f"/Devices/{n}/S2/Auto", f"/SwitchableOutput/{n}/Auto"
    assert await pane.set(output, Variant("i", 0)) == 0  # gui-v2's Auto button
    assert await pane.get(device) == 0
    await wait_until(lambda: any(s.get(device) == 0 for s in pane.signals), what="the signal")
    await wait_until(lambda: pane.settings["/Settings/HEMS/Auto/pool"] == 0, what="persisted")
    assert await pane.set(device, Variant("b", True)) == 0  # Node-RED, over MQTT: JSON true
    assert await pane.get(output) == 1
    await wait_until(lambda: any(s.get(output) == 1 for s in pane.signals), what="the signal")


async def test_a_state_write_while_auto_is_on_is_refused(pane: Pane) -> None:
    state = f"/SwitchableOutput/{pane.n('heater')}/State"
    assert await pane.set(state, Variant("i", 1)) != 0, "gui-v2: Disable Auto mode first"
    assert await pane.set(state, Variant("i", 0)) != 0, "refused, even for what it is now"
    assert await pane.get(state) == 0
    assert not pane.heater.switches[0].output


@pytest.mark.parametrize("consumer", ["heater", "pool"])
async def test_with_auto_off_a_state_write_switches_the_relay_and_the_engine_leaves_it(
    pane: Pane, consumer: str
) -> None:
    n = pane.n(consumer)

    def relay_on() -> bool:
        return pane.heater.switches[0].output if consumer == "heater" else pane.pool.outputs["0"].on

    assert await pane.set(f"/SwitchableOutput/{n}/Auto", Variant("i", 0)) == 0
    await wait_until(lambda: "not controlled" in pane.decision(consumer), what="released")
    assert await pane.set(f"/SwitchableOutput/{n}/State", Variant("i", 1)) == 0  # gui-v2's On
    await wait_until(relay_on, what="the relay switched by hand")
    await wait_until(lambda: pane.decision(consumer).startswith("not controlled"))
    assert pane.app is not None and pane.app.loop is not None
    cycles = pane.app.loop.cycles
    # No surplus: a controlled consumer would be off. Several cycles later it is still on.
    await wait_until(lambda: pane.app.loop.cycles >= cycles + 5)  # type: ignore[union-attr]
    assert relay_on()
    await wait_until(lambda: pane.app.inputs.devices[consumer].on)  # type: ignore[union-attr]
    await wait_until(
        lambda: any(s.get(f"/SwitchableOutput/{n}/Status") == 0x09 for s in pane.signals)
    )
    assert await pane.get(f"/SwitchableOutput/{n}/State") == 1
    runtime = f"/Devices/{n}/RuntimeToday"
    await wait_until(lambda: any((number(s.get(runtime)) or 0) >= 1 for s in pane.signals))
    assert await pane.set(f"/SwitchableOutput/{n}/State", Variant("i", 0)) == 0  # gui-v2's Off
    await wait_until(lambda: not relay_on(), what="switched off by hand")


async def test_custom_name_is_shown_and_survives_a_restart(pane: Pane) -> None:
    n = pane.n("heater")
    name = f"/SwitchableOutput/{n}/Settings/CustomName"
    assert await pane.set(name, Variant("s", "Boiler rod")) == 0
    assert await pane.get(f"/Devices/{n}/Name") == "Boiler rod"
    await wait_until(lambda: pane.settings["/Settings/HEMS/CustomName/heater"] == "Boiler rod")
    assert await pane.set(f"/SwitchableOutput/{n}/Settings/Group", Variant("s", "Tank")) == 0
    await wait_until(lambda: pane.settings["/Settings/HEMS/Group/heater"] == "Tank")
    assert await pane.set("/CustomName", Variant("s", "Energy manager")) == 0  # the device
    await wait_until(
        lambda: pane.settings["/Settings/Devices/hems_switch/CustomName"] == "Energy manager"
    )
    await pane.stop()
    app = await pane.start()
    assert pane.n("heater") == n
    assert await pane.get(name) == "Boiler rod"
    assert await pane.get(f"/SwitchableOutput/{n}/Settings/Group") == "Tank"
    assert await pane.get(f"/Devices/{n}/Name") == "Boiler rod"
    assert await pane.get(f"/SwitchableOutput/{n}/Name") == "Heater", "the rules' name stays"
    assert await pane.get("/CustomName") == "Energy manager"
    assert app.inputs.snapshot(0.0).name("heater", "Heater") == "Boiler rod"
    assert await pane.set(name, Variant("s", "")) == 0
    assert await pane.get(f"/Devices/{n}/Name") == "Heater", "cleared: the rules' name again"


async def test_wrong_writes_to_every_writable_path_are_refused_and_change_nothing(
    pane: Pane,
) -> None:
    assert await pane.set(f"/SwitchableOutput/{pane.n('pool')}/Auto", Variant("i", 0)) == 0
    writable = ["/CustomName"]
    for n in (pane.n("heater"), pane.n("pool")):
        writable.append(f"/Devices/{n}/S2/Auto")
        writable += [
            f"/SwitchableOutput/{n}/{leaf}"
            for leaf in ("State", "Auto", "Settings/CustomName", "Settings/Group")
        ]
        writable.append(f"/SwitchableOutput/{n}/Settings/ShowUIControl")
    before = {p: await pane.get(p) for p in writable}
    accepted = []
    for path in writable:
        wrong = [Variant("d", 1.0), Variant("i", 7), Variant("i", -1), Variant("ai", [])]
        if not isinstance(before[path], str):
            wrong.append(Variant("s", "1"))
        elif path.endswith(("/CustomName", "/Group")) and path != "/CustomName":
            wrong.append(Variant("s", "x" * 33))  # gui-v2 and dbus-shelly allow 32 bytes
        for value in wrong:
            if await pane.set(path, value) == 0:
                accepted.append(f"{path} took {value}")
    assert accepted == []
    assert {p: await pane.get(p) for p in writable} == before, "nothing changed"
    assert not pane.pool.writes, "no write reached the relay"
    name = f"/SwitchableOutput/{pane.n('pool')}/Settings/CustomName"
    assert await pane.set(name, Variant("s", "Pool pump")) == 0, "and it still works"


async def test_a_number_is_never_given_to_another_consumer(pane: Pane, tmp_path: Path) -> None:
    assert pane.app is not None
    heater, pool = pane.n("heater"), pane.n("pool")
    boiler = "  - {id: boiler, dbus: {service: com.victronenergy.switch.x, output: 0}, power: 1}\n"
    (tmp_path / "rules.yaml").write_text(SITE + POOL + boiler)
    pane.app.reload()
    await wait_until(lambda: "boiler" in pane.app.numbers.numbers, what="reloaded")  # type: ignore[union-attr]
    assert pane.n("boiler") not in (heater, pool), "the heater's number is retired"
    assert pane.n("pool") == pool
    # The paths go once the reload's settings are read: ItemsChanged says so (invalid).
    await wait_until(
        lambda: any(s.get(f"/SwitchableOutput/{heater}/State", 0) is None for s in pane.signals),
        what="the heater's paths removed",
    )
    items = await pane.client.get_items(SWITCH)
    assert f"/Devices/{heater}/S2/Auto" not in items
    assert f"/SwitchableOutput/{heater}/State" not in items
    boiler_n = pane.n("boiler")
    await pane.stop()
    (tmp_path / "rules.yaml").write_text(
        SITE + "  - {id: newcomer, dbus: {service: com.victronenergy.switch.y, output: 0},"
        " power: 1}\n" + HEATER.format(port=pane.heater.port) + POOL
    )
    await pane.start()
    assert pane.n("heater") == heater and pane.n("pool") == pool, "the same after a restart"
    assert pane.n("newcomer") not in (heater, pool, boiler_n), "boiler's number is retired too"
