"""D-Bus sources: the system service, the active BMS, Hub4Mode, the HEMS settings
overrides, and `dbus:` variables from any service.

A service that vanishes makes its values unknown, never zero.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Self

from dbus_fast import Variant

from hems_rules.core.inputs import Inputs
from hems_rules.core.model import NO_LIMIT, Settings
from hems_rules.dbus.client import BusClient, Values, Watch
from hems_rules.dbus.settings import SETTINGS, Setting, SettingsClient
from hems_rules.errors import ExpressionError
from hems_rules.expressions import RESERVATION_NAMES, compile_expression
from hems_rules.numbers import number
from hems_rules.ruleset.rules import PHASES, DbusSource, RuleSet
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

SYSTEM = "com.victronenergy.system"
HUB4_MODE = "/Settings/CGwacs/Hub4Mode"
MODE = "/Settings/HEMS/Mode"
EQUATION = "/Settings/HEMS/BatteryReservationEquation"
INVERTER_POWER = "/Settings/HEMS/ContinuousInverterPower"
ACTIVE_BMS = "/ActiveBmsService"
MAX_CURRENT = "/Info/MaxChargeCurrent"
MAX_VOLTAGE = "/Info/MaxChargeVoltage"

SYSTEM_PATHS = frozenset(
    [f"/Ac/{kind}/{p}/Power" for kind in ("PvOnGrid", "PvOnOutput", "Consumption") for p in PHASES]
    + ["/Dc/Pv/Power", "/Dc/Battery/Power", "/Dc/Battery/Soc", "/Dc/Battery/Voltage", ACTIVE_BMS]
)

HEMS_SETTINGS = (
    Setting(MODE, Variant("i", 0), Variant("i", 0), Variant("i", 1)),
    Setting(EQUATION, Variant("s", "")),
    Setting(INVERTER_POWER, Variant("d", NO_LIMIT), Variant("d", NO_LIMIT), Variant("d", 1e6)),
)


class SystemSource:
    """com.victronenergy.system, the BMS it names, and Hub4Mode, into Inputs."""

    def __init__(self, client: BusClient, inputs: Inputs) -> None:
        self.client = client
        self.inputs = inputs
        self.bms: str | None = None
        self._bms_watch: Watch | None = None
        self._watches: list[Watch] = []
        self._tasks = Tasks("system source")

    async def __aenter__(self) -> Self:
        self._watches = [
            await self.client.watch(SYSTEM, self._system, self._system_gone, paths=SYSTEM_PATHS),
            await self.client.watch(
                SETTINGS,
                self._settings,
                lambda: self.inputs.set_hub4_mode(None),
                paths=[HUB4_MODE],
            ),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        for watch in [*self._watches, self._bms_watch]:
            if watch is not None:
                watch.close()

    def _system(self, values: Values) -> None:
        self.inputs.update_system(values)
        if ACTIVE_BMS in values:
            active = values[ACTIVE_BMS]
            self._follow_bms(active if isinstance(active, str) and active else None)

    def _system_gone(self) -> None:
        self.inputs.update_system(None)

    def _settings(self, values: Values) -> None:
        if HUB4_MODE in values:
            mode = number(values[HUB4_MODE])
            self.inputs.set_hub4_mode(None if mode is None else int(mode))

    def _follow_bms(self, service: str | None) -> None:
        if service == self.bms:
            return
        self.bms = service
        self.inputs.set_battery_limits(None, None)
        if self._bms_watch is not None:
            self._bms_watch.close()
            self._bms_watch = None
        if service is None:
            return
        log.info("following the active BMS %s", service)
        self._tasks.spawn(self._watch_bms(service), name=f"watch-{service}")

    async def _watch_bms(self, service: str) -> None:
        def values(changed: Values) -> None:
            if self.bms != service:
                return
            current = number(changed.get(MAX_CURRENT, self.inputs.max_charge_current))
            voltage = number(changed.get(MAX_VOLTAGE, self.inputs.max_charge_voltage))
            self.inputs.set_battery_limits(current, voltage)

        def gone() -> None:
            if self.bms == service:
                self.inputs.set_battery_limits(None, None)

        watch = await self.client.watch(service, values, gone, paths=[MAX_CURRENT, MAX_VOLTAGE])
        if self.bms == service and self._bms_watch is None:
            self._bms_watch = watch
        else:
            watch.close()  # the system named another BMS meanwhile


class HemsSettings:
    """The /Settings/HEMS/* overrides; an equation is checked by the same sandbox."""

    def __init__(self, settings: SettingsClient, inputs: Inputs) -> None:
        self.settings = settings
        self.inputs = inputs
        self._watch: Watch | None = None

    async def __aenter__(self) -> Self:
        values = await self.settings.add(HEMS_SETTINGS)
        self._apply(values)
        self._watch = await self.settings.follow([s.path for s in HEMS_SETTINGS], self._apply)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._watch is not None:
            self._watch.close()

    def _apply(self, values: Values) -> None:
        current = self.inputs.settings
        mode = number(values.get(MODE, current.mode))
        inverter = number(values.get(INVERTER_POWER, current.continuous_inverter_power))
        equation = values.get(EQUATION, current.battery_reservation_equation)
        text = equation if isinstance(equation, str) else ""
        if text != current.battery_reservation_equation:
            self._check(text)
        self.inputs.set_settings(
            Settings(
                mode=int(mode) if mode is not None else 0,
                battery_reservation_equation=text,
                continuous_inverter_power=inverter if inverter is not None else NO_LIMIT,
            )
        )
        if self.inputs.settings != current:
            log.info("HEMS settings: %s", self.inputs.settings)

    def _check(self, text: str) -> None:
        """Say once, when it is set, why an equation is refused (the engine refuses it
        too, on every cycle, and shows it on /Hems/BatteryReservationError)."""
        if not text.strip():
            return
        try:
            compile_expression(text, RESERVATION_NAMES)
        except ExpressionError as err:
            log.warning(
                "BatteryReservationEquation refused, secondaries stop until it is fixed: %r: %s",
                text[:60],
                err,
            )


class DbusVariables:
    """`dbus:` variables: a path on any service; gone with its service. Follows reloads."""

    def __init__(
        self,
        client: BusClient,
        inputs: Inputs,
        rules: RuleSet,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.inputs = inputs
        self.clock = clock
        self._rules = rules
        self._watches: dict[str, tuple[DbusSource, Watch]] = {}
        self._starting = asyncio.Lock()  # reloads in quick succession apply in order
        self._tasks = Tasks("dbus variables")

    async def __aenter__(self) -> Self:
        await self.start(self._rules)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        for _, watch in self._watches.values():
            watch.close()
        self._watches.clear()

    async def start(self, rules: RuleSet) -> None:
        """Watch what the rules name; stop watching what they no longer name."""
        wanted = {
            n: v.source for n, v in rules.variables.items() if isinstance(v.source, DbusSource)
        }
        async with self._starting:
            for name, (source, watch) in list(self._watches.items()):
                if wanted.get(name) != source:
                    watch.close()
                    del self._watches[name]
            for name, source in wanted.items():
                if name not in self._watches:
                    self._watches[name] = (source, await self._watch(name, source))

    def use_rules(self, rules: RuleSet) -> None:
        self._tasks.spawn(self.start(rules), name="dbus-variables")

    async def _watch(self, name: str, source: DbusSource) -> Watch:
        def values(changed: Values) -> None:
            self.inputs.set_variable(name, number(changed[source.path]), self.clock())

        def gone() -> None:
            self.inputs.set_variable(name, None, self.clock())

        return await self.client.watch(source.service, values, gone, paths=[source.path])
