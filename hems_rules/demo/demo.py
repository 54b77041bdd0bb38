"""`hems-rules demo`: the appliance on an accelerated solar day, needing nothing but this repo.

The real appliance (the same wiring as `hems-rules run`) runs on a private dbus-daemon
against a simulated GX (system and settings services) and both kinds of relay: emulated
Shellies on loopback (every Shelly host of the rules is mapped to its emulator, so the
demo never contacts the LAN) and, for `dbus:` relays, emulated switch services as
Victron's dbus-shelly publishes them. The solar day (PV with clouds, house load, battery
SOC, tank temperature) is the world the GX measures; time runs `speed` times faster.

MQTT variables reach the appliance through its real MQTT source: the day publishes them
to a private mosquitto that site.mqtt is mapped to (when mosquitto is installed; else
the day sets them directly). HTTP variables are always set directly: their polling runs
in real time (every 10 s), which is ten simulated minutes at 60x.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import aiomqtt

from hems_rules.app import App, AppOptions
from hems_rules.core.inputs import Inputs, SystemValue
from hems_rules.dbus.variants import Value
from hems_rules.demo.broker import Mosquitto, mosquitto
from hems_rules.demo.bus import PrivateBus
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.demo.switch_emulator import EmulatedSwitchService, Output
from hems_rules.loop import EngineLoop
from hems_rules.ruleset import RuleSet, load_rules
from hems_rules.ruleset.rules import (
    PHASES,
    Consumer,
    HistoryConfig,
    MqttBroker,
    MqttSource,
    PageConfig,
    ShellyEndpoint,
)
from hems_rules.simulate.day import Cloud, SolarDay
from hems_rules.simulate.meter import LaggingMeter
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

METER_LAG = 1.5  # s: a GX's consumption shows a switched load 1-3 s late


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


@dataclass
class Relays:
    """The emulated relay of every consumer: a Shelly, or a switch service output."""

    shellies: dict[str, EmulatedShelly]
    services: dict[str, EmulatedSwitchService]

    def drawn(self, consumer: Consumer) -> float:
        if consumer.shelly is not None:
            device = self.shellies[consumer.id]
            switch = device.switches[consumer.shelly.switch]
            return switch.load if device.running and switch.output else 0.0
        assert consumer.dbus is not None
        output = self.services[consumer.id].outputs[consumer.dbus.output]
        return output.load if output.on else 0.0

    def devices(self) -> list[EmulatedShelly | EmulatedSwitchService]:
        """Each device once (channels of one device, outputs of one service share it)."""
        every: list[EmulatedShelly | EmulatedSwitchService] = [
            *self.shellies.values(),
            *self.services.values(),
        ]
        return [d for i, d in enumerate(every) if all(d is not e for e in every[:i])]


class DemoWorld:
    """The GX's measurements as the solar day makes them, metered with the relays' draw.

    Readings go to the simulated com.victronenergy.system on the bus, as systemcalc
    would publish them, and like a GX's its consumption shows a switched relay
    `meter_lag` (simulated) seconds late; the tank and rod temperatures go straight to
    the inputs.
    """

    def __init__(
        self,
        rules: RuleSet,
        system: SimulatedSystem,
        inputs: Inputs,
        relays: Relays,
        *,
        now: Callable[[], float],
        mqtt: aiomqtt.Client | None = None,
        meter_lag: float = METER_LAG,
    ) -> None:
        self.rules = rules
        self.system = system
        self.inputs = inputs
        self.relays = relays
        self.base: dict[str, SystemValue] = {}
        self._now = now
        self._meter = LaggingMeter(meter_lag)
        self._metered: dict[str, Value] = {}
        self._mqtt = mqtt
        self._published: dict[str, tuple[MqttSource, float | None]] = {}

    def drawn(self, consumer_id: str) -> float:
        return self.relays.drawn(self.rules.consumer(consumer_id))

    def draws(self) -> Mapping[str, float]:
        return {c.id: self.relays.drawn(c) for c in self.rules.consumers}

    def update_system(self, values: Mapping[str, SystemValue] | None) -> None:
        self.base.update(values or {})
        self.meter()

    def meter(self) -> None:
        """Publish what the GX's meter shows now: the house plus each relay's draw, late."""
        t = self._now()
        metered: dict[str, Value] = dict(self.base)
        for consumer in self.rules.consumers:
            self._meter.record(consumer.id, self.drawn(consumer.id), t)
            for phase, watts in consumer.shares(self._meter.shown(consumer.id, t)):
                key = f"/Ac/Consumption/{phase}/Power"
                metered[key] = float(metered.get(key) or 0.0) + watts
        if metered != self._metered:
            self._metered = metered
            self.system.update(metered)

    async def follow_relays(self) -> None:
        """Meter the relays between the day's updates, so the lag is what it says."""
        while True:
            self.meter()
            await asyncio.sleep(0.01)

    def set_variable(self, name: str, value: float | None, t: float) -> None:
        variable = self.rules.variables.get(name)
        if self._mqtt is not None and variable and isinstance(variable.source, MqttSource):
            self._published[name] = (variable.source, value)  # sent by publish()
        else:
            self.inputs.set_variable(name, value, t)

    def shown(self, now: float) -> list[str]:
        """Each variable as the appliance has it, and how it got there."""
        shown = []
        for name, variable in self.rules.variables.items():
            value = self.inputs.variable(name, now)
            how = "via MQTT" if self._mqtt and isinstance(variable.source, MqttSource) else "set"
            shown.append(f"{name} {'unknown' if value is None else f'{value:g}'} ({how})")
        return shown

    async def publish(self) -> None:
        """Send the MQTT variables the day has set, as the device behind each topic would."""
        if self._mqtt is None:
            return
        published, self._published = self._published, {}
        for source, value in published.values():
            await self._mqtt.publish(source.topic, payload(source.json, value), retain=True)


def payload(json_path: str | None, value: float | None) -> str:
    """`value` where `json_path` finds it: {"a": {"b": 1.5}} for a.b, or the bare number."""
    data: object = value
    for key in reversed((json_path or "").split(".") if json_path else []):
        data = {key: data}
    return json.dumps(data)


def emulate(rules: RuleSet, bus_address: str) -> Relays:
    """One emulated Shelly per Shelly host of the rules, with a switch per channel used,
    and one emulated switch service per `dbus:` service, with an output per consumer."""
    by_endpoint: dict[tuple[str, int], list[tuple[int, float, str]]] = {}
    by_service: dict[str, list[tuple[Output, str]]] = {}
    for c in rules.consumers:
        if c.shelly is not None:
            entry = (c.shelly.switch, c.power, c.id)
            by_endpoint.setdefault((c.shelly.host, c.shelly.port), []).append(entry)
        elif c.dbus is not None:
            output = Output(c.dbus.output, load=c.power)
            by_service.setdefault(c.dbus.service, []).append((output, c.id))
    shellies: dict[str, EmulatedShelly] = {}
    for channels in by_endpoint.values():
        count = max(ch for ch, _, _ in channels) + 1
        loads = [1000.0] * count
        for channel, power, _ in channels:
            loads[channel] = power
        device = EmulatedShelly(count, loads=loads)
        for _, _, consumer_id in channels:
            shellies[consumer_id] = device
    services: dict[str, EmulatedSwitchService] = {}
    for name, outputs in by_service.items():
        service = EmulatedSwitchService(name, bus_address, [o for o, _ in outputs])
        services.update((consumer_id, service) for _, consumer_id in outputs)
    return Relays(shellies, services)


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
    if world.rules.variables:
        lines.append("variables " + "   ".join(world.shown(clock.seconds())))
    lines.append("")
    rules = loop.controller.rules
    ranked = sorted(plan.decisions, key=lambda d: rules.consumer(d.consumer).priority)
    for decision in ranked:
        consumer = rules.consumer(decision.consumer)
        drawn = world.drawn(consumer.id)
        via = "Shelly" if consumer.shelly is not None else "D-Bus"  # the relay's kind
        lines.append(
            f"  {consumer.priority:>3} {consumer.name[:18]:<18} {via:<6} {decision.state:<11} "
            f"{drawn:6.0f} W  {decision.reason[:64]}"
        )
    return "\n".join(lines)


DEMO_HISTORY = Path("demo-history")
DEMO_PORT = 8089


def demo_site(rules: RuleSet, history: Path | None, port: int | None) -> RuleSet:
    """The rules with the demo's own history and a page on loopback (or without them)."""
    site = rules.site
    return replace(
        rules,
        site=replace(
            site,
            history=None
            if history is None
            else replace(site.history or HistoryConfig(), path=str(history)),
            web=None
            if port is None
            else replace(site.web or PageConfig(), port=port, bind="127.0.0.1"),
        ),
    )


def fresh(history: Path) -> None:
    """Every demo day starts at 09:30 of the same date: it starts a new history too."""
    for name in ("history.db", "history.db-wal", "history.db-shm"):
        (history / name).unlink(missing_ok=True)


async def run_demo(
    rules_dir: Path,
    speed: float = 60.0,
    duration: float | None = None,
    *,
    out: TextIO = sys.stdout,
    bus_address: str | None = None,
    meter_lag: float = METER_LAG,
    history: Path | None = DEMO_HISTORY,
    port: int | None = DEMO_PORT,
) -> int:
    """Run until `duration` (real seconds) has passed, or forever.

    SIGTERM (`kill`) and SIGHUP (its terminal closed) cancel it, as Ctrl-C does: the
    private bus and broker, which are separate processes, are stopped on the way out
    rather than left running.
    """
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        asyncio.get_running_loop().add_signal_handler(sig, main.cancel)
    rules = demo_site(load_rules(rules_dir), history, port)
    if history is not None:
        fresh(history)
    with contextlib.ExitStack() as private:
        if bus_address is None:
            bus_address = private.enter_context(PrivateBus()).address
        broker = None
        if rules.site.mqtt is not None and mosquitto() is not None:
            directory = private.enter_context(tempfile.TemporaryDirectory(prefix="hems-mqtt-"))
            broker = Mosquitto(Path(directory))
            broker.start()
            private.callback(broker.stop)
        return await _run(
            rules,
            rules_dir,
            bus_address=bus_address,
            broker=broker,
            speed=speed,
            duration=duration,
            out=out,
            meter_lag=meter_lag,
        )


async def _run(
    rules: RuleSet,
    rules_dir: Path,
    *,
    bus_address: str,
    broker: Mosquitto | None,
    speed: float,
    duration: float | None,
    out: TextIO,
    meter_lag: float,
) -> int:
    clock = VirtualClock(speed, datetime(2026, 6, 21, 9, 30).astimezone())
    day = SolarDay(start_h=9.5, ac_pv_peak=8000, dc_pv_peak=5000, soc=50.0, tank_temp=67.0)
    day.clouds += (Cloud(10.5 * 3600, 600, 0.8),)  # one cloud the newcomer sees shed a load
    relays = emulate(rules, bus_address)

    def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
        # Only emulators: a demo must never reach a real device on the LAN.
        for consumer in rules.consumers:
            if consumer.shelly == endpoint:
                return "127.0.0.1", relays.shellies[consumer.id].port
        raise LookupError(endpoint)

    def private_broker(_: MqttBroker) -> tuple[str, int] | None:
        # Only the demo's own broker: never the one the rules name on this machine.
        return None if broker is None else ("127.0.0.1", broker.port)

    options = AppOptions(
        rules_dir=rules_dir,
        bus_address=bus_address,
        shelly_address=loopback,
        poll_interval=0.5,
        monotonic=clock.seconds,
        wall=clock.wall,
        broker_address=private_broker,
        http_sources=False,
    )
    async with contextlib.AsyncExitStack() as stack:
        settings = await stack.enter_async_context(SimulatedSettings(bus_address))
        system = await stack.enter_async_context(SimulatedSystem(bus_address))
        for device in relays.devices():
            await stack.enter_async_context(device)
        mqtt = None
        if broker is not None:
            mqtt = await stack.enter_async_context(aiomqtt.Client("127.0.0.1", broker.port))
        app = App(options, rules)
        world = DemoWorld(
            rules, system, app.inputs, relays, now=clock.seconds, mqtt=mqtt, meter_lag=meter_lag
        )
        day.apply(0.0, world)
        stop = asyncio.Event()
        tasks = await stack.enter_async_context(Tasks("demo"))
        tasks.keep_running("meter", world.follow_relays)

        async def show() -> None:
            """The day on the screen until `duration` has passed; then the app stops."""
            await app.ready.wait()
            assert app.loop is not None
            settings.set("/Settings/HEMS/Mode", 1)  # as `dbus -y ... SetValue 1` would
            if app.page_port is not None:
                out.write(f"status page: http://127.0.0.1:{app.page_port}/\n")
            if rules.site.history is not None:
                out.write(f"history: {rules.site.history.path} (hems-rules replay reads it)\n")
            out.flush()
            started, shown = time.monotonic(), 0.0
            tty = out.isatty()
            while duration is None or time.monotonic() - started < duration:
                day.apply(clock.seconds(), world)
                await world.publish()
                screen = render(app.loop, world, day, clock)
                if tty:
                    out.write("\x1b[2J\x1b[H" + screen + "\n")
                elif time.monotonic() - shown >= 5:
                    out.write(screen + "\n\n")
                    shown = time.monotonic()
                out.flush()
                # Often enough that no variable goes stale between two updates.
                await asyncio.sleep(min(0.25, 5 / speed))
            out.write(render(app.loop, world, day, clock) + "\n\n")
            stop.set()

        # The appliance runs in this task, so a failure to start (or to go on) ends the
        # demo at once with its own error or exit code; the screen stops with it.
        tasks.spawn(show(), name="demo-screen")
        code = await app.run(stop)
        if app.loop is not None:
            out.write(f"demo ended after {app.loop.cycles} cycles\n")
    return code
