"""`hems-rules run`: sources, engine and sinks wired together on the bus.

Start-up order matters on a GX: localsettings may come up after us, so we wait for it;
every service is fully built before its name is requested; the loop starts last.
SIGTERM/SIGINT shut down cleanly: consumers under control are released per
`on_release`, then names are released. SIGHUP reloads the rules now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.handlers
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp

from hems_rules.background import Background
from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.dbus.client import BusClient
from hems_rules.dbus.connection import connect
from hems_rules.dbus.settings import SettingsClient
from hems_rules.loop import EngineLoop, local_now
from hems_rules.ruleset import RuleSet, load_rules
from hems_rules.ruleset.changes import RulesChange
from hems_rules.ruleset.rules import HttpSource, MqttSource
from hems_rules.ruleset.watch import RulesWatcher
from hems_rules.shelly.relays import Address, ShellyRelays, direct
from hems_rules.sinks.device_numbers import DeviceNumbers
from hems_rules.sinks.switch_service import SwitchService
from hems_rules.sinks.vrm_battery import VrmBatteries
from hems_rules.sources.dbus import DbusVariables, HemsSettings, SystemSource
from hems_rules.sources.http import HttpPoller
from hems_rules.sources.mqtt import MqttVariables

log = logging.getLogger(__name__)


def setup_logging(directory: Path | None, verbose: bool = False) -> None:
    """stderr for multilog, plus rotated info and debug files when a directory is given."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose else logging.INFO)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning("no log files: %s", err)
        return
    for name, level, size in (
        ("info.log", logging.INFO, 1_000_000),
        ("debug.log", logging.DEBUG, 2_000_000),
    ):
        handler = logging.handlers.RotatingFileHandler(
            directory / name, maxBytes=size, backupCount=3
        )
        handler.setLevel(level)
        handler.setFormatter(fmt)
        root.addHandler(handler)


@dataclass
class VariableSources:
    """MQTT and HTTP variable sources for the rules in force; restarted when they change."""

    inputs: Inputs
    session: aiohttp.ClientSession
    on_auto: Callable[[int, int], bool]
    clock: Callable[[], float] = time.monotonic
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _key: object = None

    def report(self, name: str, value: float | None) -> None:
        self.inputs.set_variable(name, value, self.clock())

    def start(self, rules: RuleSet) -> None:
        key = (dict(rules.variables), rules.site.mqtt)
        if key == self._key:
            return
        self._key = key
        self.stop()
        mqtt = {n: v.source for n, v in rules.variables.items() if isinstance(v.source, MqttSource)}
        if rules.site.mqtt is not None and (mqtt or rules.site.mqtt.auto_writes):
            source = MqttVariables(rules.site.mqtt, mqtt, self.report, self.on_auto)
            self.tasks.append(asyncio.create_task(source.run(), name="mqtt"))
        elif mqtt:
            log.warning("MQTT variables %s need site.mqtt", ", ".join(mqtt))
        for name, variable in rules.variables.items():
            if isinstance(variable.source, HttpSource):
                poller = HttpPoller(name, variable.source, self.session, self.report)
                self.tasks.append(asyncio.create_task(poller.run(), name=f"http-{name}"))

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks = []


@dataclass
class AppOptions:
    rules_dir: Path
    bus_address: str | None = None
    shelly_address: Address = direct
    poll_interval: float = 5.0
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = local_now
    variable_sources: bool = True  # the demo drives variables itself


class App:
    """The running appliance; `await app.run(stop)` until `stop` is set."""

    def __init__(self, options: AppOptions, rules: RuleSet) -> None:
        self.options = options
        self.rules = rules
        self.inputs = Inputs(rules)
        self.numbers = DeviceNumbers()
        self.loop: EngineLoop | None = None
        self.watcher: RulesWatcher | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        options = self.options
        bus = await connect(options.bus_address)
        client = BusClient(bus)
        settings = SettingsClient(client)
        await settings.wait()
        await HemsSettings(settings, self.inputs).start()
        await SystemSource(client, self.inputs).start()
        dbus_variables = DbusVariables(client, self.inputs, options.monotonic)
        await dbus_variables.start(self.rules)
        switch = SwitchService(settings, self.inputs, self.numbers, options.bus_address)
        bms = VrmBatteries(settings, self.inputs, options.bus_address)
        await switch.start(self.rules)
        await bms.start(self.rules)
        async with (
            aiohttp.ClientSession() as session,
            ShellyRelays(
                self.inputs.set_device, options.poll_interval, address=options.shelly_address
            ) as relays,
        ):
            relays.sync(self.rules.consumers)
            sources = VariableSources(self.inputs, session, switch.set_auto, options.monotonic)
            if options.variable_sources:
                sources.start(self.rules)
            loop = EngineLoop(
                Controller(self.rules),
                self.inputs,
                relays,
                [switch, bms],
                monotonic=options.monotonic,
                wall=options.wall,
            )
            self.loop = loop
            loop.on_rules(lambda rules: relays.sync(rules.consumers))
            loop.on_rules(switch.use_rules)
            loop.on_rules(bms.use_rules)
            loop.on_rules(dbus_variables.use_rules)
            if options.variable_sources:
                loop.on_rules(sources.start)

            def swapped(rules: RuleSet, change: RulesChange) -> None:
                switch.rules_error = ""
                loop.swap_rules(rules)

            watcher = RulesWatcher(options.rules_dir, self.rules, swapped)
            self.watcher = watcher
            async with watcher:
                engine = asyncio.create_task(loop.run(), name="engine")
                self.ready.set()
                errors = asyncio.create_task(self._report_rule_errors(watcher, switch))
                await stop.wait()
                engine.cancel()
                errors.cancel()
                await asyncio.gather(engine, errors, return_exceptions=True)
            sources.stop()
            await self._release(loop, relays)
        await switch.service.close()
        await bms.close()
        bus.disconnect()
        log.info("stopped")

    async def _report_rule_errors(self, watcher: RulesWatcher, switch: SwitchService) -> None:
        while True:
            error = watcher.error
            switch.rules_error = str(error) if error is not None else ""
            await asyncio.sleep(1)

    async def _release(self, loop: EngineLoop, relays: ShellyRelays) -> None:
        """On shutdown, controlled consumers that are on are switched off unless `keep`."""
        state = loop.controller.state.consumers
        ids = [
            c.id
            for c in loop.controller.rules.consumers
            if not c.release_keeps and (s := state.get(c.id)) is not None and s.controlled and s.on
        ]
        if ids:
            log.info("releasing %s", ", ".join(ids))
            await relays.switch_off(ids)


async def run_app(options: AppOptions) -> int:
    try:
        rules = load_rules(options.rules_dir)
    except Exception as err:
        log.error("the rules cannot be used, nothing runs:\n%s", err)
        return 1
    app = App(options, rules)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    background = Background()

    def reload() -> None:
        if app.watcher is not None:
            background.spawn(app.watcher.reload(), name="sighup-reload")

    loop.add_signal_handler(signal.SIGHUP, reload)
    with contextlib.suppress(asyncio.CancelledError):
        await app.run(stop)
    return 0
