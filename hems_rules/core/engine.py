"""The decision core: which consumers run this cycle, and why.

`decide()` is a pure function of the rules, a snapshot of the world, what the engine
remembers, and the time it is given. It never awaits, reads no clock and does no I/O,
so a live cycle, a simulated one and a property test are the same computation.

A cycle runs in steps, one module each: observe (the relays' reports and control),
surplus (the reservation, the surplus per phase, the DC pool), settling (whether the
meters show the last switches yet) and allocate (the priority walk).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from hems_rules.core.allocate import Allocation
from hems_rules.core.daily import Day
from hems_rules.core.model import (
    UNAVAILABLE,
    ConsumerState,
    Decision,
    EngineState,
    Plan,
    Snapshot,
    new_tuple,
)
from hems_rules.core.observe import CONFIRM_WITHIN, Entry, counted, draw, observe, uncontrolled
from hems_rules.core.reasons import HELD_OFF, Code, Reason
from hems_rules.core.settling import sent, unsettled
from hems_rules.core.surplus import CONSUMPTION, battery_reservation, supply
from hems_rules.ruleset.rules import PHASES, Consumer, Phase, RuleSet

_FRESH = ConsumerState()
# A site's phases with their consumption paths, by their number (read in every cycle).
_CONSUMPTION = {n: tuple((p, CONSUMPTION[p]) for p in PHASES[:n]) for n in (1, 2, 3)}
# What the engine's own loads draw per phase before any is counted (copied: fromkeys()
# costs several times a copy, in every cycle).
_NO_LOAD: dict[Phase, float] = dict.fromkeys(PHASES, 0.0)


def _release(
    cycle: Allocation, consumer: Consumer, state: ConsumerState, why: Reason, note: Reason | None
) -> None:
    """A consumer outside control: switched off once when it leaves, then left alone."""
    if state.controlled and state.on and not consumer.release_keeps:
        state = state._replace(on=False, switched_at=cycle.t, awaiting=True)
        cycle.switched.append(consumer.id)
        reason = Reason(Code.RELEASED, (True, why))
        decision = Decision(consumer.id, "off", False, reason, False, runtime=state.runtime)
    else:
        notes = (note,) if note else ()
        if state.controlled:
            reason = Reason(Code.RELEASED, (False, why), notes)
        else:
            reason = Reason(Code.NOT_CONTROLLED, (why,), notes)
        decision = Decision(
            consumer.id, "on" if state.on else "off", False, reason, runtime=state.runtime
        )
    if state.controlled or state.pending_since is not None:  # else it is as it was: kept
        state = state._replace(controlled=False, pending_since=None)
    cycle.states[consumer.id] = state
    cycle.decisions[consumer.id] = decision


def _total(consumption: Mapping[Phase, float | None]) -> float | None:
    values = tuple(consumption.values())
    return None if None in values else sum(values)  # type: ignore[arg-type]


def decide(
    rules: RuleSet, snapshot: Snapshot, state: EngineState, now: datetime
) -> tuple[Plan, EngineState]:
    """One cycle: which controlled consumers run, every decision with its reason."""
    t = now.timestamp()
    day = Day(now)
    reservation = battery_reservation(rules, snapshot)
    cycle = Allocation(rules, snapshot, day, t, reservation)
    system = snapshot.system
    consumption: dict[Phase, float | None] = {}
    for phase, path in _CONSUMPTION[rules.site.phases]:
        # `in` and [] rather than get(): a mappingproxy's get() costs several times more.
        consumption[phase] = system[path] if path in system else None  # noqa: SIM401
    surplus_known = snapshot.system_present and None not in consumption.values()

    # Observe: the relays' reports, and who is under control.
    own_load = _NO_LOAD.copy()
    remembered = state.consumers
    devices = snapshot.devices
    slots: list[Entry | None] = [None] * len(rules.consumers)  # in the order of the walk
    states, decisions = cycle.states, cycle.decisions
    today = day.date
    released = uncontrolled(rules, snapshot)
    for consumer, place in rules.placed:
        consumer_id = consumer.id
        # Both are mostly mappingproxies, whose get() costs several times their [] (it
        # calls the dict's get() by name): a miss is the rare case.
        try:
            prev = remembered[consumer_id]
        except KeyError:
            prev = _FRESH
        try:
            fact = devices[consumer_id]
        except KeyError:
            fact = UNAVAILABLE
        if not fact.available:
            gone = counted(prev, False, t, day)._replace(available=False, pending_since=None)
            states[consumer_id] = gone
            unavailable = Reason(Code.UNAVAILABLE, (fact.cause,))
            decision = Decision(
                consumer_id, "unavailable", prev.controlled, unavailable, runtime=gone.runtime
            )
            decisions[consumer_id] = decision
            continue
        # All of it at once: a NamedTuple's fields cost more to read one by one (the
        # order is pinned by tests/test_consumer_state.py).
        on, at, awaiting, in_control, available, pending, _, last_day, runtime, counted_at = prev
        if (
            not (on or fact.on or awaiting or counted_at is not None)
            and available
            and last_day == today
        ):
            # The most common consumer of all, at scale: under control, held off by
            # min_off, with no delay pending. Its state stays as it is, and its decision
            # needs none of Allocation.record's cases (a command, a delay, a daily
            # runtime, a note), so it is made here.
            min_off = consumer.min_off
            if (
                at is not None
                and min_off > 0
                and at + min_off > t
                and in_control
                and pending is None
                and consumer.runtime is None
                and surplus_known
                and consumer_id not in released
            ):
                why = HELD_OFF(at + min_off - t)
                states[consumer_id] = prev
                off = (consumer_id, "off", True, why, None, 0.0, runtime)
                decisions[consumer_id] = new_tuple(Decision, off)
                continue
            current, note = prev, None  # off as told, nothing to count: as observe() says
        elif (
            on
            and fact.on
            and available
            and not awaiting
            and counted_at is not None
            and last_day == today
        ):
            # The usual for a running relay: on as told, its runtime counted on (as
            # observe() would count it).
            runtime += t - day.counted_from(counted_at)
            current, note = prev.counting(runtime, t), None
        else:
            current, note = observe(prev, fact, t, day)
            on, at, awaiting, in_control = current[:4]  # what the code below reads of it
        why_not = released.get(consumer_id)
        power, shares = consumer.power, consumer.nominal  # what draw() says of a relay off
        # Consumption contains the engine's own loads, and those that are released now.
        if fact.on and (why_not is None or (in_control and not consumer.release_keeps)):
            power = draw(consumer, fact)
            # Mostly its nominal power (not measured yet, or a resistive load): split once.
            shares = consumer.nominal if power == consumer.power else consumer.shares(power)
            ours = True
            if awaiting and not on:
                # Switched off, and the relay has not confirmed it (§5.8): it still draws
                # as far as any switch-on is concerned. Once a working relay would have
                # confirmed, it draws for everything, as the meters see it: not our load.
                ours = t - (at or t) < CONFIRM_WITHIN
                if ours:
                    cycle.reserve(shares)
            if ours:
                for phase, share in shares:
                    own_load[phase] += share
        if why_not is not None:
            _release(cycle, consumer, current, why_not, note)
            continue
        if not in_control:
            current = current._replace(controlled=True)
        if surplus_known and not on and consumer.runtime is None:
            # Held off by min_off it books nothing: its place in the walk is moot.
            min_off = consumer.min_off
            if at is not None and min_off > 0 and at + min_off > t:
                entry = (consumer, current, note, power, shares)
                cycle.record(entry, False, HELD_OFF(at + min_off - t))
                continue
        slots[place] = (consumer, current, note, power, shares)
    ranked = [*filter(None, slots)]  # the controlled, without the empty slots
    controlled = cycle.classify(ranked) if rules.timed else ranked

    # Surplus, and whether the meters show the last switches yet.
    unshown = None
    if state.settling is not None:
        total = _total(consumption) if snapshot.system_present else None
        unshown = unsettled(state.settling, rules, snapshot, total, t, near=cycle.near)
        cycle.waiting = state.settling if unshown is not None else None
    if not surplus_known:
        missing = [p for p, v in consumption.items() if v is None]
        unknown = (
            f"consumption on {', '.join(missing)} is unknown"
            if snapshot.system_present
            else "com.victronenergy.system is gone"
        )
        cycle.hold_or_stop_unknown(controlled, unknown)
        return _finish(cycle, consumption, None, None)
    # While switches are unsettled, the consumption as the meters will show it once they
    # have caught up with what the relays report: the surplus and the base load are then
    # what they will be, so a shed load that still shows is not shed twice, and delays
    # run on the true surplus.
    # (A dict even when empty: supply() reads it per phase, and a mappingproxy's get()
    # costs several times a dict's.)
    supplied = supply(rules, snapshot, consumption, unshown or {}, own_load)
    surplus, dc_pool, cycle.pool, cycle.bounds, cycle.projected = supplied

    # Allocate: the priority walk.
    cycle.allocate(controlled)
    return _finish(cycle, consumption, surplus, dc_pool)


def _finish(
    cycle: Allocation,
    consumption: Mapping[Phase, float | None],
    surplus: dict[Phase, float] | None,
    dc_pool: float | None,
) -> tuple[Plan, EngineState]:
    rules = cycle.rules
    settling = cycle.waiting
    decisions = cycle.decisions
    if cycle.switched:
        total = _total(consumption) if cycle.snapshot.system_present else None
        ids = sorted(set(cycle.switched), key=rules.place.__getitem__)  # a re-walk repeats
        served = (decisions[i] for i in ids)
        settling = sent(served, rules, cycle.snapshot, waiting=settling, total=total, t=cycle.t)
    reservation = cycle.reservation
    fields = (  # Plan's, in order (new_tuple: one Plan every cycle)
        tuple(map(decisions.__getitem__, rules.ids)),  # decisions
        cycle.snapshot.settings.mode == 1,  # active
        reservation.watts,
        reservation.state,
        reservation.error,
        MappingProxyType(surplus) if surplus is not None else None,
        dc_pool,
        cycle.pool.total() if surplus is not None else None,  # left
        cycle.slack,  # slack (core/slack.py)
    )
    plan = new_tuple(Plan, fields)
    return plan, new_tuple(EngineState, (MappingProxyType(cycle.states), settling))
