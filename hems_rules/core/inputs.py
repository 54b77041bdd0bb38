"""The latest value of every input, and when it arrived: what a cycle's Snapshot is made of.

Sources write here (D-Bus, MQTT, HTTP, relays reporting back); the loop reads a
Snapshot at each cycle. Time is passed in, never read, so the simulator and the live
loop share this store. A value older than its `stale_after` reads as unknown.

Every setter that changes something sets `changed`. It is a plain flag here, so the
pure side imports no asyncio; the live loop swaps in an asyncio.Event to wait on.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from hems_rules.core.model import UNAVAILABLE, DeviceFact, Settings, Snapshot
from hems_rules.ruleset.rules import RuleSet

SystemValue = float | str | None


class ChangeFlag(Protocol):
    """What `Inputs.changed` must do: an asyncio.Event does it, and so does `Flag`."""

    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def clear(self) -> None: ...


class Flag:
    """A change flag for whoever polls it (the simulator)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def clear(self) -> None:
        self._set = False


class Inputs:
    def __init__(self, rules: RuleSet, settings: Settings | None = None) -> None:
        self.rules = rules
        self.settings = settings or Settings()
        self.system: dict[str, SystemValue] = {}
        self.system_present = False
        self.devices: dict[str, DeviceFact] = {}
        self.auto: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.max_charge_current: float | None = None
        self.max_charge_voltage: float | None = None
        self.hub4_mode: int | None = None
        self._variables: dict[str, tuple[float | None, float]] = {}
        self.changed: ChangeFlag = Flag()

    def _touch(self, changed: bool) -> None:
        if changed:
            self.changed.set()

    def update_system(self, values: Mapping[str, SystemValue] | None) -> None:
        """New com.victronenergy.system values; None: the service vanished."""
        if values is None:
            self._touch(self.system_present or bool(self.system))
            self.system.clear()
            self.system_present = False
            return
        changed = not self.system_present or any(
            self.system.get(k, ...) != v for k, v in values.items()
        )
        self.system.update(values)
        self.system_present = True
        self._touch(changed)

    def set_variable(self, name: str, value: float | None, at: float) -> None:
        previous = self._variables.get(name)
        self._variables[name] = (value, at)
        self._touch(previous is None or previous[0] != value)

    def set_device(self, consumer_id: str, fact: DeviceFact) -> None:
        self._touch(self.devices.get(consumer_id) != fact)
        self.devices[consumer_id] = fact

    def set_auto(self, consumer_id: str, value: int) -> None:
        self._touch(self.auto.get(consumer_id, 1) != value)
        self.auto[consumer_id] = value

    def set_name(self, consumer_id: str, custom: str) -> None:
        """The name the user gave a consumer in the switch pane ("": the rules' name)."""
        self._touch(self.names.get(consumer_id, "") != custom)
        self.names[consumer_id] = custom

    def set_settings(self, settings: Settings) -> None:
        self._touch(settings != self.settings)
        self.settings = settings

    def set_battery_limits(self, current: float | None, voltage: float | None) -> None:
        changed = (current, voltage) != (self.max_charge_current, self.max_charge_voltage)
        self.max_charge_current, self.max_charge_voltage = current, voltage
        self._touch(changed)

    def set_hub4_mode(self, mode: int | None) -> None:
        self._touch(mode != self.hub4_mode)
        self.hub4_mode = mode

    def variable(self, name: str, now: float) -> float | None:
        value, at = self._variables.get(name, (None, now))
        variable = self.rules.variables.get(name)
        stale_after = variable.source.stale_after if variable is not None else None
        if stale_after is not None and now - at > stale_after:
            return None
        return value

    def snapshot(self, now: float, extra_system: Mapping[str, float] | None = None) -> Snapshot:
        """Everything as of `now` (the clock the setters' `at` use)."""
        system = {k: v for k, v in self.system.items() if not isinstance(v, str)}
        if extra_system:
            system.update(extra_system)
        names = set(self.rules.variables) | set(self._variables)
        return Snapshot(
            system=MappingProxyType(system),
            system_present=self.system_present,
            settings=self.settings,
            variables=MappingProxyType({n: self.variable(n, now) for n in names}),
            auto=MappingProxyType(dict(self.auto)),
            devices=MappingProxyType(
                {c.id: self.devices.get(c.id, UNAVAILABLE) for c in self.rules.consumers}
            ),
            max_charge_current=self.max_charge_current,
            max_charge_voltage=self.max_charge_voltage,
            hub4_mode=self.hub4_mode,
            names=MappingProxyType({i: n for i, n in self.names.items() if n}),
        )
