"""Step 1 of a cycle: what the relays report, and which consumers are under control.

Facts over intentions (DESIGN §5.8): a relay is in the state it reports (a Shelly, or a
`dbus:` output); a command it has not confirmed within COMMAND_TIMEOUT is given up.
Control (§5.6) is Mode 1, Auto 1 and an `auto_when` that holds.
"""

from __future__ import annotations

from hems_rules.core.daily import Day
from hems_rules.core.model import ConsumerState, DeviceFact, Snapshot
from hems_rules.core.reasons import Code, Reason
from hems_rules.core.surplus import evaluate
from hems_rules.ruleset.rules import Consumer, RuleSet, Shares

# A relay that has not confirmed a command after this long is believed as reported.
COMMAND_TIMEOUT = 15.0
# A working relay confirms a command well within this. A switch-off not confirmed by then
# counts as not done for the surplus and the inverter limit (until COMMAND_TIMEOUT).
CONFIRM_WITHIN = 2.0

MODE_OFF = Reason(Code.MODE_OFF)
AUTO_OFF = Reason(Code.AUTO_OFF)
_DID_NOT_SWITCH = Reason(Code.RELAY, ("did not switch",))
_SWITCHED_OUTSIDE = Reason(Code.RELAY, ("was switched outside hems-rules",))
_REJOINED = {
    True: Reason(Code.RELAY, ("rejoined on",)),
    False: Reason(Code.RELAY, ("rejoined off",)),
}


# A controlled consumer as this cycle sees it: the consumer, its state, what the relay's
# report revealed this cycle (a note), what it draws (see draw()) and how that splits over
# the phases, computed once and read by every step of the walk. A plain tuple, unpacked
# where it is read: a NamedTuple costs several times more to make and to read its fields,
# and a cycle makes one for most consumers.
Entry = tuple[Consumer, ConsumerState, Reason | None, float, Shares]


def draw(consumer: Consumer, fact: DeviceFact) -> float:
    """What a running consumer draws: measured when reported, else nominal."""
    return fact.power if fact.on and fact.power is not None else consumer.power


def counted(state: ConsumerState, on: bool, t: float, day: Day) -> ConsumerState:
    """The day's runtime, counted from the relay's reports up to `t` (DESIGN §5.11).

    The relay is taken to have stayed as it last reported until now; a new local day
    starts at zero (and at midnight, for a relay on across it), with no starts yet.
    """
    if state.day != day.date:
        state = state._replace(starts=0, runtime=0.0, day=day.date)
    since = state.counted_at
    if since is None:
        return state.counting(state.runtime, t) if on else state
    runtime = state.runtime + t - day.counted_from(since)
    return state.counting(runtime, t if on else None)


def observe(
    prev: ConsumerState, fact: DeviceFact, t: float, day: Day
) -> tuple[ConsumerState, Reason | None]:
    """Fold the relay's report into the remembered state; facts win over intentions."""
    state = counted(prev, fact.on, t, day)
    if not prev.available:
        rejoined = state._replace(on=fact.on, switched_at=t, awaiting=False, available=True)
        return rejoined, _REJOINED[fact.on]
    if fact.on == state.on:
        return (state.confirmed() if state.awaiting else state), None
    if state.awaiting and state.switched_at is not None and t - state.switched_at < COMMAND_TIMEOUT:
        return state, None
    note = _DID_NOT_SWITCH if state.awaiting else _SWITCHED_OUTSIDE
    return state._replace(on=fact.on, switched_at=t, awaiting=False), note


def uncontrolled(rules: RuleSet, snapshot: Snapshot) -> dict[str, Reason]:
    """The consumers not under control, with why; the others are (§5.6).

    Each auto_when condition is judged once per cycle, whoever shares it, and Auto is
    read once: usually every consumer is under control and this is empty.
    """
    if snapshot.settings.mode != 1:
        return dict.fromkeys(rules.ids, MODE_OFF)
    released = {i: AUTO_OFF for i, auto in snapshot.auto.items() if auto != 1}
    for source, (condition, ids) in rules.conditions.items():
        result = evaluate(condition, snapshot.variables)
        if result.value is None:
            why = Reason(Code.AUTO_WHEN_ERROR, (source, result.error))
        elif not result.value:
            why = Reason(Code.AUTO_WHEN_FALSE, (source,))
        else:
            continue
        for consumer_id in ids:
            released.setdefault(consumer_id, why)  # Auto 0 says it first
    return released
