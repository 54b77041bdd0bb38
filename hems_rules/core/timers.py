"""When a cycle on unchanged inputs could decide differently: the engine's next timer.

decide() reads the clock it is given only through deadlines: a min_on or min_off that
ends, an on_delay or off_delay that runs out, switches that settle, a relay command that
times out, a daily runtime that becomes due, misses its deadline or reaches its maximum,
and midnight. Between two deadlines a cycle on the same snapshot decides what the one
before it did, so the simulator may skip it and the live loop may sleep until the next.

A cycle is *idle* when it changed nothing but the clock in the engine's state (see
`idle`); only after an idle cycle is the next one on the same snapshot known to repeat
it. A cycle that did change the state (a delay that began, a consumer that left
control) may lead to a different decision on the same inputs, so it is never skipped.

Every comparison with the time in decide() needs its deadline here:
tests/test_skipping.py runs scenarios with and without skipping to catch one missing.
Whoever skips cycles does so only until `EARLY` before the deadline: a cycle too many
is harmless, a skipped cycle that would have changed the plan is a bug.
"""

from __future__ import annotations

from datetime import datetime
from operator import itemgetter

from hems_rules.core.daily import DAY_MINUTES, Day
from hems_rules.core.model import ConsumerState, EngineState
from hems_rules.core.observe import COMMAND_TIMEOUT, CONFIRM_WITHIN
from hems_rules.core.surplus import EPSILON
from hems_rules.ruleset.rules import Consumer, RuleSet

# Cycles are skipped only until this long before a deadline, against rounding in
# decide()'s arithmetic.
EARLY = 1e-3


def next_timer(rules: RuleSet, state: EngineState, now: datetime) -> float:
    """The next deadline (a timestamp) after `now`: from then on, a cycle on the same
    snapshot may decide differently from one at `now` that left `state`. It is never
    later than the next local midnight."""
    day = Day(now)
    deadlines = [day.at(DAY_MINUTES)]  # the day's starts and runtime begin anew
    if state.settling is not None:
        deadlines.append(state.settling.since + rules.site.settle)
    remembered = state.consumers
    for consumer in rules.consumers:
        consumer_state = remembered.get(consumer.id)
        if consumer_state is not None:
            _deadlines(consumer, consumer_state, rules, day, deadlines)
    t = now.timestamp()
    return min([d for d in deadlines if d > t])


def _deadlines(
    consumer: Consumer, state: ConsumerState, rules: RuleSet, day: Day, deadlines: list[float]
) -> None:
    """Add the consumer's deadlines to `deadlines` (each cycle that may be skipped asks:
    one list for all, not one per consumer)."""
    switched_at = state.switched_at
    if switched_at is not None:
        deadlines += (switched_at + consumer.min_on, switched_at + consumer.min_off)
        if state.awaiting:
            # An unconfirmed switch counts for everything once CONFIRM_WITHIN has passed.
            deadlines += (switched_at + CONFIRM_WITHIN, switched_at + COMMAND_TIMEOUT)
    pending_since = state.pending_since
    if pending_since is not None:
        deadlines += (pending_since + consumer.on_delay, pending_since + consumer.off_delay)
    runtime = consumer.runtime
    if runtime is None:
        return
    # While the relay reports on, its runtime grows with the clock from `counted_at`.
    counting = state.counted_at
    ran = state.runtime
    if runtime.max is not None and counting is not None:
        deadlines.append(counting + runtime.max - EPSILON - ran)
    if runtime.min is not None:
        deadline = day.at(runtime.by)
        deadlines.append(deadline)
        if counting is not None:
            deadlines.append(counting + runtime.min - EPSILON - ran)  # reached
        else:
            # Due from when the time left is no more than what it still needs.
            deadlines.append(deadline - (runtime.min - ran) - rules.site.loop_interval)


# A consumer's state but what the clock alone moves while its relay is on: the runtime
# counted, and when it was counted last.
_COURSE = itemgetter(
    *(i for i, name in enumerate(ConsumerState._fields) if name not in ("runtime", "counted_at"))
)


def idle(before: EngineState, after: EngineState) -> bool:
    """Whether a cycle from `before` to `after` changed nothing but the runtime counted."""
    if before.settling != after.settling:
        return False
    old, new = before.consumers, after.consumers
    if old == new:  # each state the same object, mostly: compared by identity, in C
        return True
    if old.keys() != new.keys():
        return False
    for consumer_id, state in new.items():
        was = old[consumer_id]
        if state is not was and (
            (state.counted_at is None) != (was.counted_at is None) or _COURSE(state) != _COURSE(was)
        ):
            return False
    return True
