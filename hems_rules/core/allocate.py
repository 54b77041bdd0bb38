"""Step 3 of a cycle: the priority walk that hands out the surplus and the inverter's power.

DESIGN §5.2-§5.5, §5.10 and §5.11. A consumer that reached its daily runtime.max is off
and books nothing. One that is due (runtime.min, finished by `by`) comes first and runs
whatever the surplus. Then, strictly by priority, a running consumer keeps what it
draws while it clears its bar and fits the inverter limit, and an off one starts when
its nominal power fits beside everything the plan keeps: the loads above it, and those
below it that a min_on holds or whose switch-off the relay has not confirmed. While
switches are settling, nothing is switched because of surplus or deficit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from hems_rules.core.daily import Day
from hems_rules.core.model import ConsumerState, Decision, Settling, Snapshot, new_tuple
from hems_rules.core.observe import Entry
from hems_rules.core.reasons import HELD_OFF, HELD_ON, Code, Reason, seconds
from hems_rules.core.surplus import EPSILON, Pool, Reservation
from hems_rules.ruleset.rules import Consumer, Phase, RuleSet, Shares

_NOTHING = Pool({}, 0.0, 1.0)  # the pool until the surplus is known (a Pool never changes)
# W by which a consumer must miss its bar for start_or_wait to say so without booking it:
# far above the rounding of a booking's arithmetic, so a tie is judged by the booking.
_CLEARLY = 1e-3
_NONE_DUE: Mapping[str, Reason] = MappingProxyType({})


class Allocation:
    """The working state of one cycle: outcomes so far and what is left to give."""

    def __init__(
        self,
        rules: RuleSet,
        snapshot: Snapshot,
        day: Day,
        t: float,
        reservation: Reservation,
    ) -> None:
        self.rules = rules
        self.snapshot = snapshot
        self.day = day
        self.t = t
        self.reservation = reservation
        self.states: dict[str, ConsumerState] = {}
        self.decisions: dict[str, Decision] = {}
        self.pool = _NOTHING
        self.projected: dict[Phase, float] = {}  # consumption of what this plan keeps
        self.held_later: dict[Phase, float] = {}  # loads held by min_on further down the walk
        # Switch-offs the relays have not confirmed: what they still draw, for switch-ons.
        self.unconfirmed: dict[Phase, float] = {}
        self._reserved_version = 0  # counts changes of held_later and unconfirmed
        self._starting: tuple[Pool, int, Pool] | None = None  # see starting_pool()
        self.bounds: dict[Phase, float] = {}  # Supply.bounds: the inverter limits
        self.waiting: Settling | None = None  # switches the meters do not show yet
        self._waiting: dict[bool, Reason] | None = None  # see waiting_reason()
        # Due consumers, with how much they still need (classify() finds them).
        self.due: Mapping[str, Reason] = _NONE_DUE
        self.switched: list[str] = []  # the consumers this cycle switches (some twice)
        # How far the readings may move before a comparison of this cycle comes out
        # otherwise (core/slack.py): the least of what each comparison left, over its gain.
        self.slack = math.inf

    def near(self, difference: float, gain: float = 1.0) -> None:
        """A comparison whose figures were `difference` W from deciding otherwise."""
        self.slack = min(self.slack, abs(difference) / gain)

    def held(self, state: ConsumerState, minimum: float) -> float:
        """Seconds a min_on / min_off timer still holds, 0 when it does not."""
        at = state.switched_at
        if at is None or minimum <= 0:
            return 0.0
        left = at + minimum - self.t
        return left if left > 0.0 else 0.0

    def bar(self, consumer: Consumer) -> float:
        """The W that must be left after a consumer, margins aside: R, or 0 for a primary."""
        return 0.0 if consumer.primary else (self.reservation.watts or 0.0)

    def gate(self, consumer: Consumer, booked: Pool, margin: float) -> bool:
        """Whether what is left after this consumer clears its bar (margin signed by caller)."""
        left = booked.total()
        if consumer.primary:
            bar = margin - EPSILON
        else:
            reserved = self.reservation.watts
            if reserved is None:
                return False
            bar = reserved + margin - EPSILON
        # near(), written out here, in over_limit() and in misfits(): their comparisons run
        # for most consumers, or every phase, in every cycle.
        slack = abs(left - bar) / booked.gain
        self.slack = slack if slack < self.slack else self.slack
        return left >= bar

    def over_limit(self, shares: Shares, *, starting: bool) -> Phase | None:
        """The first phase whose continuous inverter power this load would exceed, if any.

        A running load must fit after the higher-priority loads this plan keeps; a load
        switching on must also leave room for the loads held by min_on further down.
        """
        bounds = self.bounds
        if not bounds:
            return None
        projected = self.projected
        for phase, share in shares:
            bound = bounds.get(phase)
            if bound is None:
                continue
            load = projected.get(phase, 0.0) + share
            if starting:
                load += self.held_later.get(phase, 0.0) + self.unconfirmed.get(phase, 0.0)
            slack = abs(load - bound)  # near(), written out (see gate())
            self.slack = slack if slack < self.slack else self.slack
            if load > bound:
                return phase
        return None

    def project(self, shares: Shares) -> None:
        projected = self.projected
        for phase, share in shares:
            projected[phase] = projected.get(phase, 0.0) + share

    def reserve(self, shares: Shares) -> None:
        """A load switched off whose relay has not confirmed it: no switch-on may use its
        power until it does (DESIGN §5.8)."""
        for phase, share in shares:
            self.unconfirmed[phase] = self.unconfirmed.get(phase, 0.0) + share
        self._reserved_version += 1

    def starting_pool(self) -> Pool:
        """What a switch-on may take: the pool less what the loads further down that a
        min_on holds, and those whose switch-off is unconfirmed, still draw.

        Kept while neither the pool nor those loads change: the consumers that find no
        room one after the other all ask for the same.
        """
        pool = self.pool
        cached = self._starting
        if cached is not None and cached[0] is pool and cached[1] == self._reserved_version:
            return cached[2]
        reserved = [
            (phase, watts)
            for part in (self.held_later, self.unconfirmed)
            for phase, watts in part.items()
            if watts > EPSILON
        ]
        starting = pool
        if reserved:
            starting = pool.book(reserved, forced=True)
        self._starting = (pool, self._reserved_version, starting)
        return starting

    def waiting_reason(self, on: bool) -> Reason:
        """Not switched now: the meters do not show the last switches yet."""
        if self._waiting is None:
            self._waiting = {}
        reason = self._waiting.get(on)
        if reason is None:
            assert self.waiting is not None
            # The user's CustomName from the switch pane when there is one, else the id.
            ids = dict.fromkeys(s.consumer for s in self.waiting.switched)
            names = tuple(self.snapshot.name(i, i) for i in ids)
            left = self.waiting.since + self.rules.site.settle - self.t
            reason = self._waiting[on] = Reason(Code.SETTLING, (on, names, seconds(left)))
        return reason

    def record(
        self,
        entry: Entry,
        on: bool,
        why: Reason,
        *,
        power: float = 0.0,
        pending_since: float | None = None,
    ) -> None:
        """Record a controlled consumer's outcome, switching it when `on` differs."""
        consumer, state, note, _, _ = entry
        consumer_id = consumer.id
        command = None
        if on != state.on:
            command = on
            self.switched.append(consumer_id)
            state = state.switching(on, self.t, pending_since)
        elif state.pending_since != pending_since:
            state = state._replace(pending_since=pending_since)
        if consumer.runtime is not None and consumer.runtime.min is not None:
            why = self.missed(consumer, state, why)
        if note is not None:
            why = why._replace(notes=(*why.notes, note))
        self.states[consumer_id] = state
        self.decisions[consumer_id] = new_tuple(
            Decision,
            (
                consumer_id,
                "on" if on else "off",
                True,
                why,
                command,
                power if on else 0.0,
                state.runtime,
            ),
        )

    def missed(self, consumer: Consumer, state: ConsumerState, why: Reason) -> Reason:
        """After its deadline, a consumer short of runtime.min says by how much."""
        runtime = consumer.runtime
        assert runtime is not None and runtime.min is not None
        short = runtime.min - state.runtime
        if short < 1.0 or self.t < self.day.at(runtime.by):
            return why
        missed = Reason(Code.MISSED, (round(short), runtime.min, runtime.by_text))
        return why._replace(notes=(*why.notes, missed))

    def classify(self, controlled: list[Entry]) -> list[Entry]:
        """Daily runtime first (§5.11): the due in front, those at their maximum off.

        A consumer is due while the time left until its deadline is no more than the
        runtime it still needs, one loop_interval early: cycles come that often, and a
        relay reports a moment after it switched. One that reached runtime.max is off
        until midnight.
        """
        due: list[Entry] = []
        others: list[Entry] = []
        early = self.rules.site.loop_interval
        reasons: dict[str, Reason] = {}
        self.due = reasons
        for entry in controlled:
            consumer, state, _, _, _ = entry
            runtime = consumer.runtime
            if runtime is None:
                others.append(entry)
                continue
            ran = state.runtime
            if runtime.max is not None and ran >= runtime.max - EPSILON:
                self.record(entry, False, Reason(Code.RUNTIME_MAX, (runtime.max,)))
                continue
            if runtime.min is not None:
                need = runtime.min - ran
                deadline = self.day.at(runtime.by)
                if need > EPSILON and self.t < deadline and deadline - self.t <= need + early:
                    numbers = (round(need), runtime.min, runtime.by_text)
                    reasons[consumer.id] = Reason(Code.DUE_NOTE, numbers)
                    due.append(entry)
                    continue
            others.append(entry)
        return due + others

    def run_due(self, entry: Entry) -> None:
        """A due consumer runs; only the inverter limit and min_off stop it."""
        consumer, state, _, power, shares = entry
        note = self.due[consumer.id]
        if not state.on:
            power, shares = consumer.power, consumer.nominal
        over = self.over_limit(shares, starting=not state.on)
        min_off = 0.0 if state.on else self.held(state, consumer.min_off)
        if over is not None and state.on:
            self.record(entry, False, Reason(Code.SHED, (over,), (note,)))
        elif over is not None:
            why = Reason(Code.INVERTER_LIMIT, (round(power), over), (note,))
            self.record(entry, False, why)
        elif min_off > 0:
            self.record(entry, False, Reason(Code.MIN_OFF, (seconds(min_off),), (note,)))
        else:
            self.pool = self.pool.book(shares, forced=True)
            self.project(shares)
            self.record(entry, True, note._replace(code=Code.DUE), power=power)

    def allocate(self, ranked: list[Entry]) -> None:
        """Hand out the surplus and the inverter's power, strictly by priority.

        Consumers held by min_on keep their priority place: a load above one is kept
        as if it were not there (it cannot take their place by starting, though), and
        one that does not fit the inverter limit after the higher-priority loads this
        plan keeps is shed and books nothing. Which ones is first judged by the
        inverter limit alone (every running load above them kept); the walk then
        confirms it, and runs once more if a load above went off after all, so nothing
        is shed that need not be.
        """
        pool, projected = self.pool, dict(self.projected)
        t, due = self.t, self.due
        held: dict[str, float] = {}  # seconds left of the min_on that holds them
        holding: list[tuple[str, Shares]] = []  # what each of those draws, by rank
        together = dict(projected)  # with every running load (see misfits())
        for consumer, state, _, _, shares in ranked:
            if state.on:
                for phase, share in shares:
                    together[phase] = together.get(phase, 0.0) + share
                at, min_on = state.switched_at, consumer.min_on
                if at is not None and min_on > 0 and at + min_on > t and consumer.id not in due:
                    held[consumer.id] = at + min_on - t
                    holding.append((consumer.id, shares))
        shed = self.misfits(ranked, held, together) if held and self.bounds else {}
        restored = False
        while True:
            held_later: dict[Phase, float] = {}
            for consumer_id, shares in holding:
                if consumer_id not in shed:
                    for phase, share in shares:
                        held_later[phase] = held_later.get(phase, 0.0) + share
            self.held_later = held_later
            self._reserved_version += 1
            more, needless = self.walk(ranked, held, shed)
            if not more and (restored or not needless):
                return
            if not restored:
                restored = True
                for consumer_id in needless:
                    del shed[consumer_id]
            shed.update(more)
            self.pool, self.projected = pool, dict(projected)

    def misfits(
        self, ranked: list[Entry], held: dict[str, float], together: dict[Phase, float]
    ) -> dict[str, Phase]:
        """The held loads that do not fit after every running load above them.

        `together` is the consumption with every running load.
        """
        # Mostly, all the running loads together fit: then so does each with those above.
        for phase, bound in self.bounds.items():
            load = together.get(phase, 0.0)
            slack = abs(load - bound)  # near(), written out (see gate())
            self.slack = slack if slack < self.slack else self.slack
            if load > bound:
                break
        else:
            return {}
        projected = dict(self.projected)
        misfits: dict[str, Phase] = {}
        for consumer, state, _, _, shares in ranked:
            if not state.on:
                continue
            over = self.over_limit(shares, starting=False)
            if over is None:
                self.project(shares)
            elif consumer.id in held:
                misfits[consumer.id] = over
        self.projected = projected
        return misfits

    def walk(
        self, ranked: list[Entry], held: dict[str, float], shed: dict[str, Phase]
    ) -> tuple[dict[str, Phase], list[str]]:
        """One priority walk, with `held_later` holding every load a min_on holds.

        Returns the held loads found not to fit (to be shed), and those shed that would
        have fitted after all.
        """
        not_fitting: dict[str, Phase] = {}
        needless: list[str] = []
        due = self.due
        for entry in ranked:
            consumer, state, _, power, shares = entry
            consumer_id = consumer.id
            if due and consumer_id in due:
                self.run_due(entry)
            elif shed and consumer_id in shed:
                self.record(entry, False, Reason(Code.SHED, (shed[consumer_id],)))
                if self.over_limit(shares, starting=False) is None:
                    needless.append(consumer_id)
            elif consumer_id in held:
                held_later = self.held_later
                for phase, share in shares:  # it is no longer further down
                    held_later[phase] = held_later.get(phase, 0.0) - share
                self._reserved_version += 1
                over = self.over_limit(shares, starting=False)
                if over is not None:
                    not_fitting[consumer_id] = over
                    continue
                self.pool = self.pool.book(shares, forced=True)
                self.project(shares)
                self.record(entry, True, HELD_ON(held[consumer_id]), power=power)
            elif state.on:
                self.keep_or_stop(entry)
            else:
                self.start_or_wait(entry)
        return not_fitting, needless

    def keep_or_stop(self, entry: Entry) -> None:
        consumer, state, _, power, shares = entry
        over = self.over_limit(shares, starting=False)
        if over is not None:
            self.record(entry, False, Reason(Code.SHED, (over,)))
            return
        if self.reservation.watts is None and not consumer.primary:
            # No deficit to confirm: the reservation is unprotected until it stops.
            self.record(entry, False, self.unknown_reservation())
            return
        booked = self.pool.book(shares, forced=True)
        left = booked.total()
        if self.gate(consumer, booked, -consumer.off_margin):
            self.pool = booked
            self.project(shares)
            kept = Reason(Code.ON, (power, left, self.bar(consumer)))
            self.record(entry, True, kept, power=power)
            return
        since = state.pending_since if state.pending_since is not None else self.t
        if self.t - since < consumer.off_delay or self.waiting is not None:
            self.pool = booked
            self.project(shares)
            if self.waiting is not None:
                why = self.waiting_reason(True)
            else:
                delay = (seconds(self.t - since), seconds(consumer.off_delay))
                why = Reason(Code.OFF_DELAY, delay)
            self.record(entry, True, why, power=power, pending_since=since)
            return
        short = (True, power, 0.0, left, self.bar(consumer))
        self.record(entry, False, Reason(Code.NO_SURPLUS, short))

    def start_or_wait(self, entry: Entry) -> None:
        consumer, state, _, _, _ = entry
        cap = consumer.max_starts_per_day
        # decide() recorded those without a daily runtime that min_off holds.
        min_off = 0.0 if consumer.runtime is None else self.held(state, consumer.min_off)
        if min_off > 0:
            self.record(entry, False, HELD_OFF(min_off))
            return
        if cap is not None and state.starts >= cap:
            self.record(entry, False, Reason(Code.STARTS_CAP, (cap,)))
            return
        if self.reservation.watts is None and not consumer.primary:
            self.record(entry, False, self.unknown_reservation())
            return
        shares = consumer.nominal
        over = self.over_limit(shares, starting=True)
        if over is not None:
            self.record(entry, False, Reason(Code.INVERTER_LIMIT, (round(consumer.power), over)))
            return
        pool = self.starting_pool()
        power, margin, bar = consumer.power, consumer.on_margin, self.bar(consumer)
        # A booking takes at least the consumer's power from the pool (a watt fed from
        # another phase costs more): when even that leaves it clearly short of its bar,
        # it cannot start, and no booking need be made. Most consumers that are off end
        # here in most cycles; the slack is then a bound below the booking's own.
        left = pool.total()
        short = left - power - bar - margin + EPSILON
        booked: Pool | None = None
        if short < -_CLEARLY:
            self.near(short, pool.gain / pool.factor)
        else:
            booked = pool.book(shares, forced=False)
            if booked is None:
                # Fed anyway, it could not clear its bar (the pool would owe): the slack
                # says how far the surplus is from letting it start.
                self.gate(consumer, pool.book(shares, forced=True), margin)
            elif not self.gate(consumer, booked, margin):
                booked = None
        if booked is None:
            numbers = (False, power, margin, left, bar)
            self.record(entry, False, Reason(Code.NO_SURPLUS, numbers))
            return
        since = state.pending_since if state.pending_since is not None else self.t
        if self.t - since < consumer.on_delay:
            delay = (seconds(self.t - since), seconds(consumer.on_delay))
            self.record(entry, False, Reason(Code.ON_DELAY, delay), pending_since=since)
            return
        if self.waiting is not None:
            self.record(entry, False, self.waiting_reason(False), pending_since=since)
            return
        if pool is not self.pool:  # book it in the plan's own pool
            booked = self.pool.book(shares, forced=True)
        self.pool = booked
        self.project(shares)
        started = (power, booked.total(), bar)
        self.record(entry, True, Reason(Code.ON, started), power=power)

    def unknown_reservation(self) -> Reason:
        return Reason(Code.RESERVATION_UNKNOWN, (self.reservation.error,))

    def hold_or_stop_unknown(self, controlled: list[Entry], why: str) -> None:
        """Surplus unknown: nothing is decided from a value that is not there.

        A due consumer that runs keeps running; one that is off waits, because the
        inverter limit cannot be checked without the consumption.
        """
        for entry in controlled:
            consumer, state, _, power, _ = entry
            due = self.due.get(consumer.id)
            notes = () if due is None else (due,)
            held = state.on and self.held(state, consumer.min_on) > 0
            if consumer.stale_holds or held or (due is not None and state.on):
                reason = Reason(Code.SURPLUS_UNKNOWN, (state.on, True, why), notes)
                self.record(entry, state.on, reason, power=power)
            else:
                reason = Reason(Code.SURPLUS_UNKNOWN, (False, False, why), notes)
                self.record(entry, False, reason)
