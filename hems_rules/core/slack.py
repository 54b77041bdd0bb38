"""How far the readings may move before a decision can change: the plan's slack.

decide() weighs the power readings only through comparisons: what is left after a
consumer against its bar, a phase's load against the inverter's limit, the consumption's
move against half a settling switch. Each comparison tells the cycle how far its figures
were from coming out otherwise (`Allocation.near`), and the least of these is the plan's
`slack`, in W.

A figure moves by at most what the power readings moved together (the sum of each one's
move) plus what the battery reservation moved, times its gain: feeding a phase from
another through the inverter costs 1/factor of the watts delivered, so a booking may
stretch a move by that much, and each pool keeps the product of its bookings' stretches
(`Pool.gain`). So while the readings have moved by less than the slack since a cycle, and
nothing else it reads has changed, every comparison comes out as it did: a cycle then,
with the same state and before the next timer (core/timers.py), decides the same states
for the same kinds of reason (only the numbers in the reasons differ). The simulator
skips such cycles.

Every comparison of a power figure in decide() must report to `near`: tests/test_slack.py
decides random cycles again on readings moved just short of the slack to catch one that
does not, and tests/test_skipping.py runs days and scenarios with and without skipping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hems_rules.core.model import Plan, Snapshot
from hems_rules.core.observe import uncontrolled
from hems_rules.core.surplus import CONSUMPTION, battery_reservation
from hems_rules.ruleset.rules import PHASES, RuleSet

# Every power reading decide() reads (it reads SOC through the reservation alone).
POWER = (
    "/Dc/Pv/Power",
    *CONSUMPTION.values(),
    *(f"/Ac/PvOnGrid/{p}/Power" for p in PHASES),
    *(f"/Ac/PvOnOutput/{p}/Power" for p in PHASES),
)

# Kept below the slack against rounding in decide()'s arithmetic, and the steps of
# EPSILON in Pool.book (a need that small is dropped): a cycle too many is harmless.
ROUNDING = 1e-3


class Baseline:
    """A cycle's plan and what it read: later snapshots are measured against it."""

    __slots__ = ("_held", "_variables", "plan", "released", "reserved", "rules", "snapshot")

    def __init__(self, rules: RuleSet, plan: Plan, snapshot: Snapshot) -> None:
        self.rules, self.plan, self.snapshot = rules, plan, snapshot
        self.released = uncontrolled(rules, snapshot)
        self.reserved = battery_reservation(rules, snapshot).watts
        # The last snapshot that held, and the last variables found to release the same:
        # a snapshot or its variables mostly serve several cycles.
        self._held: Snapshot | None = None
        self._variables = snapshot.variables

    def holds(self, snapshot: Snapshot) -> bool:
        """Whether every comparison of the plan comes out the same on `snapshot`."""
        if snapshot is self._held:
            return True
        slack = self.plan.slack
        if slack > ROUNDING and self.moved(snapshot) < slack - ROUNDING:
            self._held = snapshot
            return True
        return False

    def moved(self, after: Snapshot) -> float:
        """How far the readings moved since, as the slack counts it (W); infinite when
        anything else that decide() reads changed."""
        before, rules = self.snapshot, self.rules
        if (
            _differ(before.devices, after.devices)
            or _differ(before.auto, after.auto)
            or _differ(before.names, after.names)
            or before.settings != after.settings
            or before.system_present != after.system_present
            or before.hub4_mode != after.hub4_mode
        ):
            return math.inf
        if after.variables is not self._variables:
            if self.released != uncontrolled(rules, after):
                return math.inf
            self._variables = after.variables
        old, new = self.reserved, battery_reservation(rules, after).watts
        if old is None or new is None:
            if old is not new:
                return math.inf
            total = 0.0
        else:
            total = abs(new - old)
        was, now = before.system.get, after.system.get
        for path in POWER:
            a, b = was(path), now(path)
            if a is None or b is None:
                if a is not b:
                    return math.inf
            else:
                total += abs(b - a)
        return total


def _differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a is not b and a != b
