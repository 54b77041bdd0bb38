"""`dbus:` relays against an emulated dbus-shelly service on a private bus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.core.model import DeviceFact, Settings
from hems_rules.dbus.client import BusClient, open_client
from hems_rules.demo.gx import SimulatedSettings
from hems_rules.demo.switch_emulator import EmulatedSwitchService, Output
from hems_rules.loop import EngineLoop
from hems_rules.ruleset.rules import RuleSet
from hems_rules.sinks.dbus_relays import DbusRelays
from hems_rules.sinks.relays import Relays
from tests.bus import DbusDaemon
from tests.conftest import rules_from, wait_until
from tests.live import HOUSE, surplus

ACLOAD = "com.victronenergy.acload.shelly_e4b063a1b2c3_0"
SITE = "site: {phases: 1, battery_reservation: 0, loop_interval: 0.2s}"


def rules(*consumers: str) -> RuleSet:
    return rules_from(f"{SITE}\nconsumers:\n" + "".join(f"  - {c}\n" for c in consumers))


HEATER = f"{{id: heater, dbus: {{service: {ACLOAD}, output: 0}}, power: 800}}"


@dataclass
class Bus:
    daemon: DbusDaemon
    client: BusClient
    facts: dict[str, DeviceFact]

    def report(self, consumer_id: str, fact: DeviceFact) -> None:
        self.facts[consumer_id] = fact

    def fact(self, consumer_id: str) -> DeviceFact:
        return self.facts.get(consumer_id, DeviceFact(available=False, cause="no report yet"))


@pytest.fixture
async def bus(dbus_daemon: DbusDaemon) -> AsyncIterator[Bus]:
    async with SimulatedSettings(dbus_daemon.address), open_client(dbus_daemon.address) as client:
        yield Bus(dbus_daemon, client, {})


@asynccontextmanager
async def relays_for(bus: Bus, ruleset: RuleSet, timeout: float = 1.0) -> AsyncIterator[DbusRelays]:
    async with DbusRelays(bus.client, bus.report, timeout=timeout) as relays:
        relays.sync(ruleset.consumers)
        yield relays


async def test_set_value_switches_the_output_and_state_and_power_are_read_back(bus: Bus) -> None:
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("0", load=800.0)]) as device,
        relays_for(bus, rules(HEATER)) as relays,
    ):
        await wait_until(lambda: bus.fact("heater") == DeviceFact(on=False), what="first scan")
        relays.command("heater", True)
        await wait_until(lambda: device.outputs["0"].on, what="the output switched on")
        assert [w.value for w in device.writes] == [1]
        await wait_until(lambda: bus.fact("heater").on, what="the read-back")
        assert bus.fact("heater").power is None, "the draw that came with the switch is old"
        device.outputs["0"].load = 760.0
        device.press("0", True)  # the Shelly meters again: /Ac/Power changes alone
        await wait_until(lambda: bus.fact("heater").power == 760.0, what="the measured draw")
        relays.command("heater", False)
        await wait_until(lambda: bus.fact("heater") == DeviceFact(on=False), what="off again")


async def test_one_service_carries_several_outputs(bus: Bus) -> None:
    outputs = [Output("0", load=500.0), Output("1", load=700.0)]
    pump = f"{{id: pump, dbus: {{service: {ACLOAD}, output: 1}}, power: 700}}"
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, outputs) as device,
        relays_for(bus, rules(HEATER, pump)) as relays,
    ):
        await wait_until(lambda: bus.fact("pump").available and bus.fact("heater").available)
        relays.command("pump", True)
        await wait_until(lambda: bus.fact("pump").on, what="pump on")
        assert not device.outputs["0"].on and not bus.fact("heater").on
        device.outputs["1"].load = 650.0
        device.press("1", True)
        await wait_until(lambda: "/Ac/Power" in device.items and device["/Ac/Power"] == 650.0)
        # The service's /Ac/Power is the sum of its outputs: it is no one output's draw.
        assert bus.fact("pump").power is None


async def test_a_service_that_appears_late_or_comes_back_is_picked_up(bus: Bus) -> None:
    async with relays_for(bus, rules(HEATER)) as relays:
        await wait_until(lambda: "heater" in bus.facts, what="a first report")
        assert bus.fact("heater").cause == f"{ACLOAD} is not on the bus"
        device = EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("0")])
        async with device:
            await wait_until(lambda: bus.fact("heater").available, what="picked up after start")
            relays.command("heater", True)
            await wait_until(lambda: bus.fact("heater").on)
            await device.close()
            await wait_until(lambda: not bus.fact("heater").available, what="gone")
            await device.register()
            await wait_until(lambda: bus.fact("heater") == DeviceFact(on=True), what="back")


async def test_a_fault_or_a_disabled_output_makes_the_consumer_unavailable(bus: Bus) -> None:
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("0")]) as device,
        relays_for(bus, rules(HEATER)),
    ):
        await wait_until(lambda: bus.fact("heater").available)
        device.fault("0", 0x08)
        await wait_until(lambda: not bus.fact("heater").available, what="output fault")
        assert bus.fact("heater").cause == f"{ACLOAD} output 0 reports an output fault"
        device.fault("0", 0x20)
        await wait_until(lambda: "a disabled output" in bus.fact("heater").cause)
        device.fault("0", None)
        await wait_until(lambda: bus.fact("heater").available, what="healthy again")


async def test_a_missing_output_is_named(bus: Bus) -> None:
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("1")]),
        relays_for(bus, rules(HEATER)),
    ):
        await wait_until(lambda: "no output 0" in bus.fact("heater").cause)


async def test_an_opportunity_load_is_left_alone_and_the_reason_says_why(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    ruleset = rules(HEATER)
    inputs = Inputs(ruleset, Settings(mode=1))
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("0")]) as device,
        Relays(inputs.set_device, bus.client) as relays,
        EngineLoop(Controller(ruleset), inputs, relays) as loop,
    ):
        device.set_function("0", 6)
        relays.sync(ruleset.consumers)
        surplus(inputs, 2000)
        inputs.update_system({"/Ac/Consumption/L1/Power": HOUSE})

        def reason() -> str:
            plan = loop.controller.plan
            return plan.decision("heater").reason if plan else ""

        await wait_until(lambda: "Opportunity Loads" in reason(), what="the reason")
        assert reason() == (
            f"unavailable: {ACLOAD} output 0 is one of the GX's Opportunity Loads "
            "(Function 6), hems-rules leaves it alone"
        )
        assert "the user must act" in caplog.text and "Function 6" in caplog.text
        device.set_function("0", 4)  # Temperature: another of the GX's own uses
        await wait_until(lambda: "Temperature relay, not Manual" in reason())
        relays.command("heater", True)  # even when asked directly
        await wait_until(lambda: "heater: not switched on" in caplog.text, what="the refusal")
        await relays.release(["heater"])
        assert device.writes == [], "never a write to an output the GX uses itself"


async def test_a_command_that_does_not_show_times_out_with_a_warning(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("0", stuck=True)]) as device,
        relays_for(bus, rules(HEATER), timeout=0.3) as relays,
    ):
        await wait_until(lambda: bus.fact("heater").available)
        relays.command("heater", True)
        await wait_until(lambda: "did not show State 1 within 0.3 s" in caplog.text, timeout=3)
        assert device.writes and bus.fact("heater") == DeviceFact(on=False)


async def test_the_engine_drives_a_dbus_relay_and_releases_it_on_shutdown(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ruleset = rules(HEATER)
    inputs = Inputs(ruleset, Settings(mode=1))
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("0")]) as device,
        Relays(inputs.set_device, bus.client) as relays,
    ):
        relays.sync(ruleset.consumers)
        async with EngineLoop(Controller(ruleset), inputs, relays):
            inputs.update_system({"/Ac/Consumption/L1/Power": HOUSE})
            surplus(inputs, 1500)
            await wait_until(lambda: device.outputs["0"].on, what="switched on by surplus")
        await relays.release(["heater"])
        assert not device.outputs["0"].on
        assert f"heater switched off ({ACLOAD} output 0)" in caplog.text, "confirmed"


async def test_a_consumer_removed_by_a_reload_is_released_before_its_worker_ends(
    bus: Bus,
) -> None:
    pump = f"{{id: pump, dbus: {{service: {ACLOAD}, output: 1}}, power: 500, priority: 9}}"
    before, after = rules(HEATER, pump), rules(pump)
    inputs = Inputs(before, Settings(mode=1))
    outputs = [Output("0", load=800.0), Output("1", load=500.0)]
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, outputs) as device,
        Relays(inputs.set_device, bus.client) as relays,
    ):
        relays.sync(before.consumers)
        async with EngineLoop(Controller(before), inputs, relays) as loop:
            loop.on_rules(lambda new: relays.sync(new.consumers))
            inputs.update_system({"/Ac/Consumption/L1/Power": HOUSE})
            surplus(inputs, 1500)
            await wait_until(lambda: device.outputs["0"].on and device.outputs["1"].on)
            loop.swap_rules(after)
            await wait_until(lambda: not device.outputs["0"].on, what="the removed one released")
            assert device.outputs["1"].on
            assert "heater" not in relays.dbus


async def test_a_reload_that_moves_a_consumer_to_another_service_follows_it(bus: Bus) -> None:
    other = "com.victronenergy.switch.shelly_a8032ab1c2d4_1"
    moved = rules(HEATER.replace(ACLOAD, other).replace("output: 0", "output: 1"))
    async with (
        EmulatedSwitchService(ACLOAD, bus.daemon.address, [Output("0")]) as old,
        EmulatedSwitchService(other, bus.daemon.address, [Output("1")]) as new,
        relays_for(bus, rules(HEATER)) as relays,
    ):
        await wait_until(lambda: bus.fact("heater") == DeviceFact(on=False))
        relays.sync(moved.consumers)
        new.press("1", True)
        await wait_until(lambda: bus.fact("heater").on, what="the new service's output")
        old.press("0", False)
        old.fault("0", 0x08)
        await asyncio.sleep(0.2)  # an observation window: the old service is no one's now
        assert bus.fact("heater") == DeviceFact(on=True)
