"""The latest value of every input, and when it arrived: what a cycle's Snapshot is made of.

Sources write here (D-Bus, MQTT, HTTP, relays reporting back); the loop reads a
Snapshot at each cycle. Time is passed in, never read, so the simulator and the live
loop share this store. A value older than its `stale_after` reads as unknown.

Every setter that changes something sets `changed`. It is a plain flag here, so the
pure side imports no asyncio; the live loop swaps in an asyncio.Event to wait on.
"""

from __future__ import annotations

import math
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
        # The parts of the last snapshot, each kept until a setter changes what it shows
        # (None: make it anew): a snapshot a cycle is built of mostly unchanged parts.
        self._system_view: dict[str, float | None] | None = None
        self._auto_view: Mapping[str, int] | None = None
        self._devices_view: Mapping[str, DeviceFact] | None = None
        self._names_view: Mapping[str, str] | None = None
        self._variables_view: _VariablesView | None = None
        self.rules = rules

    @property
    def rules(self) -> RuleSet:
        return self._rules

    @rules.setter
    def rules(self, rules: RuleSet) -> None:
        """Other rules: other consumers and variables to show."""
        self._rules = rules
        self._devices_view = self._variables_view = None

    def _touch(self, changed: bool) -> None:
        if changed:
            self.changed.set()

    def update_system(self, values: Mapping[str, SystemValue] | None) -> None:
        """New com.victronenergy.system values; None: the service vanished."""
        if values is None:
            self._touch(self.system_present or bool(self.system))
            self.system.clear()
            self.system_present = False
            self._system_view = None
            return
        # A subset test of the items compares every value as `==` would, in C.
        if not values.items() <= self.system.items():
            self.system.update(values)
            self._system_view = None
            self._touch(True)
        elif not self.system_present:
            self._touch(True)
        self.system_present = True

    def set_variable(self, name: str, value: float | None, at: float) -> None:
        previous = self._variables.get(name)
        self._variables[name] = (value, at)
        self._touch(previous is None or previous[0] != value)
        view = self._variables_view
        if view is not None and (
            view.values.get(name, _ABSENT) != value or (previous is not None and at < previous[1])
        ):
            self._variables_view = None  # it shows another value, or holds it too long

    def set_device(self, consumer_id: str, fact: DeviceFact) -> None:
        if self.devices.get(consumer_id) != fact:
            self._devices_view = None
            self._touch(True)
        self.devices[consumer_id] = fact

    def set_auto(self, consumer_id: str, value: int) -> None:
        previous = self.auto.get(consumer_id)
        self._touch((1 if previous is None else previous) != value)  # unset is on
        if previous != value:
            self._auto_view = None
        self.auto[consumer_id] = value

    def set_name(self, consumer_id: str, custom: str) -> None:
        """The name the user gave a consumer in the switch pane ("": the rules' name)."""
        if self.names.get(consumer_id, "") != custom:
            self._names_view = None
            self._touch(True)
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

    def variables_hold(self, now: float) -> bool:
        """Whether the last snapshot's variables are what a snapshot at `now` shows: no
        setter has changed what they show since, and none has turned stale."""
        view = self._variables_view
        return view is not None and view.holds(now)

    def snapshot(self, now: float, extra_system: Mapping[str, float] | None = None) -> Snapshot:
        """Everything as of `now` (the clock the setters' `at` use)."""
        system = self._system_view
        if system is None:
            system = self._system_view = {
                k: v for k, v in self.system.items() if not isinstance(v, str)
            }
        if extra_system:
            system = {**system, **extra_system}
        variables = self._variables_view
        if variables is None or not variables.holds(now):
            variables = self._variables_view = self._variables_at(now)
        if self._auto_view is None:
            self._auto_view = MappingProxyType(dict(self.auto))
        if self._devices_view is None:
            self._devices_view = MappingProxyType(
                {c.id: self.devices.get(c.id, UNAVAILABLE) for c in self.rules.consumers}
            )
        if self._names_view is None:
            self._names_view = MappingProxyType({i: n for i, n in self.names.items() if n})
        # Snapshot(...) without its frozen dataclass's __init__, which sets each field
        # through object.__setattr__ at three times the cost of the rest of this method,
        # and a simulated day makes a snapshot for nearly every second. Snapshot has no
        # __post_init__ and no slots: its __dict__ is the whole of it (the test of this
        # module holds it to that).
        snapshot: Snapshot = object.__new__(Snapshot)
        vars(snapshot).update(
            system=MappingProxyType(system),
            system_present=self.system_present,
            settings=self.settings,
            variables=variables.proxy,
            auto=self._auto_view,
            devices=self._devices_view,
            max_charge_current=self.max_charge_current,
            max_charge_voltage=self.max_charge_voltage,
            hub4_mode=self.hub4_mode,
            names=self._names_view,
        )
        return snapshot

    def _variables_at(self, now: float) -> _VariablesView:
        names = set(self.rules.variables) | set(self._variables)
        values = {n: self.variable(n, now) for n in names}
        until = math.inf  # when the first of the readings shown turns stale
        for name, variable in self.rules.variables.items():
            stale_after = variable.source.stale_after
            reading = self._variables.get(name)
            if stale_after is not None and reading is not None and values[name] is not None:
                until = min(until, reading[1] + stale_after)
        return _VariablesView(values, now, until)


_ABSENT = object()  # a variable a view does not show


class _VariablesView:
    """The variables as of `since`, which hold until the first reading shown turns stale.

    Never longer: `now < at + stale_after` implies `now - at <= stale_after`, the test of
    Inputs.variable() (rounding is monotonic). It may end a moment early (at `at +
    stale_after` itself, or where the two tests part by a rounding): the view made anew
    then shows the same values.
    """

    __slots__ = ("proxy", "since", "until", "values")

    def __init__(self, values: dict[str, float | None], since: float, until: float) -> None:
        self.values, self.since, self.until = values, since, until
        self.proxy: Mapping[str, float | None] = MappingProxyType(values)

    def holds(self, now: float) -> bool:
        return self.since <= now < self.until
