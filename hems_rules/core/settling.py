"""A switch settles before the next (DESIGN §5.10).

The GX's consumption shows a switched relay only after the Shelly, the meter and
systemcalc have caught up. Until then the surplus is off by that relay's draw, so the
switches of a cycle are *settling*: until the total AC consumption has moved their way
by half their net draw, or `site.settle` has passed, nothing is switched because of
surplus or deficit.
"""

from __future__ import annotations

from collections.abc import Iterable

from hems_rules.core.model import UNAVAILABLE, Decision, Settling, Snapshot, Switched
from hems_rules.core.observe import draw
from hems_rules.core.surplus import EPSILON
from hems_rules.ruleset.rules import Phase, RuleSet, shares

# A batch of switches whose net draw is below this settles at once.
SETTLE_BELOW = 50.0


def _unshown(settling: Settling, snapshot: Snapshot) -> dict[Phase, float]:
    """Per phase, what the meters will add once they show these switches (offs negative).

    A switched-on relay counts what it measures once it reports, else its nominal power.
    """
    moves: dict[Phase, float] = {}
    for switched in settling.switched:
        watts = switched.watts
        if switched.on:
            fact = snapshot.devices.get(switched.consumer, UNAVAILABLE)
            if fact.available and fact.on and fact.power is not None:
                watts = fact.power
        for phase, share in shares(switched.phase, watts if switched.on else -watts):
            moves[phase] = moves.get(phase, 0.0) + share
    return moves


def unsettled(
    settling: Settling | None,
    rules: RuleSet,
    snapshot: Snapshot,
    total: float | None,
    t: float,
) -> dict[Phase, float] | None:
    """What the meters do not show yet, or None when the last switches have settled.

    Settled: the total AC consumption moved their way by half their net draw since they
    were sent, or `settle` passed, or the net draw is too small to see.
    """
    if settling is None or t - settling.since >= rules.site.settle:
        return None
    unshown = _unshown(settling, snapshot)
    net = sum(unshown.values())
    if abs(net) < SETTLE_BELOW:
        return None
    if total is None or settling.baseline is None:
        return unshown
    moved = total - settling.baseline if net > 0 else settling.baseline - total
    return None if moved >= abs(net) / 2 - EPSILON else unshown


def sent(
    decisions: Iterable[Decision],
    rules: RuleSet,
    snapshot: Snapshot,
    *,
    waiting: Settling | None,
    total: float | None,
    t: float,
) -> Settling | None:
    """The settling batch after a cycle: its commands join those still unsettled."""
    switched = []
    for decision in decisions:
        if decision.command is None:
            continue
        consumer = rules.consumer(decision.consumer)
        fact = snapshot.devices.get(consumer.id, UNAVAILABLE)
        watts = consumer.power if decision.command else draw(consumer, fact)
        switched.append(Switched(consumer.id, decision.command, watts, consumer.phase))
    if not switched:
        return waiting
    if waiting is None:
        return Settling(t, total, tuple(switched))
    return Settling(t, waiting.baseline, waiting.switched + tuple(switched))
