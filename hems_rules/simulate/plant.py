"""The simulated world of a scenario: the GX's measurements and the emulated relays.

A timeline gives consumption without the managed loads; the plant adds what each
emulated relay draws, as a real meter would: at once, or `meter_lag` seconds later, as
on a GX. Emulated relays switch at once, report their draw while on, and lose their
output when they go offline (power cut). Everything else lands in the same Inputs store
the live loop uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from hems_rules.core.inputs import Inputs, SystemValue
from hems_rules.core.model import UNAVAILABLE, DeviceFact, Settings, Snapshot
from hems_rules.core.surplus import CONSUMPTION
from hems_rules.numbers import number
from hems_rules.ruleset.rules import DbusSource, RuleSet
from hems_rules.simulate.meter import LaggingMeter

SETTINGS = "com.victronenergy.settings"
HUB4_MODE = "/Settings/CGwacs/Hub4Mode"
BATTERY = "com.victronenergy.battery."
MAX_CURRENT, MAX_VOLTAGE = "/Info/MaxChargeCurrent", "/Info/MaxChargeVoltage"


def dbus_reads(service: str, path: str, rules: Iterable[RuleSet]) -> bool:
    """Whether the plant reads this value of another service, under any of `rules`."""
    if (service.startswith(BATTERY) and path in (MAX_CURRENT, MAX_VOLTAGE)) or (
        service == SETTINGS and path == HUB4_MODE
    ):
        return True
    return any(
        isinstance(v.source, DbusSource) and (v.source.service, v.source.path) == (service, path)
        for ruleset in rules
        for v in ruleset.variables.values()
    )


@dataclass
class EmulatedRelay:
    online: bool = True
    on: bool = False
    power: float | None = None  # None: draws its nominal power while on
    stuck: bool = False  # answers, but its contact does not move (a welded relay)

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
    """The simulated GX. Change it through its methods (or its Inputs' setters), which
    tell it when the snapshot it caches may no longer hold."""

    rules: RuleSet
    settings: Settings = field(default_factory=lambda: Settings(mode=1))
    meter_lag: float = 0.0
    relays: dict[str, EmulatedRelay] = field(default_factory=dict)
    dbus: dict[str, dict[str, SystemValue]] = field(default_factory=dict)
    inputs: Inputs = field(init=False)
    meter: LaggingMeter = field(init=False)
    # Counts the switches and device changes: while it stands still, the relays do too.
    relay_changes: int = field(default=0, init=False)
    # The last snapshot, which holds while no input changes, no variable turns stale
    # (Inputs knows when) and the meter shows the same, until `_meter_until`.
    _snapshot: Snapshot | None = field(default=None, init=False, repr=False)
    _relays_changed: bool = field(default=True, init=False, repr=False)
    _draws: Mapping[str, float] | None = field(default=None, init=False, repr=False)
    # What the meter adds to each consumption path, consumer by consumer, until it
    # shows a change at `_meter_until`.
    _metered: list[tuple[str, tuple[float, ...]]] = field(
        default_factory=list, init=False, repr=False
    )
    _meter_until: float = field(default=-math.inf, init=False, repr=False)

    def __post_init__(self) -> None:
        self.inputs = Inputs(self.rules, self.settings)
        self.inputs.system_present = True
        self.meter = LaggingMeter(self.meter_lag)
        self.use_rules(self.rules)

    def _relays_change(self) -> None:
        """The relays' facts and draws are to be read again, and metered anew."""
        self._relays_changed = True
        self._meter_until = -math.inf
        self._draws = None

    def use_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self.inputs.rules = rules
        self._relays_change()

    def relay(self, consumer_id: str) -> EmulatedRelay:
        relay = self.relays.get(consumer_id)
        if relay is None:
            relay = self.relays[consumer_id] = EmulatedRelay()
        return relay

    def drawn(self, consumer_id: str) -> float:
        relay = self.relays.get(consumer_id)
        if relay is None or not relay.on:
            return 0.0  # what draw() says, without looking up the consumer
        return relay.draw(self.rules.consumer(consumer_id).power)

    def draws(self) -> Mapping[str, float]:
        """What each of the rules' consumers draws: the same mapping until a relay changes."""
        if self._draws is None:
            draws = {c.id: self.drawn(c.id) for c in self.rules.consumers}
            self._draws = MappingProxyType(draws)
        return self._draws

    def switch(self, consumer_id: str, on: bool, t: float) -> None:
        relay = self.relay(consumer_id)
        if relay.online and not relay.stuck:
            relay.on = on
        self._meter(consumer_id, t)

    def set_device(self, consumer_id: str, spec: Mapping[str, Any], t: float) -> None:
        """A scenario's `devices:` entry: offline, power (W while on), stuck."""
        relay = self.relay(consumer_id)
        if "offline" in spec:
            relay.online = not spec["offline"]
            if not relay.online:
                relay.on = False
        if "power" in spec:
            relay.power = None if spec["power"] is None else float(spec["power"])
        if "stuck" in spec:
            relay.stuck = bool(spec["stuck"])
        self._meter(consumer_id, t)

    def _meter(self, consumer_id: str, t: float) -> None:
        """The meter learns a relay's new draw when it changes (removed consumers: never)."""
        self._relays_change()
        self.relay_changes += 1
        consumer = self.rules.by_id.get(consumer_id)
        if consumer is not None:
            self.meter.record(consumer_id, self.relay(consumer_id).draw(consumer.power), t)

    def update_system(self, values: Mapping[str, SystemValue] | None) -> None:
        self.inputs.update_system(values)

    def set_variable(self, name: str, value: float | None, t: float) -> None:
        self.inputs.set_variable(name, value, t)

    def update_dbus(self, service: str, values: Mapping[str, SystemValue], t: float) -> None:
        """Values of any other D-Bus service: dbus variables, the BMS, Hub4Mode."""
        self.dbus.setdefault(service, {}).update(values)
        for name, variable in self.rules.variables.items():
            source = variable.source
            if (
                isinstance(source, DbusSource)
                and source.service == service
                and source.path in values
            ):
                self.set_variable(name, number(values[source.path]), t)
        bms = self._bms()
        self.inputs.set_battery_limits(number(bms.get(MAX_CURRENT)), number(bms.get(MAX_VOLTAGE)))
        hub4 = number(self.dbus.get(SETTINGS, {}).get(HUB4_MODE))
        self.inputs.set_hub4_mode(None if hub4 is None else int(hub4))

    def _bms(self) -> Mapping[str, SystemValue]:
        """The active BMS's values; the only battery service when none is named."""
        active = self.inputs.system.get("/ActiveBmsService")
        if isinstance(active, str):
            return self.dbus.get(active, {})
        batteries = [s for s in self.dbus if s.startswith(BATTERY)]
        return self.dbus[batteries[0]] if len(batteries) == 1 else {}

    def snapshot(self, t: float) -> Snapshot:
        """What the GX shows at `t`: the meters include what the relays draw, `meter_lag` late.

        The same object as last time while nothing in it changed, so a caller can tell
        an idle moment by identity.
        """
        inputs = self.inputs
        if (
            self._snapshot is not None
            and t < self._meter_until
            and not inputs.changed.is_set()
            and inputs.variables_hold(t)
        ):
            return self._snapshot
        if self._relays_changed:
            self._relays_changed = False
            for consumer in self.rules.consumers:
                relay = self.relay(consumer.id)
                inputs.set_device(consumer.id, relay.fact(consumer.power))
                self.meter.record(consumer.id, relay.draw(consumer.power), t)
        if t >= self._meter_until:
            shown = self.meter.shown
            by_path: dict[str, list[float]] = {}
            for consumer in self.rules.consumers:
                for phase, watts in consumer.shares(shown(consumer.id, t)):
                    if watts:
                        by_path.setdefault(CONSUMPTION[phase], []).append(watts)
            self._metered = [(path, tuple(watts)) for path, watts in by_path.items()]
            self._meter_until = self.meter.next_change()
        metered: dict[str, float] = {}
        for path, loads in self._metered:
            total = number(inputs.system.get(path))
            if total is not None:
                for watts in loads:  # one by one, in the consumers' order, as a meter adds
                    total += watts
                metered[path] = total
        snapshot = inputs.snapshot(t, metered)
        # A value that changed makes a new snapshot (compared, it might equal the last
        # after changing back: that only costs a cycle); the clock alone may not.
        if not inputs.changed.is_set() and snapshot == self._snapshot:
            snapshot = self._snapshot
        inputs.changed.clear()
        self._snapshot = snapshot
        return snapshot
