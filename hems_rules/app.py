"""`hems-rules run`: sources, engine and sinks wired together on the bus.

Start-up order matters on a GX: localsettings may come up after us, so we wait for it;
every service is fully built before its name is requested; the first decision is made
as soon as its inputs are in, and what it does not need (the relay workers, the
history, the page, aiohttp) starts after it; the loop starts last.
SIGTERM/SIGINT shut down cleanly, also during start-up: the engine stops, the relay
workers stop, consumers under control are released per `on_release`, then the names
are released. SIGHUP reloads the rules now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from hems_rules import tls
from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.core.model import CycleResult
from hems_rules.day_state import DayState
from hems_rules.dbus.client import open_client
from hems_rules.dbus.settings import SettingsClient
from hems_rules.errors import RulesError
from hems_rules.health import Faults
from hems_rules.localtime import local_now
from hems_rules.loop import EngineLoop, Publisher
from hems_rules.ruleset import RuleSet
from hems_rules.ruleset.compiler import Signature
from hems_rules.ruleset.watch import RulesWatcher
from hems_rules.shelly.relays import Address, direct
from hems_rules.sinks.device_numbers import DeviceNumbers
from hems_rules.sinks.relays import Relays
from hems_rules.sinks.switch_service import SwitchService
from hems_rules.sinks.vrm_battery import VrmBatteries
from hems_rules.sources.dbus import DbusVariables, HemsSettings, SystemSource
from hems_rules.sources.variables import BrokerAddress, VariableSources, broker_as_configured
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)


class View(Publisher, Protocol):
    """A component that shows the cycles (the history, the status page)."""

    def use_rules(self, rules: RuleSet) -> None: ...


@dataclass(frozen=True)
class SwitchControl:
    """What the status page may do, through the switch service (as VRM would)."""

    service: SwitchService
    numbers: DeviceNumbers

    def set_auto(self, consumer_id: str, value: int) -> bool:
        number = self.numbers.numbers.get(consumer_id)
        return number is not None and self.service.set_auto(number, value)

    def switch(self, consumer_id: str, on: bool) -> bool:
        return self.service.switch_by_hand(consumer_id, on)


@dataclass
class AppOptions:
    rules_dir: Path
    bus_address: str | None = None
    shelly_address: Address = direct
    poll_interval: float = 5.0
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = local_now
    broker_address: BrokerAddress = broker_as_configured  # the demo maps it to its own
    http_sources: bool = True  # the demo sets HTTP variables itself (its day runs faster)
    day_state: Path | None = None  # where today's runtime and starts survive a restart
    rules_seen: Signature | None = None  # rules_dir as the rules came from it (cli.py)


@dataclass(frozen=True)
class RememberedDay:
    """Hands the day state what the engine remembers after each cycle."""

    controller: Controller
    day_state: DayState

    def publish(self, result: CycleResult) -> None:
        self.day_state.update(self.controller.state)


class App:
    """The running appliance: `await app.run(stop)` until `stop` is set.

    Every component is an async context manager entered in order on one exit stack, so
    shutdown is the reverse of start-up: the watcher and the engine stop first, then the
    relay workers, then the releases are sent, then the bus names go.
    """

    def __init__(self, options: AppOptions, rules: RuleSet) -> None:
        self.options = options
        self.rules = rules
        self.inputs = Inputs(rules)
        self.numbers = DeviceNumbers()
        self.faults = Faults()
        self.loop: EngineLoop | None = None
        self.watcher: RulesWatcher | None = None
        self.ready = asyncio.Event()
        self.failure: str | None = None
        self.rules_error = ""  # the hot reload's complaint, "" while the rules load
        self.page_port: int | None = None  # where the status page listens, once it does
        self._stop = asyncio.Event()
        self._stopping = asyncio.Event()  # the `stop` of run()
        self._tasks = Tasks("app", self.fail)

    def fail(self, why: str) -> None:
        """A component cannot go on: stop, and exit non-zero so daemontools restarts us."""
        log.error("stopping because %s", why)
        self.failure = why
        self._stop.set()

    def reload(self) -> None:
        """Load the rules now (SIGHUP). Not once stopping: new rules would start sources
        and workers in components that are closing, and nothing would end them."""
        if self.watcher is not None and not self._stopping.is_set() and not self._stop.is_set():
            self._tasks.spawn(self.watcher.reload(), name="sighup-reload")

    async def run(self, stop: asyncio.Event) -> int:
        """Run until `stop` is set or a component fails; 0, or 1 after a failure."""
        self._stopping = stop
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._tasks)
            await self._start(stack)
            self.ready.set()
            stopping = asyncio.ensure_future(stop.wait())
            failing = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait((stopping, failing), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                failing.cancel()
            log.info("stopping")
        log.info("stopped")
        return 0 if self.failure is None else 1

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        """The first decision as soon as its inputs are in, then the rest.

        The first decision needs the bus (the system, the settings, each consumer's Auto)
        and the day state; no relay has reported yet, so it switches nothing. What acts on
        decisions or shows them (the relay workers, the history, the page, the HTTP and
        MQTT sources, the rules watcher) starts after it, before the loop runs: a cycle
        then reaches every publisher. Each still stops in the order the class says.
        """
        options, rules, inputs = self.options, self.rules, self.inputs
        client = await stack.enter_async_context(open_client(options.bus_address))
        settings = SettingsClient(client)
        await settings.wait()
        relays = Relays(
            inputs.set_device,
            client,
            options.poll_interval,
            options.shelly_address,
            faults=self.faults,
        )
        dbus_variables = DbusVariables(client, inputs, rules, options.monotonic)
        switch = SwitchService(
            settings,
            inputs,
            self.numbers,
            rules,
            address=options.bus_address,
            command=relays.command,
        )
        vrm = VrmBatteries(settings, rules, options.bus_address)
        # Independent of one another: their calls to the bus overlap.
        await enter_together(
            stack,
            HemsSettings(settings, inputs),
            SystemSource(client, inputs),
            dbus_variables,
            switch,
            vrm,
        )
        self.faults.listen(switch.show_config_error)
        await stack.enter_async_context(relays)
        # Exit callbacks run in reverse: this one after the engine below has stopped.
        stack.push_async_callback(self._release, relays)
        controller = Controller(rules)
        publishers: list[Publisher] = [switch, vrm]
        if options.day_state is not None:
            # Entered before the engine, so it writes the last state after the engine stops.
            day_state = await stack.enter_async_context(DayState(options.day_state))
            controller.state = day_state.restore(controller.state, options.wall().date())
            publishers.append(RememberedDay(controller, day_state))
        loop = EngineLoop(
            controller,
            inputs,
            relays,
            publishers,
            monotonic=options.monotonic,
            wall=options.wall,
            on_fatal=self.fail,
        )
        await loop.decide_first()
        # What starts after the first decision stops after the engine.
        later = await stack.enter_async_context(contextlib.AsyncExitStack())
        relays.sync(rules.consumers)
        loop.on_rules(lambda new: relays.sync(new.consumers))
        loop.on_rules(switch.use_rules)
        loop.on_rules(vrm.use_rules)
        loop.on_rules(dbus_variables.use_rules)
        for view in await self._views(later, switch):
            loop.add_publisher(view)
            loop.on_rules(view.use_rules)
        sources = await later.enter_async_context(
            VariableSources(
                inputs,
                rules,
                switch.set_auto,
                options.monotonic,
                faults=self.faults,
                broker_address=options.broker_address,
                http=options.http_sources,
            )
        )
        loop.on_rules(sources.use_rules)
        self.loop = await stack.enter_async_context(loop)

        def rules_error(error: RulesError | None) -> None:
            self.rules_error = "" if error is None else str(error)
            switch.show_rules_error(self.rules_error)

        self.watcher = await stack.enter_async_context(
            RulesWatcher(
                options.rules_dir,
                rules,
                self._swap_rules,
                on_error=rules_error,
                seen=options.rules_seen,
            )
        )

    def _swap_rules(self, rules: RuleSet) -> None:
        """New good rules to the engine, unless they need TLS that this process left out
        (tls.py): then it stops, and daemontools starts it again with TLS."""
        needs = tls.needed_by(rules) if tls.left_out() else None
        if needs is not None:
            self.fail(f"the new rules need TLS for {needs}, which this process left out")
            return
        assert self.loop is not None, "the watcher starts after the loop"
        self.loop.swap_rules(rules)

    async def _views(self, stack: contextlib.AsyncExitStack, switch: SwitchService) -> list[View]:
        """The history and the status page, when the rules want them (their modules are
        imported only then: `run` without the page never loads aiohttp's server)."""
        site, views = self.rules.site, list[View]()
        history = None
        if site.history is not None:
            try:
                # Venus OS splits the standard library into packages: sqlite3 may be absent.
                from hems_rules.history.recorder import Recorder  # noqa: PLC0415
            except ImportError as err:
                log.error("no history, control goes on: this Python lacks %s", err.name)
            else:
                history = await stack.enter_async_context(Recorder(site.history, self.rules))
                views.append(history)
        if site.web is not None:
            from hems_rules.web.server import StatusPage  # noqa: PLC0415

            page = await stack.enter_async_context(
                StatusPage(
                    site.web,
                    self.rules,
                    history=history,
                    control=SwitchControl(switch, self.numbers),
                    rules_error=lambda: self.rules_error,
                )
            )
            self.page_port = page.port
            views.append(page)
        return views

    async def _release(self, relays: Relays) -> None:
        """On shutdown, controlled consumers that are on are switched off unless `keep`."""
        ids: list[str] = []
        if self.loop is not None:
            state = self.loop.controller.state.consumers
            ids = [
                c.id
                for c in self.loop.controller.rules.consumers
                if not c.release_keeps
                and (s := state.get(c.id)) is not None
                and s.controlled
                and s.on
            ]
        if ids:
            log.info("releasing %s", ", ".join(ids))
        await relays.release(ids)


async def enter_together(
    stack: contextlib.AsyncExitStack, *components: contextlib.AbstractAsyncContextManager[object]
) -> None:
    """Enter components that do not depend on one another at once, so that their round
    trips to the bus overlap. Those entered go on `stack` in the order given, whatever
    became of the others (a failure, a cancellation); then the first failure is raised."""
    entering = [asyncio.ensure_future(c.__aenter__()) for c in components]
    try:
        await asyncio.wait(entering)
    finally:
        for task in entering:
            task.cancel()  # those still entering when this start-up itself was cancelled
        await asyncio.wait(entering)
        for component, task in zip(components, entering, strict=True):
            if not task.cancelled() and task.exception() is None:
                stack.push_async_exit(component)
    for task in entering:
        if (error := task.exception()) is not None:
            raise error


async def run_app(options: AppOptions, rules: RuleSet) -> int:
    """`hems-rules run`: 0 after SIGTERM/SIGINT, 1 when a component fails."""
    app = App(options, rules)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def on_signal() -> None:
        # During start-up (waiting for localsettings, say) there is nothing to stop
        # gracefully yet: cancel, and the exit stack closes what was opened so far.
        if app.ready.is_set():
            stop.set()
        else:
            main.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGHUP, app.reload)
    try:
        return await app.run(stop)
    except asyncio.CancelledError:
        log.info("stopped during start-up")
        return 0
    finally:
        # Stopped: a signal has nothing left to do. Ignored now, for the loop's close
        # would give each its default action back, which kills (cli.py says more).
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
