"""Cycles in, buckets out: the time-weighted mean of each reading per bucket.

Each cycle's readings hold until the next cycle, so a reading counts for the time it
was in force, split over the buckets that time covers. A gap longer than `MAX_HOLD`
(the process stalled, or the wall clock jumped) is left unknown rather than filled, and
a clock that goes back starts afresh. Pure and synchronous.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hems_rules.history.recording import STEP, Batch, Value

MAX_HOLD = 300.0  # s a reading may be carried forward without a new cycle


def _compact(value: float) -> float:
    """One decimal, and integral values as ints: shorter JSON, same meaning."""
    rounded = round(value, 1)
    return int(rounded) if rounded.is_integer() else rounded


@dataclass
class _Bucket:
    weights: dict[str, float] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def add(self, values: Mapping[str, Value], seconds: float) -> None:
        for name, value in values.items():
            if value is None:
                continue
            self.weights[name] = self.weights.get(name, 0.0) + seconds
            self.sums[name] = self.sums.get(name, 0.0) + value * seconds

    def mean(self, name: str) -> Value:
        weight = self.weights.get(name)
        return None if not weight else _compact(self.sums[name] / weight)


class Sampler:
    def __init__(self, step: float = STEP) -> None:
        self.step = step
        self._buckets: dict[int, _Bucket] = {}
        self._last: tuple[float, Mapping[str, Value]] | None = None

    def add(self, t: float, values: Mapping[str, Value]) -> None:
        """The readings a cycle at Unix time `t` saw; they hold until the next call."""
        if self._last is not None:
            since, held = self._last
            if 0 <= t - since <= MAX_HOLD:
                self._hold(since, t, held)
        self._last = (t, values)

    def _hold(self, since: float, until: float, values: Mapping[str, Value]) -> None:
        step = self.step
        t = since
        while t < until:
            index = int(t // step)
            end = min(until, (index + 1) * step)
            self._buckets.setdefault(index, _Bucket()).add(values, end - t)
            t = end

    def take(self, everything: bool = False) -> Batch | None:
        """The finished buckets (all of them with `everything`), removed from the sampler.

        With `everything` the last readings are counted up to the end of their bucket.
        """
        if everything and self._last is not None:
            since, held = self._last
            self._hold(since, (int(since // self.step) + 1) * self.step, held)
            self._last = None
        batch = self.peek(everything)
        if batch is not None:
            for index in range(batch.first, batch.first + batch.length):
                self._buckets.pop(index, None)
        return batch

    def peek(self, everything: bool = False) -> Batch | None:
        """What `take` would return, left in place (for readers of the latest data)."""
        current = None if everything or self._last is None else int(self._last[0] // self.step)
        indices = sorted(i for i in self._buckets if current is None or i < current)
        if not indices:
            return None
        first, last = indices[0], indices[-1]
        names = sorted({n for i in indices for n in self._buckets[i].weights})
        columns: dict[str, list[Value]] = {n: [None] * (last - first + 1) for n in names}
        for index in indices:
            bucket = self._buckets[index]
            for name in bucket.weights:
                columns[name][index - first] = bucket.mean(name)
        return Batch(self.step, first, columns)
