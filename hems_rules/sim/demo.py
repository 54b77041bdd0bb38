"""`hems-rules demo`: the appliance on an accelerated solar day, needing nothing but this repo.

The real engine loop and relay workers run against emulated Shellies on loopback; every
Shelly host of the rules is mapped to its emulator, so the demo never contacts the LAN.
The solar day (PV with clouds, house load, battery SOC, tank temperature) is the world
the GX would measure; time runs `speed` times faster than the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from hems_rules.controller import Controller
from hems_rules.inputs import Inputs, SystemValue
from hems_rules.loop import EngineLoop
from hems_rules.model import Settings
from hems_rules.ruleset import RuleSet, load_rules
from hems_rules.ruleset.rules import PHASES, ShellyEndpoint
from hems_rules.sim.day import Cloud, SolarDay
from hems_rules.sim.shelly_emulator import EmulatedShelly
from hems_rules.sinks.shelly import ShellyRelays

log = logging.getLogger(__name__)


@dataclass
class VirtualClock:
    """Seconds since the demo began, `speed` times faster than real time."""

    speed: float
    start: datetime
    _t0: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds())


class DemoWorld:
    """The GX's measurements as the solar day makes them, metered with the relays' draw."""

    def __init__(self, rules: RuleSet, inputs: Inputs, shellies: Mapping[str, EmulatedShelly]):
        self.rules = rules
        self.inputs = inputs
        self.shellies = shellies
        self.base: dict[str, SystemValue] = {}

    def drawn(self, consumer_id: str) -> float:
        consumer = self.rules.consumer(consumer_id)
        device = self.shellies[consumer_id]
        switch = device.switches[consumer.shelly.switch]
        return switch.load if device.running and switch.output else 0.0

    def update_system(self, values: Mapping[str, SystemValue] | None) -> None:
        self.base.update(values or {})
        metered = dict(self.base)
        for consumer in self.rules.consumers:
            for phase, watts in consumer.shares(self.drawn(consumer.id)):
                key = f"/Ac/Consumption/{phase}/Power"
                metered[key] = float(metered.get(key) or 0.0) + watts
        self.inputs.update_system(metered)

    def set_variable(self, name: str, value: float | None, t: float) -> None:
        self.inputs.set_variable(name, value, t)


def emulate(rules: RuleSet) -> dict[str, EmulatedShelly]:
    """One emulated device per Shelly host of the rules, with a switch per channel used."""
    by_endpoint: dict[tuple[str, int], list[tuple[int, float, str]]] = {}
    for c in rules.consumers:
        entry = (c.shelly.switch, c.power, c.id)
        by_endpoint.setdefault((c.shelly.host, c.shelly.port), []).append(entry)
    shellies: dict[str, EmulatedShelly] = {}
    for channels in by_endpoint.values():
        count = max(ch for ch, _, _ in channels) + 1
        loads = [1000.0] * count
        for channel, power, _ in channels:
            loads[channel] = power
        device = EmulatedShelly(count, loads=loads)
        for _, _, consumer_id in channels:
            shellies[consumer_id] = device
    return shellies


def render(loop: EngineLoop, world: DemoWorld, day: SolarDay, clock: VirtualClock) -> str:
    plan = loop.controller.plan
    lines = [
        f"hems-rules demo  {clock.wall():%H:%M}  (x{clock.speed:g})   "
        f"SOC {day.soc:5.1f} %   tank {day.tank_temp:4.1f} °C   PV {day.sun(clock.seconds()):.0%}",
    ]
    if plan is None:
        return lines[0]
    reservation = "unknown" if plan.reservation is None else f"{plan.reservation:.0f} W"
    surplus = "  ".join(f"{p} {plan.surplus.get(p, 0.0):6.0f} W" for p in PHASES if plan.surplus)
    dc = "" if plan.dc_pool is None else f"  DC {plan.dc_pool:6.0f} W"
    lines.append(f"battery reservation {reservation}   surplus {surplus}{dc}")
    lines.append("")
    rules = loop.controller.rules
    ranked = sorted(plan.decisions, key=lambda d: rules.consumer(d.consumer).priority)
    for decision in ranked:
        consumer = rules.consumer(decision.consumer)
        drawn = world.drawn(consumer.id)
        lines.append(
            f"  {consumer.priority:>3} {consumer.name[:18]:<18} {decision.state:<11} "
            f"{drawn:6.0f} W  {decision.reason[:70]}"
        )
    return "\n".join(lines)


async def run_demo(
    rules_dir: Path,
    speed: float = 60.0,
    duration: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    rules = load_rules(rules_dir)
    clock = VirtualClock(speed, datetime(2026, 6, 21, 10, 0).astimezone())
    day = SolarDay(start_h=10.0, ac_pv_peak=8000, dc_pv_peak=5000, soc=55.0, tank_temp=67.5)
    day.clouds.append(Cloud(10.5 * 3600, 600, 0.8))  # one cloud the newcomer sees shed a load
    inputs = Inputs(rules, Settings(mode=1))
    shellies = emulate(rules)
    devices = list({id(d): d for d in shellies.values()}.values())

    def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
        # Only emulators: a demo must never reach a real device on the LAN.
        for consumer in rules.consumers:
            if consumer.shelly == endpoint:
                return "127.0.0.1", shellies[consumer.id].port
        raise LookupError(endpoint)

    world = DemoWorld(rules, inputs, shellies)
    async with contextlib.AsyncExitStack() as stack:
        for device in devices:
            await stack.enter_async_context(device)
        relays = await stack.enter_async_context(
            ShellyRelays(inputs.set_device, poll_interval=0.5, timeout=1.0, address=loopback)
        )
        relays.sync(rules.consumers)
        loop = EngineLoop(
            Controller(rules), inputs, relays, monotonic=clock.seconds, wall=clock.wall
        )
        engine = asyncio.create_task(loop.run(), name="engine")
        started = time.monotonic()
        tty = out.isatty()
        shown = 0.0
        try:
            while duration is None or time.monotonic() - started < duration:
                day.apply(clock.seconds(), world)
                screen = render(loop, world, day, clock)
                if tty:
                    out.write("\x1b[2J\x1b[H" + screen + "\n")
                elif time.monotonic() - shown >= 5:
                    out.write(screen + "\n\n")
                    shown = time.monotonic()
                out.flush()
                # Often enough that no variable goes stale between two updates.
                await asyncio.sleep(min(0.25, 5 / speed))
        finally:
            engine.cancel()
            await asyncio.gather(engine, return_exceptions=True)
        out.write(render(loop, world, day, clock) + "\n\n")
    out.write(f"demo ended after {loop.cycles} cycles\n")
    return 0
