"""The simulated world of a scenario: the GX's measurements and the emulated relays.

A timeline gives consumption without the managed loads; the plant adds what each
emulated relay draws, as a real meter would. Emulated relays switch at once, report
their draw while on, and lose their output when they go offline (power cut).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hems_rules.model import UNAVAILABLE, DeviceFact, Settings, Snapshot
from hems_rules.ruleset.rules import DbusSource, RuleSet

SYSTEM = "com.victronenergy.system"
SETTINGS = "com.victronenergy.settings"
HUB4_MODE = "/Settings/CGwacs/Hub4Mode"


@dataclass
class EmulatedRelay:
    online: bool = True
    on: bool = False
    power: float | None = None  # None: draws its nominal power while on

    def fact(self, nominal: float) -> DeviceFact:
        if not self.online:
            return UNAVAILABLE
        return DeviceFact(on=self.on, power=self.draw(nominal) if self.on else None)

    def draw(self, nominal: float) -> float:
        if not (self.online and self.on):
            return 0.0
        return nominal if self.power is None else self.power


@dataclass
class Plant:
    rules: RuleSet
    system: dict[str, float | str | None] = field(default_factory=dict)
    system_present: bool = True
    dbus: dict[str, dict[str, float | str | None]] = field(default_factory=dict)
    settings: Settings = field(default_factory=lambda: Settings(mode=1))
    variables: dict[str, float | None] = field(default_factory=dict)
    variable_times: dict[str, float] = field(default_factory=dict)
    auto: dict[str, int] = field(default_factory=dict)
    relays: dict[str, EmulatedRelay] = field(default_factory=dict)

    def relay(self, consumer_id: str) -> EmulatedRelay:
        return self.relays.setdefault(consumer_id, EmulatedRelay())

    def set_variable(self, name: str, value: float | None, t: float) -> None:
        self.variables[name] = value
        self.variable_times[name] = t

    def update_system(self, values: Mapping[str, float | str | None] | None) -> None:
        """New values from com.victronenergy.system; None: the service vanished."""
        if values is None:
            self.system.clear()
            self.system_present = False
        else:
            self.system.update(values)
            self.system_present = True

    def switch(self, consumer_id: str, on: bool) -> None:
        relay = self.relay(consumer_id)
        if relay.online:
            relay.on = on

    def _measured_system(self) -> dict[str, float | None]:
        values = {k: v for k, v in self.system.items() if not isinstance(v, str)}
        for consumer in self.rules.consumers:
            draw = self.relay(consumer.id).draw(consumer.power)
            for phase, watts in consumer.shares(draw):
                key = f"/Ac/Consumption/{phase}/Power"
                if values.get(key) is not None and watts:
                    values[key] = (values[key] or 0.0) + watts
        return values

    def _variable(self, name: str, t: float) -> float | None:
        variable = self.rules.variables.get(name)
        if variable is not None and isinstance(variable.source, DbusSource):
            source = variable.source
            value = self.dbus.get(source.service, {}).get(source.path)
            if name not in self.variables and not isinstance(value, str):
                return value
        value = self.variables.get(name)
        stale_after = variable.source.stale_after if variable is not None else None
        if stale_after is not None and t - self.variable_times.get(name, t) > stale_after:
            return None
        return value

    def _bms(self) -> Mapping[str, float | str | None]:
        active = self.system.get("/ActiveBmsService")
        if isinstance(active, str):
            return self.dbus.get(active, {})
        batteries = [s for s in self.dbus if s.startswith("com.victronenergy.battery.")]
        return self.dbus[batteries[0]] if len(batteries) == 1 else {}

    def snapshot(self, t: float) -> Snapshot:
        bms = self._bms()
        current, voltage = bms.get("/Info/MaxChargeCurrent"), bms.get("/Info/MaxChargeVoltage")
        hub4 = self.dbus.get(SETTINGS, {}).get(HUB4_MODE)
        names = set(self.rules.variables) | set(self.variables)
        return Snapshot(
            system=MappingProxyType(self._measured_system()),
            system_present=self.system_present,
            settings=self.settings,
            variables=MappingProxyType({n: self._variable(n, t) for n in names}),
            auto=MappingProxyType(dict(self.auto)),
            devices=MappingProxyType(
                {c.id: self.relay(c.id).fact(c.power) for c in self.rules.consumers}
            ),
            max_charge_current=current if isinstance(current, (int, float)) else None,
            max_charge_voltage=voltage if isinstance(voltage, (int, float)) else None,
            hub4_mode=int(hub4) if isinstance(hub4, (int, float)) else None,
        )
