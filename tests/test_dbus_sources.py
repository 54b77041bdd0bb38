"""D-Bus variables and the system source against services on a private bus."""

from __future__ import annotations

from dbus_fast import Message

from hems_rules.core.inputs import Inputs
from hems_rules.dbus.client import BusClient
from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import BusService
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.sources.dbus import DbusVariables, SystemSource
from tests.bus import DbusDaemon, match_rules
from tests.conftest import rules_from, wait_until

RULES = """\
site: {phases: 1}
variables:
  manual: {dbus: {service: com.victronenergy.switch.x, path: /SwitchableOutput/0/State}}
consumers: []
"""


async def test_a_dbus_variable_follows_its_service_and_reloads(dbus_daemon: DbusDaemon) -> None:
    rules = rules_from(RULES)
    inputs = Inputs(rules)
    bus = await connect(dbus_daemon.address)
    async with DbusVariables(BusClient(bus), inputs, rules, clock=lambda: 0.0) as variables:
        assert inputs.variable("manual", 0.0) is None
        other = BusService("com.victronenergy.switch.x", dbus_daemon.address)
        other.add("/SwitchableOutput/0/State", 1)
        await other.register()
        await wait_until(lambda: inputs.variable("manual", 0.0) == 1.0, what="the scan")
        other.set("/SwitchableOutput/0/State", 0)
        await wait_until(lambda: inputs.variable("manual", 0.0) == 0.0, what="a change")
        await other.close()
        await wait_until(lambda: inputs.variable("manual", 0.0) is None, what="gone: unknown")
        await variables.start(rules_from("site: {phases: 1}\nconsumers: []\n"))
        await other.register()
        other.set("/SwitchableOutput/0/State", 1)
        assert inputs.variable("manual", 0.0) is None, "a dropped variable stays quiet"
        await other.close()
    bus.disconnect()


async def test_the_system_source_follows_the_active_bms(dbus_daemon: DbusDaemon) -> None:
    inputs = Inputs(rules_from("site: {phases: 1}\nconsumers: []\n"))
    async with (
        SimulatedSystem(dbus_daemon.address) as system,
        SimulatedSettings(dbus_daemon.address),
        BusService("com.victronenergy.battery.bms", dbus_daemon.address) as bms,
    ):
        bms.add("/Info/MaxChargeCurrent", 20.0)
        bms.add("/Info/MaxChargeVoltage", 55.2)
        system.update({"/Dc/Battery/Soc": 48.0, "/Unrelated": 1.0})
        bus = await connect(dbus_daemon.address)
        async with SystemSource(BusClient(bus), inputs):
            await wait_until(lambda: inputs.system.get("/Dc/Battery/Soc") == 48.0)
            assert "/Unrelated" not in inputs.system
            system.update({"/ActiveBmsService": "com.victronenergy.battery.bms"})
            await wait_until(lambda: inputs.max_charge_current == 20.0, what="the BMS limits")
            assert inputs.max_charge_voltage == 55.2
            system.update({"/ActiveBmsService": ""})
            await wait_until(lambda: inputs.max_charge_current is None, what="no BMS, no cap")
        bus.disconnect()


class ScannedService(BusService):
    """A service that counts the GetItems scans it answers."""

    scans = 0

    def handle_custom(self, msg: Message) -> Message | None:
        if msg.member == "GetItems":
            self.scans += 1
        return None


async def test_bms_changes_and_reloads_do_not_pile_up_watches(dbus_daemon: DbusDaemon) -> None:
    rules = rules_from(RULES)
    inputs = Inputs(rules)
    a = ScannedService("com.victronenergy.battery.a", dbus_daemon.address)
    b = ScannedService("com.victronenergy.battery.b", dbus_daemon.address)
    switch = ScannedService("com.victronenergy.switch.x", dbus_daemon.address)
    a.add("/Info/MaxChargeCurrent", 10.0)
    b.add("/Info/MaxChargeCurrent", 20.0)
    switch.add("/SwitchableOutput/0/State", 1)
    async with (
        SimulatedSystem(dbus_daemon.address) as system,
        SimulatedSettings(dbus_daemon.address),
        a,
        b,
        switch,
    ):
        system.update({"/Dc/Battery/Soc": 48.0, "/ActiveBmsService": ""})
        client = BusClient(await connect(dbus_daemon.address))
        async with (
            SystemSource(client, inputs),
            DbusVariables(client, inputs, rules, clock=lambda: 0.0) as variables,
        ):
            await wait_until(lambda: inputs.system_present, what="the system")
            before = await match_rules(client)
            for n in range(10):
                bms = b if n % 2 else a
                system.update({"/ActiveBmsService": bms.name})
                await wait_until(
                    lambda: inputs.max_charge_current == bms["/Info/MaxChargeCurrent"],  # noqa: B023
                    what="the limits of the BMS named now",
                )
                await variables.start(rules_from("site: {phases: 1}\nconsumers: []\n"))
                await variables.start(rules)
            system.update({"/ActiveBmsService": ""})
            await wait_until(lambda: inputs.max_charge_current is None, what="no BMS")
            assert await match_rules(client) == before
            for service in (a, b, switch):
                service.scans = 0
                await service.close()
                await service.register()
                await client.owner(service.name)  # the client has seen it come back ...
                await client.call(service.name, "/", "GetText")  # ... and asked, if at all
            assert (a.scans, b.scans) == (0, 0), "a BMS no longer named is not followed"
            assert switch.scans == 1, "one scan for the variable's service, however many reloads"
            a.set("/Info/MaxChargeCurrent", 11.0)
            await client.get_items(a.name)  # answered after the change signal
            assert inputs.max_charge_current is None, "a BMS no longer named stays quiet"
        client.bus.disconnect()
