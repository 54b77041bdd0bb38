"""A live rig for tests: the engine loop, relay workers, emulated Shellies and a meter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.core.model import Settings
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.loop import EngineLoop
from hems_rules.ruleset import RuleSet
from hems_rules.ruleset.rules import ShellyEndpoint
from hems_rules.shelly.relays import ShellyRelays

HOUSE = 500.0


def surplus(inputs: Inputs, watts: float) -> None:
    """PV that leaves `watts` over the house load before any managed consumer runs."""
    inputs.update_system({"/Ac/PvOnGrid/L1/Power": watts + HOUSE})


async def meter(inputs: Inputs, devices: dict[str, EmulatedShelly]) -> None:
    """Consumption as a meter reads it: the house plus whatever the relays draw."""
    while True:
        unique = {id(d): d for d in devices.values()}.values()  # channels of one device
        drawn = sum(s.load for d in unique if d.running for s in d.switches if s.output)
        inputs.update_system({"/Ac/Consumption/L1/Power": HOUSE + drawn})
        await asyncio.sleep(0.05)


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
        ShellyRelays(inputs.set_device, poll, timeout=0.5, address=loopback) as relays,
        EngineLoop(Controller(rules), inputs, relays) as loop,
    ):
        relays.sync(rules.consumers)
        metering = asyncio.create_task(meter(inputs, devices))
        try:
            yield inputs, loop, relays
        finally:
            metering.cancel()
            await asyncio.gather(metering, return_exceptions=True)
