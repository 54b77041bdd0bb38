"""An accelerated solar day for the demo and the benchmarks.

A deterministic world: a PV bell curve with passing clouds (seeded), a household load
with kettle and oven spikes, a battery whose SOC follows what is left after the loads,
and a hot-water tank that the heating rods warm up. It drives a World (the
simulation's Plant, or the demo's simulated GX) once per simulated second, so the
engine sees what it would see on a GX.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from hems_rules.core.controller import Controller
from hems_rules.core.inputs import SystemValue
from hems_rules.core.model import CycleResult, Settings
from hems_rules.ruleset.rules import PHASES, RuleSet
from hems_rules.simulate.plant import Plant

_HOUR = 3600.0
_KEYS = tuple((p, f"/Ac/PvOnGrid/{p}/Power", f"/Ac/Consumption/{p}/Power") for p in PHASES)


class World(Protocol):
    """What the day drives: the simulation's Plant, or the demo's GX and Shellies."""

    def update_system(self, values: Mapping[str, SystemValue] | None) -> None: ...

    def set_variable(self, name: str, value: float | None, t: float) -> None: ...

    def draws(self) -> Mapping[str, float]:
        """What each managed load draws now, by consumer id. Returning the same mapping
        while no relay changes spares the day from summing it again every second."""
        ...


def _tenths(watts: float) -> float:
    """round(watts, 1), skipped for a whole number (most loads, PV at night): it is a
    costly call, and a whole number is rounded already."""
    return watts if watts.is_integer() else round(watts, 1)


@dataclass(frozen=True)
class Cloud:
    start: float
    length: float
    depth: float  # fraction of PV it removes at its darkest


@dataclass(frozen=True)
class Spike:
    start: float
    length: float
    watts: float
    phase: str


Span = TypeVar("Span", Cloud, Spike)


@dataclass(frozen=True)
class _Passing(Generic[Span]):
    """The spans of `spans` (clouds, spikes) that pass at every second from `since` until
    before `until`: a day looks them up once, not every second.

    A span passes at `seconds` when `0 <= seconds - start <= length`. Those that pass at
    `since` still pass before `start + length` (`s < a + b` implies `s - a <= b`,
    rounding is monotonic), and those to come do not pass before their start.
    """

    spans: tuple[Span, ...]
    since: float
    until: float
    passing: tuple[Span, ...]

    @classmethod
    def at(cls, spans: tuple[Span, ...], seconds: float) -> _Passing[Span]:
        passing = tuple(s for s in spans if 0 <= seconds - s.start <= s.length)
        ends = [s.start + s.length for s in passing] + [s.start for s in spans if s.start > seconds]
        return cls(spans, seconds, min(ends, default=math.inf), passing)

    def holds(self, spans: tuple[Span, ...], seconds: float) -> bool:
        return spans is self.spans and self.since <= seconds < self.until


@dataclass
class SolarDay:
    """The world of one day; `apply(t, plant)` sets the GX's readings for second `t`."""

    ac_pv_peak: float = 6000.0  # W over all phases, PV inverters on the grid side
    dc_pv_peak: float = 4000.0  # W, MPPT solar chargers
    sunrise_h: float = 6.0
    sunset_h: float = 20.5
    start_h: float = 0.0  # time of day at t = 0
    house_base: float = 220.0  # W per phase
    battery_wh: float = 10000.0
    max_charge: float = 5000.0
    soc: float = 30.0
    tank_temp: float = 42.0
    tank_wh_per_k: float = 348.0  # 300 l of water
    tank_heaters: tuple[str, ...] = ("heater_l1", "heater_l2", "heater_l3")
    seed: int = 7
    cloud_count: int = 14  # clouds passing between 07:00 and 19:00
    # Made from the seed; add one as `day.clouds += (Cloud(...),)`.
    clouds: tuple[Cloud, ...] = ()
    spikes: tuple[Spike, ...] = ()
    _last_t: float | None = None
    _clouds: _Passing[Cloud] | None = field(default=None, init=False, repr=False)
    _spikes: _Passing[Spike] | None = field(default=None, init=False, repr=False)
    # The world's draws as last read, their total and the tank heaters' share of it.
    _draws: tuple[Mapping[str, float], float, float] | None = field(
        default=None, init=False, repr=False
    )

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.clouds = tuple(
            Cloud(rng.uniform(7, 19) * _HOUR, rng.uniform(60, 900), rng.uniform(0.3, 0.8))
            for _ in range(self.cloud_count)
        )
        self.spikes = tuple(
            Spike(rng.uniform(6, 22) * _HOUR, rng.uniform(120, 600), w, rng.choice(PHASES))
            for w in (2000, 2000, 2000, 2500, 3000, 1500, 1200)
        )

    def hour(self, t: float) -> float:
        return (self.start_h + t / _HOUR) % 24

    def sun(self, t: float) -> float:
        """0..1: the clear-sky PV fraction at `t`, times the clouds passing."""
        return self._sun(self.hour(t))

    def _sun(self, h: float) -> float:
        """The sun at `h` o'clock."""
        if not self.sunrise_h < h < self.sunset_h:
            return 0.0
        clear = math.sin(math.pi * (h - self.sunrise_h) / (self.sunset_h - self.sunrise_h)) ** 1.5
        seconds = h * _HOUR
        clouds = self._clouds
        if clouds is None or not clouds.holds(self.clouds, seconds):
            clouds = self._clouds = _Passing.at(self.clouds, seconds)
        shade = 1.0
        for cloud in clouds.passing:
            shade *= 1 - cloud.depth * math.sin(math.pi * (seconds - cloud.start) / cloud.length)
        return float(clear * shade)

    def house(self, t: float, phase: str) -> float:
        return self._house(self.hour(t) * _HOUR)[PHASES.index(phase)]

    def _house(self, seconds: float) -> list[float]:
        """The household load of each phase at `seconds` after midnight."""
        spikes = self._spikes
        if spikes is None or not spikes.holds(self.spikes, seconds):
            spikes = self._spikes = _Passing.at(self.spikes, seconds)
        loads = [self.house_base] * len(PHASES)
        for spike in spikes.passing:
            loads[PHASES.index(spike.phase)] += spike.watts
        return loads

    def apply(self, t: float, world: World) -> None:
        """Set every reading for second `t` and advance the battery and the tank."""
        dt = 0.0 if self._last_t is None else t - self._last_t
        self._last_t = t
        h = self.hour(t)
        sun = self._sun(h)
        pv = _tenths(self.ac_pv_peak * sun / 3)
        l1, l2, l3 = self._house(h * _HOUR)
        values: dict[str, SystemValue] = {
            "/Dc/Pv/Power": _tenths(self.dc_pv_peak * sun),
            "/Ac/PvOnGrid/L1/Power": pv,
            "/Ac/Consumption/L1/Power": _tenths(l1),
            "/Ac/PvOnGrid/L2/Power": pv,
            "/Ac/Consumption/L2/Power": _tenths(l2),
            "/Ac/PvOnGrid/L3/Power": pv,
            "/Ac/Consumption/L3/Power": _tenths(l3),
        }
        managed = world.draws()
        if self._draws is None or self._draws[0] is not managed:
            heating = sum([w for i, w in managed.items() if i in self.tank_heaters])
            self._draws = (managed, sum(managed.values()), heating)
        _, drawn, heating = self._draws
        used = 0.0 + l1 + l2 + l3 + drawn
        battery = self.ac_pv_peak * sun + self.dc_pv_peak * sun * 0.925 - used
        room = (100.0 - self.soc) / 100 * self.battery_wh * _HOUR / max(dt, 1.0)
        battery = min(battery, self.max_charge, room)
        if self.soc <= 10:
            battery = max(battery, 0.0)
        self.soc = min(100.0, max(0.0, self.soc + battery * dt / _HOUR / self.battery_wh * 100))
        self.tank_temp += (heating * dt / _HOUR) / self.tank_wh_per_k - 0.5 * dt / _HOUR
        values["/Dc/Battery/Soc"] = round(self.soc, 2)
        values["/Dc/Battery/Power"] = round(battery, 1)
        world.update_system(values)
        tank = round(self.tank_temp, 2)
        world.set_variable("tank_temp", tank, t)
        # The rod is as warm as the tank while it is off: the same number, rounded once.
        rod = round(self.tank_temp + 15.0, 2) if managed.get("heater_l1") else tank
        world.set_variable("rod_temp", rod, t)


def cycles(
    rules: RuleSet, start: datetime, hours: float, every: float = 1.0
) -> Iterator[CycleResult]:
    """The solar day on the plant, one cycle every `every` s from `start`, as the live loop
    publishes them: a recorded day for the history's tests and benchmarks."""
    world = SolarDay(start_h=start.hour + start.minute / 60, soc=50.0, tank_temp=50.0)
    plant = Plant(rules, Settings(mode=1))
    controller = Controller(rules)
    t = 0.0
    while t < hours * 3600:
        world.apply(t, plant)
        snapshot = plant.snapshot(t)
        at = start + timedelta(seconds=t)
        plan, changed = controller.cycle(snapshot, at)
        for decision in changed:
            if decision.command is not None:
                plant.switch(decision.consumer, decision.command, t)
        yield CycleResult(plan, tuple(changed), snapshot, at, 0.0)
        t += every
