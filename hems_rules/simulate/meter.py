"""A meter that shows each load some time after it changed, as a GX does.

On a GX, a switched relay appears in `/Ac/Consumption` only after the Shelly, the meter
and systemcalc have each caught up (often 1-3 s). The scenario plant and the demo's
simulated GX both meter their relays through this class, so they lag alike.
"""

from __future__ import annotations

from collections import deque

# Times closer than this are the same moment (the simulator rounds its clock to 1 µs).
_SAME = 1e-6


class LaggingMeter:
    """What a meter shows for each load: its draw as it was `lag` seconds ago.

    `record` the true draw of a load whenever it may have changed (unchanged values are
    ignored), then read `shown` at the same or later times: reading an earlier time
    than a previous read is not supported (history already shown is dropped).
    """

    def __init__(self, lag: float = 0.0) -> None:
        if lag < 0:
            raise ValueError("a meter cannot show a load before it changes")
        self.lag = lag
        self._changes: dict[str, deque[tuple[float, float]]] = {}

    def record(self, key: str, watts: float, t: float) -> bool:
        """The load `key` draws `watts` from `t` on; True when that is a change."""
        changes = self._changes.get(key)
        if changes is None:
            changes = self._changes[key] = deque([(float("-inf"), 0.0)])
        if changes[-1][1] == watts:
            return False
        changes.append((t, watts))
        return True

    def shown(self, key: str, t: float) -> float:
        """What the meter shows for `key` at `t`."""
        changes = self._changes.get(key)
        if changes is None:
            return 0.0
        seen = t - self.lag + _SAME
        while len(changes) > 1 and changes[1][0] <= seen:
            changes.popleft()
        return changes[0][1]

    def next_change(self) -> float:
        """The earliest time at which what the meter shows may change (inf: not before
        the next `record`)."""
        pending = [changes[1][0] for changes in self._changes.values() if len(changes) > 1]
        return min(pending, default=float("inf")) + self.lag - _SAME
