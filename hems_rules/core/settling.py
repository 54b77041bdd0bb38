"""A switch settles before the next (DESIGN §5.10).

The GX's consumption shows a switched relay only after the Shelly, the meter and
systemcalc have caught up. Until then the surplus is off by that relay's draw, so the
switches of a cycle are *settling*: until the total AC consumption has moved their way
by half their net draw, or `site.settle` has passed, nothing is switched because of
surplus or deficit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hems_rules.core.model import UNAVAILABLE, Decision, Settling, Snapshot, Switched
from hems_rules.core.observe import draw
from hems_rules.core.surplus import EPSILON
from hems_rules.ruleset.rules import Phase, RuleSet

# A batch of switches whose net draw is below this settles at once.
SETTLE_BELOW = 50.0


def unsettled(
    settling: Settling,
    rules: RuleSet,
    snapshot: Snapshot,
    total: float | None,
    t: float,
    *,
    near: Callable[[float], None],
) -> dict[Phase, float] | None:
    """What the meters do not show yet of the last switches (offs negative), or None when
    they have settled.

    The meters showed each switched relay as it was when the batch began, and will show
    it as its relay reports now; a relay that has not confirmed its command (or is
    unavailable) adds nothing, but keeps the batch from settling until `settle` passes.
    The confirmed ones are shown once the total AC consumption has moved their way by
    half their net draw since they were sent, or at once when that is too small to see.
    `near` learns how far the consumption was from settling them (or not).
    """
    if t - settling.since >= rules.site.settle:
        return None
    first: dict[str, Switched] = {}
    last: dict[str, Switched] = {}
    for switched in settling.switched:
        first.setdefault(switched.consumer, switched)
        last[switched.consumer] = switched
    moves: dict[Phase, float] = {}
    net = 0.0
    confirmed = True
    for consumer_id, switched in first.items():
        consumer = rules.by_id.get(consumer_id)
        if consumer is None:
            continue  # removed from the rules: no longer ours to count
        fact = snapshot.devices.get(consumer_id, UNAVAILABLE)
        if not fact.available or fact.on != last[consumer_id].on:
            confirmed = False
            continue
        was = 0.0 if switched.on else switched.watts
        move = (draw(consumer, fact) if fact.on else 0.0) - was
        net += move
        for phase, share in consumer.shares(move):
            moves[phase] = moves.get(phase, 0.0) + share
    if abs(net) < SETTLE_BELOW:
        shown = True
    elif total is None or settling.baseline is None:
        shown = False
    else:
        moved = total - settling.baseline if net > 0 else settling.baseline - total
        half = abs(net) / 2 - EPSILON
        near(moved - half)
        shown = moved >= half
    if not shown:
        return moves
    return None if confirmed else {}


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
