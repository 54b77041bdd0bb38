"""The solar day looks up the clouds and spikes passing once per change, and that changes
nothing: at any second, in any order, its sun and house loads are those of every cloud
and spike tested one by one."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hems_rules.ruleset.rules import PHASES
from hems_rules.simulate.day import Cloud, SolarDay

HOUR = 3600.0


def sun(day: SolarDay, t: float) -> float:
    h = day.hour(t)
    if not day.sunrise_h < h < day.sunset_h:
        return 0.0
    clear = math.sin(math.pi * (h - day.sunrise_h) / (day.sunset_h - day.sunrise_h)) ** 1.5
    seconds = h * HOUR
    shade = 1.0
    for cloud in day.clouds:
        into = seconds - cloud.start
        if 0 <= into <= cloud.length:
            shade *= 1 - cloud.depth * math.sin(math.pi * into / cloud.length)
    return float(clear * shade)


def house(day: SolarDay, t: float, phase: str) -> float:
    seconds = day.hour(t) * HOUR
    load = day.house_base
    for spike in day.spikes:
        if spike.phase == phase and 0 <= seconds - spike.start <= spike.length:
            load += spike.watts
    return load


# Seconds of the day, on and around the clouds' and spikes' edges, forwards and back.
TIMES = st.lists(
    st.one_of(
        st.integers(0, 86_399).map(float),
        st.floats(6 * HOUR, 22 * HOUR, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 50), TIMES, st.integers(0, 59))
def test_sun_and_house_are_those_of_every_cloud_and_spike(
    seed: int, times: list[float], added_after: int
) -> None:
    day = SolarDay(seed=seed, cloud_count=40)
    edges = [c.start for c in day.clouds] + [c.start + c.length for c in day.clouds]
    edges += [s.start for s in day.spikes] + [s.start + s.length for s in day.spikes]
    times += [math.nextafter(e, d) for e in edges for d in (0.0, math.inf)] + edges
    for i, t in enumerate(times):
        if i == added_after:  # a cloud added while the day runs
            day.clouds += (Cloud(t - 30.0, 120.0, 0.5),)
        assert day.sun(t) == sun(day, t)
        for phase in PHASES:
            assert day.house(t, phase) == house(day, t, phase)
