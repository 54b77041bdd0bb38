"""`dbus:` relays: switchable outputs the GX already publishes, switched with SetValue.

A consumer with `dbus: {service, output}` is switched by a SetValue on
`/SwitchableOutput/<output>/State` of that service: a Shelly channel enabled in the GX
UI (dbus-shelly's `switch.*` or, metered, `acload.*`), the GX's own relays, any driver
that publishes outputs the same way. The GX owns the device, its discovery and its
password; hems-rules only asks.

Facts over intentions: the relay is what `/State` reports, its draw is the service's
`/Ac/Power` (when the service has one and carries this output alone), and the consumer
is unavailable while the service is absent, the output is missing, or `/Status`
reports a fault or a disabled output. An output whose Function is not Manual belongs
to the GX (6 is its Opportunity Loads, others are alarm, genset or pump relays): it is
left alone and its Reason says so, so two controllers never fight.

One watch per service feeds every output on it, so a service that appears after
start-up, or comes back, is picked up at once. A command is confirmed when `/State`
shows it (dbus-shelly answers the write at once and moves the value once the Shelly has
switched), or times out with a warning; the engine then sees the relay as it is.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from typing import Self

from dbus_fast import Variant

from hems_rules.core.model import DeviceFact
from hems_rules.dbus.client import BusClient, Values, Watch
from hems_rules.errors import ConfigurationError, TransientError
from hems_rules.health import Faults, Health
from hems_rules.numbers import number
from hems_rules.ruleset.rules import Consumer, DbusRelay
from hems_rules.tasks import Tasks, cancel_and_wait

log = logging.getLogger(__name__)

Report = Callable[[str, DeviceFact], None]

MANUAL, OPPORTUNITY_LOAD = 2, 6
FUNCTIONS = {
    0: "Alarm",
    1: "Genset start/stop",
    2: "Manual",
    3: "Tank pump",
    4: "Temperature",
    5: "Genset helper relay",
    6: "Opportunity load",
}
STATUS_OFF, STATUS_POWERED, STATUS_ON = 0x00, 0x01, 0x09
FAULTS = {
    0x02: "tripped",
    0x04: "over temperature",
    0x08: "an output fault",
    0x10: "a short",
    0x20: "a disabled output",
    0x40: "a bypassed output",
    0x80: "external control",
}
POWER = "/Ac/Power"


def _status_text(status: int) -> str:
    named = [text for bit, text in FAULTS.items() if status & bit]
    return " and ".join(named) or f"status 0x{status:02X}"


class OutputAway(TransientError):
    """The output cannot be switched for now: its service is away, or its Status a fault."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.reason = cause


class OutputNotOurs(ConfigurationError):
    """The output is missing, or the GX uses it for something else: the user must act."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.reason = cause


Unavailable = OutputAway | OutputNotOurs


class DbusOutput:
    """One consumer's output: commands in, facts out (fed by its service's watch)."""

    def __init__(
        self,
        consumer: Consumer,
        client: BusClient,
        report: Report,
        timeout: float,
        faults: Faults | None = None,
    ) -> None:
        assert consumer.dbus is not None
        self.consumer = consumer
        self.relay: DbusRelay = consumer.dbus
        self._client = client
        self._report = report
        self._timeout = timeout
        self._values: Values | None = None  # the service's output paths; None: absent
        self._wanted: bool | None = None
        self._wake = asyncio.Event()
        self._updated = asyncio.Event()  # the service said something
        self._measured = False  # has /Ac/Power changed since the relay last switched?
        self.health = Health(consumer.id, log, faults)
        self._closing = False

    # -- facts --------------------------------------------------------------------------

    def _value(self, leaf: str) -> float | None:
        assert self._values is not None
        return number(self._values.get(f"{self.relay.prefix}/{leaf}"))

    @property
    def on(self) -> bool:
        return self._values is not None and self._value("State") == 1

    def unavailable(self) -> Unavailable | None:
        """Why this output cannot be switched now, or None when it can."""
        if self._values is None:
            return OutputAway(f"{self.relay.service} is not on the bus")
        if self._value("State") is None:
            return OutputNotOurs(f"{self.relay.service} has no output {self.relay.output}")
        function = self._value("Settings/Function")
        if function == OPPORTUNITY_LOAD:
            return OutputNotOurs(
                f"{self.relay} is one of the GX's Opportunity Loads (Function 6), "
                "hems-rules leaves it alone"
            )
        if function is not None and function != MANUAL:
            name = FUNCTIONS.get(int(function), f"Function {function:g}")
            return OutputNotOurs(
                f"{self.relay} is the GX's {name} relay, not Manual; hems-rules leaves it alone"
            )
        status = self._value("Status")
        if status is not None and int(status) not in (STATUS_OFF, STATUS_POWERED, STATUS_ON):
            return OutputAway(f"{self.relay} reports {_status_text(int(status))}")
        return None

    def fact(self) -> DeviceFact:
        why = self.unavailable()
        if why is not None:
            return DeviceFact(available=False, cause=why.reason)
        power = None
        if self.on and self._measured and self._metered:
            assert self._values is not None
            watts = number(self._values.get(POWER))
            power = watts if watts is not None and watts >= 0 else None
        return DeviceFact(on=self.on, power=power)

    @property
    def _metered(self) -> bool:
        """/Ac/Power is this output's draw only when the service carries no other output."""
        assert self._values is not None
        labels = {p.split("/")[2] for p in self._values if p.startswith("/SwitchableOutput/")}
        return POWER in self._values and labels == {self.relay.output}

    def update(self, values: Values | None, changed: Values) -> None:
        """The service's output paths now (None: it is absent), and what just changed."""
        if f"{self.relay.prefix}/State" in changed:
            self._measured = False
        elif POWER in changed:
            self._measured = True
        self._values = values
        self._updated.set()
        why = self.unavailable()
        if why is None:
            self.health.ok()
        else:
            self.health.failed(why)
        self._report(self.consumer.id, self.fact())

    # -- commands -----------------------------------------------------------------------

    def command(self, on: bool) -> None:
        self._wanted = on
        self._wake.set()

    def close(self) -> None:
        """Stop once the commands asked for so far are sent (a removed consumer's release)."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Send each command in turn; the latest wins when several queue up."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            wanted, self._wanted = self._wanted, None
            if wanted is not None:
                try:
                    await self.switch(wanted)
                except Exception:
                    # A bug with one output must not end its commands, nor anyone else's.
                    log.exception("%s: unexpected failure with %s", self.consumer.id, self.relay)
            if self._closing and self._wanted is None:
                return

    async def switch(self, on: bool) -> bool:
        """SetValue on the output's State and wait until it shows; True when it did."""
        word = "on" if on else "off"
        why = self.unavailable()
        if why is not None:
            log.warning("%s: not switched %s, %s", self.consumer.id, word, why.reason)
            return False
        path = f"{self.relay.prefix}/State"
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._client.set_value(
                    self.relay.service, path, Variant("i", int(on))
                )
                if result != 0:
                    log.warning(
                        "%s: %s refused State %d (%d)", self.consumer.id, self.relay, on, result
                    )
                    return False
                while self.on != on:
                    self._updated.clear()
                    await self._updated.wait()
        except TimeoutError:
            log.warning(
                "%s: %s did not show State %d within %g s",
                self.consumer.id,
                self.relay,
                on,
                self._timeout,
            )
            return False
        log.info("%s switched %s (%s)", self.consumer.id, word, self.relay)
        return True


class DbusRelays:
    """Every `dbus:` consumer's output (an async context manager owning the workers)."""

    def __init__(
        self,
        client: BusClient,
        report: Report,
        timeout: float = 4.0,
        faults: Faults | None = None,
    ) -> None:
        self._client = client
        self._report = report
        self._timeout = timeout
        self._faults = faults
        self._outputs: dict[str, DbusOutput] = {}
        self._workers: dict[DbusOutput, asyncio.Task[None]] = {}  # those still running
        self._services: dict[str, Values | None] = {}  # watched: output paths, None: absent
        self._watches: dict[str, Watch] = {}
        self._tasks = Tasks("dbus relays")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()
        await self._tasks.aclose()

    def __contains__(self, consumer_id: object) -> bool:
        return consumer_id in self._outputs

    def sync(self, consumers: Iterable[Consumer]) -> None:
        """Outputs for new or changed `dbus:` consumers; those no longer in the rules stop
        once they have sent what was still asked of them (their release, usually)."""
        wanted = {c.id: c for c in consumers if c.dbus is not None}
        for consumer_id, output in list(self._outputs.items()):
            if wanted.get(consumer_id) != output.consumer:
                del self._outputs[consumer_id]
                output.close()
        for consumer_id, consumer in wanted.items():
            if consumer_id in self._outputs:
                continue
            output = DbusOutput(consumer, self._client, self._report, self._timeout, self._faults)
            self._outputs[consumer_id] = output
            worker = self._tasks.spawn(output.run(), name=f"dbus-relay-{consumer_id}")
            self._workers[output] = worker
            worker.add_done_callback(functools.partial(self._ended, output))
            service = output.relay.service
            if service not in self._services:
                self._services[service] = None
                self._tasks.spawn(self._watch(service), name=f"watch-{service}")
            elif self._services[service] is not None:
                output.update(self._services[service], {})

    def command(self, consumer_id: str, on: bool) -> None:
        output = self._outputs.get(consumer_id)
        if output is None:
            log.warning("no relay for %s; command %s dropped", consumer_id, on)
            return
        output.command(on)

    async def release(self, consumer_ids: Iterable[str]) -> None:
        """Shutdown: stop every worker (a command still queued is dropped), then switch
        these outputs off and wait until they show it."""
        ids = set(consumer_ids)
        outputs = dict(self._outputs)
        await self._stop()
        self._outputs = {i: o for i, o in outputs.items() if i in ids}
        await asyncio.gather(*(o.switch(False) for o in self._outputs.values()))
        self._outputs = {}

    def _ended(self, output: DbusOutput, worker: asyncio.Task[None]) -> None:
        """A worker is done (Tasks logs how): a removed consumer's fault is no longer shown."""
        del self._workers[output]
        if output not in self._outputs.values():
            output.health.close()
            self._forget_unused()

    def _forget_unused(self) -> None:
        """Stop watching services no output is on any more (a reload moved them)."""
        used = {o.relay.service for o in (*self._outputs.values(), *self._workers)}
        for service in [s for s in self._services if s not in used]:
            del self._services[service]
            watch = self._watches.pop(service, None)
            if watch is not None:
                watch.close()

    async def _stop(self) -> None:
        await cancel_and_wait(list(self._workers.values()), "D-Bus relays")

    async def _watch(self, service: str) -> None:
        def values(changed: Values) -> None:
            mine = {p: v for p, v in changed.items() if _wanted_path(p)}
            known = self._services.get(service)
            if service not in self._services or (known is not None and not mine):
                return  # forgotten, or a batch about other paths (system has hundreds)
            self._services[service] = {**(known or {}), **mine}
            self._feed(service, mine)

        def gone() -> None:
            if service in self._services:
                self._services[service] = None
                self._feed(service, {})

        watch = await self._client.watch(service, values, gone)
        if service in self._services:
            self._watches[service] = watch
        else:
            watch.close()  # forgotten while the first scan was under way

    def _feed(self, service: str, changed: Values) -> None:
        """Every output on the service hears it, also one that is closing down."""
        current = self._services[service]
        for output in {*self._outputs.values(), *self._workers}:
            if output.relay.service == service:
                output.update(current, changed)


def _wanted_path(path: str) -> bool:
    return path.startswith("/SwitchableOutput/") or path == POWER
