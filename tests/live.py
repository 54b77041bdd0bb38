"""A live rig for tests: the engine loop, relay workers, emulated Shellies and a meter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.core.model import UNAVAILABLE, DeviceFact, Settings
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.loop import EngineLoop
from hems_rules.ruleset import RuleSet
from hems_rules.ruleset.rules import ShellyEndpoint
from hems_rules.shelly.relays import Report, ShellyRelays

HOUSE = 500.0


def surplus(inputs: Inputs, watts: float) -> None:
    """PV that leaves `watts` over the house load before any managed consumer runs."""
    inputs.update_system({"/Ac/PvOnGrid/L1/Power": watts + HOUSE})


def metered(inputs: Inputs, rules: RuleSet, devices: dict[str, EmulatedShelly]) -> Report:
    """Relay reports, with a meter that shows each load as its relay's report arrives.

    A meter without lag, like the simulator's default plant: the engine never decides
    on a relay state that the consumption does not show yet (that lag is §5.10's and
    the scenarios' subject, not these tests').
    """

    def read() -> None:
        drawn = sum(
            devices[c.id].switches[c.shelly.switch].load
            for c in rules.consumers
            if c.id in devices and inputs.devices.get(c.id, UNAVAILABLE).on
        )
        inputs.update_system({"/Ac/Consumption/L1/Power": HOUSE + drawn})

    def report(consumer_id: str, fact: DeviceFact) -> None:
        inputs.set_device(consumer_id, fact)
        read()

    read()
    return report


@asynccontextmanager
async def running(
    rules: RuleSet, devices: dict[str, EmulatedShelly], poll: float = 0.2
) -> AsyncIterator[tuple[Inputs, EngineLoop, ShellyRelays]]:
    """The loop and relay workers, each consumer's host mapped to its emulator on loopback."""
    inputs = Inputs(rules, Settings(mode=1))
    ports = {d.port: d for d in devices.values()}

    def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
        assert endpoint.port in ports
        return "127.0.0.1", endpoint.port

    async with (
        ShellyRelays(
            metered(inputs, rules, devices), poll, timeout=0.5, address=loopback
        ) as relays,
        EngineLoop(Controller(rules), inputs, relays) as loop,
    ):
        relays.sync(rules.consumers)
        yield inputs, loop, relays
