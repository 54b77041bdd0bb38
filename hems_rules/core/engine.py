"""The decision core: which consumers run this cycle, and why.

`decide()` is a pure function of the rules, a snapshot of the world, what the engine
remembers, and the time it is given. It never awaits, reads no clock and does no I/O,
so a live cycle, a simulated one and a property test are the same computation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import lru_cache
from types import MappingProxyType

from hems_rules.core.model import (
    UNAVAILABLE,
    ConsumerState,
    Decision,
    DeviceFact,
    EngineState,
    Plan,
    Settling,
    Snapshot,
    Switched,
)
from hems_rules.errors import ExpressionError
from hems_rules.expressions import RESERVATION_NAMES, Evaluation, Expression, compile_expression
from hems_rules.ruleset.rules import PHASES, Consumer, Phase, RuleSet, shares

# A relay that has not confirmed a command after this long is believed as reported.
COMMAND_TIMEOUT = 15.0
# A batch of switches whose net draw is below this settles at once (DESIGN §5.10).
SETTLE_BELOW = 50.0
_EPSILON = 1e-6


@lru_cache(maxsize=8)
def _override(text: str) -> Expression | str:
    """The compiled D-Bus equation, or why it cannot be used; compiled once per text."""
    try:
        return compile_expression(text, RESERVATION_NAMES)
    except ExpressionError as err:
        return f"BatteryReservationEquation {text[:60]!r}: {err}"


@dataclass(frozen=True)
class Reservation:
    watts: float | None  # None: unknown, secondaries fail closed
    state: str
    error: str | None = None


def battery_reservation(rules: RuleSet, snapshot: Snapshot) -> Reservation:
    """R in W: the equation of SOC, clamped to >= 0 and to what the battery can take."""
    text = snapshot.settings.battery_reservation_equation.strip()
    equation = _override(text) if text else rules.site.battery_reservation
    if isinstance(equation, str):
        return Reservation(None, "ERROR", equation)
    result = equation.evaluate({"SOC": snapshot.system.get("/Dc/Battery/Soc")})
    if result.value is None:
        return Reservation(None, "ERROR", f"{equation.source!r}: {result.error}")
    watts = max(0.0, result.value)
    current, voltage = snapshot.max_charge_current, snapshot.max_charge_voltage
    if current is not None and voltage is not None and current * voltage < watts:
        return Reservation(max(0.0, current * voltage), "BMS")
    return Reservation(watts, "OK")


@dataclass(frozen=True)
class _Pool:
    """What is left to hand out: per phase, and the DC pool (negative when it owes)."""

    phases: Mapping[Phase, float]
    dc: float
    netting: bool
    inverter_efficiency: float

    @property
    def total(self) -> float:
        return sum(self.phases.values()) + self.dc

    def book(self, shares: Iterable[tuple[Phase, float]], forced: bool) -> _Pool | None:
        """The pool after feeding `shares`, or None when they do not fit (unless forced).

        A phase is fed from itself, then from the DC pool, then from the other phases:
        at par when the system nets phases, else through the inverter at efficiency².
        A forced booking charges any shortfall to the DC pool.
        """
        phases = dict(self.phases)
        dc = self.dc
        factor = 1.0 if self.netting else self.inverter_efficiency
        for phase, watts in shares:
            need = watts
            own = min(max(phases.get(phase, 0.0), 0.0), need)
            phases[phase] = phases.get(phase, 0.0) - own
            need -= own
            from_dc = min(max(dc, 0.0), need)
            dc -= from_dc
            need -= from_dc
            for other, available in list(phases.items()):
                if need <= _EPSILON:
                    break
                if other == phase or available <= 0:
                    continue
                cost = min(available, need / factor)
                phases[other] -= cost
                need -= cost * factor
            if need > _EPSILON:
                if not forced:
                    return None
                dc -= need
        return _Pool(MappingProxyType(phases), dc, self.netting, self.inverter_efficiency)


def _w(value: float) -> str:
    return f"{round(value):d} W"


def _secs(value: float) -> str:
    return f"{max(1, round(value)):d} s"


@dataclass
class _Cycle:
    """The working state of one decide() call: outcomes so far and what is left to give."""

    rules: RuleSet
    snapshot: Snapshot
    t: float
    reservation: Reservation
    states: dict[str, ConsumerState] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    pool: _Pool | None = None
    projected: dict[Phase, float] = field(default_factory=dict)  # consumption this plan keeps
    reserved: dict[Phase, float] = field(default_factory=dict)  # held loads later in the walk
    limits: dict[Phase, float | None] = field(default_factory=dict)
    surplus: Mapping[Phase, float] | None = None
    dc_pool: float | None = None
    waiting: Settling | None = None  # switches not yet shown by the meters

    def draw(self, consumer: Consumer, fact: DeviceFact) -> float:
        """What a running consumer draws: measured when reported, else nominal."""
        return fact.power if fact.on and fact.power is not None else consumer.power

    def held(self, state: ConsumerState, minimum: float) -> float:
        """Seconds a min_on / min_off timer still holds, 0 when it does not."""
        if state.switched_at is None or minimum <= 0:
            return 0.0
        return max(0.0, state.switched_at + minimum - self.t)

    def left_text(self, left: float, consumer: Consumer) -> str:
        """What remains after a consumer, against the bar that applies to it."""
        reserved = 0.0 if consumer.primary else (self.reservation.watts or 0.0)
        balance = left - reserved
        word = "left" if balance >= 0 else "short"
        if reserved <= 0:
            return f"{_w(abs(balance))} {word}"
        above = "above" if balance >= 0 else "of"
        return f"{_w(abs(balance))} {word} {above} the {_w(reserved)} battery reservation"

    def gate(self, consumer: Consumer, left: float, margin: float) -> bool:
        """Whether what is left after this consumer clears its bar (margin signed by caller)."""
        if consumer.primary:
            return left >= margin - _EPSILON
        reserved = self.reservation.watts
        return reserved is not None and left >= reserved + margin - _EPSILON

    def over_limit(self, consumer: Consumer, watts: float, *, starting: bool) -> Phase | None:
        """The first phase whose continuous inverter power this load would exceed, if any.

        A running load must fit after the higher-priority loads this plan keeps; a load
        switching on must also leave room for the loads held by min_on further down.
        """
        for phase, share in consumer.shares(watts):
            limit = self.limits.get(phase)
            if limit is None:
                continue
            projected = self.projected.get(phase, 0.0) + share
            if starting:
                projected += self.reserved.get(phase, 0.0)
            if projected > limit + _EPSILON:
                return phase
        return None

    def project(self, consumer: Consumer, watts: float) -> None:
        for phase, share in consumer.shares(watts):
            self.projected[phase] = self.projected.get(phase, 0.0) + share

    def reserve(self, consumer: Consumer, watts: float) -> None:
        for phase, share in consumer.shares(watts):
            self.reserved[phase] = self.reserved.get(phase, 0.0) + share

    def waiting_text(self, on: bool) -> str:
        """Why a consumer is not switched now: the meters do not show the last switch yet."""
        assert self.waiting is not None
        names = _names(dict.fromkeys(s.consumer for s in self.waiting.switched))
        left = self.waiting.since + self.rules.site.settle - self.t
        word = "on" if on else "off"
        return f"{word}: waiting for the meter to show {names} ({_secs(left)} at most)"

    def record(
        self,
        consumer: Consumer,
        state: ConsumerState,
        on: bool,
        code: str,
        reason: str,
        *,
        power: float = 0.0,
        pending_since: float | None = None,
    ) -> None:
        """Record a controlled consumer's outcome, switching it when `on` differs."""
        command = None
        if on != state.on:
            command = on
            state = state._replace(
                on=on,
                switched_at=self.t,
                awaiting=True,
                starts=state.starts + int(on),
                pending_since=pending_since,
            )
        elif state.pending_since != pending_since:
            state = state._replace(pending_since=pending_since)
        self.states[consumer.id] = state
        self.decisions[consumer.id] = Decision(
            consumer.id, "on" if on else "off", True, code, reason, command, power if on else 0.0
        )

    def allocate(self, ranked: list[_Controlled]) -> None:
        """Hand out the surplus and the inverter's power, strictly by priority.

        Consumers held by min_on are booked first for the surplus but keep their place
        for the inverter limit: one that does not fit after the higher-priority loads
        this plan keeps is shed, and the walk starts again without it, so it books nothing.
        """
        pool, projected = self.pool, dict(self.projected)
        shed: dict[str, Phase] = {}
        while True:
            over = self.walk(ranked, shed)
            if over is None:
                return
            shed[over[0]] = over[1]
            self.pool, self.projected = pool, dict(projected)
            for entry in ranked:
                self.decisions.pop(entry.consumer.id, None)

    def walk(
        self, ranked: list[_Controlled], shed: Mapping[str, Phase]
    ) -> tuple[str, Phase] | None:
        """One priority walk; a held load that does not fit ends it, to be shed."""
        held = [
            entry
            for entry in ranked
            if entry.state.on
            and entry.consumer.id not in shed
            and self.held(entry.state, entry.consumer.min_on) > 0
        ]
        self.reserved = {}
        for entry in held:
            watts = self.draw(entry.consumer, entry.fact)
            self.reserve(entry.consumer, watts)
            self.pool = self.book(entry.consumer, watts, forced=True)
        held_ids = {entry.consumer.id for entry in held}
        for entry in ranked:
            consumer, state = entry.consumer, entry.state
            if consumer.id in shed:
                self.record(consumer, state, False, "shed", _shed_text(shed[consumer.id]))
            elif consumer.id in held_ids:
                watts = self.draw(consumer, entry.fact)
                self.reserve(consumer, -watts)
                over = self.over_limit(consumer, watts, starting=False)
                if over is not None:
                    return consumer.id, over
                self.project(consumer, watts)
                left = self.held(state, consumer.min_on)
                reason = f"on: held by min_on, {_secs(left)} left"
                self.record(consumer, state, True, "min_on", reason, power=watts)
            elif state.on:
                self.keep_or_stop(entry)
            else:
                self.start_or_wait(consumer, state)
        return None

    def book(self, consumer: Consumer, watts: float, forced: bool) -> _Pool | None:
        assert self.pool is not None
        return self.pool.book(consumer.shares(watts), forced)

    def keep_or_stop(self, entry: _Controlled) -> None:
        consumer, state = entry.consumer, entry.state
        watts = self.draw(consumer, entry.fact)
        over = self.over_limit(consumer, watts, starting=False)
        if over is not None:
            self.record(consumer, state, False, "shed", _shed_text(over))
            return
        if self.reservation.watts is None and not consumer.primary:
            # No deficit to confirm: the reservation is unprotected until it stops.
            self.record(consumer, state, False, "reservation_unknown", self.unknown_reservation())
            return
        booked = self.book(consumer, watts, forced=True)
        assert booked is not None
        if self.gate(consumer, booked.total, -consumer.off_margin):
            self.pool = booked
            self.project(consumer, watts)
            reason = f"on: {_w(watts)}, {self.left_text(booked.total, consumer)}"
            self.record(consumer, state, True, "on", reason, power=watts)
            return
        since = state.pending_since if state.pending_since is not None else self.t
        if self.t - since < consumer.off_delay or self.waiting is not None:
            self.pool = booked
            self.project(consumer, watts)
            if self.waiting is not None:
                code, reason = "settling", self.waiting_text(True)
            else:
                waited, delay = _secs(self.t - since), _secs(consumer.off_delay)
                code, reason = "off_delay", f"on: deficit for {waited} of the {delay} off_delay"
            self.record(consumer, state, True, code, reason, power=watts, pending_since=since)
            return
        reason = f"off: draws {_w(watts)}, {self.left_text(booked.total, consumer)}"
        self.record(consumer, state, False, "no_surplus", reason)

    def start_or_wait(self, consumer: Consumer, state: ConsumerState) -> None:
        min_off = self.held(state, consumer.min_off)
        cap = consumer.max_starts_per_day
        if min_off > 0:
            reason = f"off: held by min_off, {_secs(min_off)} left"
            self.record(consumer, state, False, "min_off", reason)
            return
        if cap is not None and state.starts >= cap:
            reason = f"off: {cap} starts today, the daily maximum"
            self.record(consumer, state, False, "starts_cap", reason)
            return
        if self.reservation.watts is None and not consumer.primary:
            self.record(consumer, state, False, "reservation_unknown", self.unknown_reservation())
            return
        over = self.over_limit(consumer, consumer.power, starting=True)
        if over is not None:
            watts = _w(consumer.power)
            reason = f"off: {watts} more would exceed the continuous inverter power on {over}"
            self.record(consumer, state, False, "inverter_limit", reason)
            return
        booked = self.book(consumer, consumer.power, forced=False)
        if booked is None or not self.gate(consumer, booked.total, consumer.on_margin):
            assert self.pool is not None
            margin = f" + {_w(consumer.on_margin)} margin" if consumer.on_margin else ""
            left = self.left_text(self.pool.total, consumer)
            reason = f"off: needs {_w(consumer.power)}{margin}, {left}"
            self.record(consumer, state, False, "no_surplus", reason)
            return
        since = state.pending_since if state.pending_since is not None else self.t
        if self.t - since < consumer.on_delay:
            waited, delay = _secs(self.t - since), _secs(consumer.on_delay)
            reason = f"off: surplus for {waited} of the {delay} on_delay"
            self.record(consumer, state, False, "on_delay", reason, pending_since=since)
            return
        if self.waiting is not None:
            reason = self.waiting_text(False)
            self.record(consumer, state, False, "settling", reason, pending_since=since)
            return
        self.pool = booked
        self.project(consumer, consumer.power)
        reason = f"on: {_w(consumer.power)}, {self.left_text(booked.total, consumer)}"
        self.record(consumer, state, True, "on", reason, power=consumer.power)

    def unknown_reservation(self) -> str:
        return f"off: battery reservation unknown, failing closed ({self.reservation.error})"

    def hold_or_stop_unknown(self, controlled: list[_Controlled], why: str) -> None:
        """Surplus unknown: nothing is decided from a value that is not there."""
        for entry in controlled:
            consumer, state = entry.consumer, entry.state
            if consumer.stale_holds or (state.on and self.held(state, consumer.min_on) > 0):
                text = "on" if state.on else "off"
                reason = f"{text}: held while the surplus is unknown ({why})"
                power = self.draw(consumer, entry.fact)
                self.record(consumer, state, state.on, "surplus_unknown", reason, power=power)
            else:
                reason = f"off: surplus unknown ({why})"
                self.record(consumer, state, False, "surplus_unknown", reason)

    def plan(self) -> Plan:
        pool = self.pool
        return Plan(
            decisions=tuple(self.decisions[c.id] for c in self.rules.consumers),
            active=self.snapshot.settings.mode == 1,
            reservation=self.reservation.watts,
            reservation_state=self.reservation.state,
            reservation_error=self.reservation.error,
            surplus=self.surplus,
            dc_pool=self.dc_pool,
            left=pool.total if pool is not None else None,
        )


@dataclass(frozen=True)
class _Controlled:
    consumer: Consumer
    state: ConsumerState
    fact: DeviceFact
    note: str | None = None  # what the relay's report revealed this cycle


def _shed_text(phase: Phase) -> str:
    return f"off: shed, {phase} would exceed the continuous inverter power"


def _names(ids: Iterable[str]) -> str:
    """a, b and c"""
    listed = list(ids)
    return listed[0] if len(listed) == 1 else f"{', '.join(listed[:-1])} and {listed[-1]}"


def _total(consumption: Mapping[Phase, float | None]) -> float | None:
    values = list(consumption.values())
    return None if any(v is None for v in values) else sum(v or 0.0 for v in values)


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


def _unsettled(
    settling: Settling | None,
    rules: RuleSet,
    snapshot: Snapshot,
    total: float | None,
    t: float,
) -> dict[Phase, float] | None:
    """What the meters do not show yet, or None when the last switches settled (§5.10).

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
    return None if moved >= abs(net) / 2 - _EPSILON else unshown


def _sent(cycle: _Cycle, total: float | None) -> Settling | None:
    """The settling batch after this cycle: its commands join those still unsettled."""
    switched = []
    for decision in cycle.decisions.values():
        if decision.command is None:
            continue
        consumer = cycle.rules.consumer(decision.consumer)
        fact = cycle.snapshot.devices.get(consumer.id, UNAVAILABLE)
        watts = consumer.power if decision.command else cycle.draw(consumer, fact)
        switched.append(Switched(consumer.id, decision.command, watts, consumer.phase))
    waiting = cycle.waiting
    if not switched:
        return waiting
    if waiting is None:
        return Settling(cycle.t, total, tuple(switched))
    return Settling(cycle.t, waiting.baseline, waiting.switched + tuple(switched))


def _observe(
    prev: ConsumerState, fact: DeviceFact, t: float, today: date
) -> tuple[ConsumerState, str | None]:
    """Fold the relay's report into the remembered state; facts win over intentions."""
    state = prev if prev.day == today else prev._replace(starts=0, day=today)
    if not prev.available:
        rejoined = f"rejoined {'on' if fact.on else 'off'}"
        return state._replace(on=fact.on, switched_at=t, awaiting=False, available=True), rejoined
    if fact.on == state.on:
        return (state._replace(awaiting=False) if state.awaiting else state), None
    if state.awaiting and state.switched_at is not None and t - state.switched_at < COMMAND_TIMEOUT:
        return state, None
    note = "did not switch" if state.awaiting else "was switched outside hems-rules"
    return state._replace(on=fact.on, switched_at=t, awaiting=False), note


def _control(
    consumer: Consumer, snapshot: Snapshot, conditions: dict[str, Evaluation]
) -> str | None:
    """Why a consumer is not under control, or None when it is.

    `conditions` memoises results within a cycle: consumers often share a condition.
    """
    if snapshot.settings.mode != 1:
        return "Mode is 0"
    if snapshot.auto.get(consumer.id, 1) != 1:
        return "Auto is 0"
    if consumer.auto_when is not None:
        source = consumer.auto_when.source
        result = conditions.get(source)
        if result is None:
            result = conditions[source] = consumer.auto_when.evaluate(snapshot.variables)
        if result.value is None:
            return f"auto_when {consumer.auto_when.source!r}: {result.error}"
        if not result.value:
            return f"auto_when {consumer.auto_when.source!r} is false"
    return None


def _measured(snapshot: Snapshot, path: str) -> float:
    """An AC or DC PV reading; an invalid path means there is no such PV."""
    value = snapshot.system.get(path)
    return 0.0 if value is None else value


def _release(
    cycle: _Cycle, consumer: Consumer, state: ConsumerState, why: str, note: str | None
) -> None:
    """A consumer outside control: switched off once when it leaves, then left alone."""
    if state.controlled and state.on and not consumer.release_keeps:
        state = state._replace(on=False, switched_at=cycle.t, awaiting=True)
        reason = f"released, switched off: {why}"
        decision = Decision(consumer.id, "off", False, "released", reason, False)
    else:
        code = "released" if state.controlled else "not_controlled"
        extra = f" (the relay {note})" if note else ""
        decision = Decision(
            consumer.id, "on" if state.on else "off", False, code, f"not controlled: {why}{extra}"
        )
    cycle.states[consumer.id] = state._replace(controlled=False, pending_since=None)
    cycle.decisions[consumer.id] = decision


def decide(
    rules: RuleSet, snapshot: Snapshot, state: EngineState, now: datetime
) -> tuple[Plan, EngineState]:
    """One cycle: which controlled consumers run, every decision with its reason."""
    t = now.timestamp()
    today = now.date()
    cycle = _Cycle(rules, snapshot, t, battery_reservation(rules, snapshot))
    phases = rules.site.phase_names

    controlled: list[_Controlled] = []
    conditions: dict[str, Evaluation] = {}
    own_load = dict.fromkeys(PHASES, 0.0)
    for consumer in rules.consumers:
        prev = state.consumers.get(consumer.id, ConsumerState())
        fact = snapshot.devices.get(consumer.id, UNAVAILABLE)
        if not fact.available:
            cycle.states[consumer.id] = prev._replace(available=False, pending_since=None)
            reason = f"unavailable: {fact.cause}"
            decision = Decision(consumer.id, "unavailable", prev.controlled, "unavailable", reason)
            cycle.decisions[consumer.id] = decision
            continue
        current, note = _observe(prev, fact, t, today)
        why_not = _control(consumer, snapshot, conditions)
        # Consumption contains the engine's own loads, and those that are released now.
        if fact.on and (why_not is None or (current.controlled and not consumer.release_keeps)):
            for phase, watts in consumer.shares(cycle.draw(consumer, fact)):
                own_load[phase] += watts
        if why_not is None:
            if not current.controlled:
                current = current._replace(controlled=True)
            controlled.append(_Controlled(consumer, current, fact, note))
        else:
            _release(cycle, consumer, current, why_not, note)

    consumption = {p: snapshot.system.get(f"/Ac/Consumption/{p}/Power") for p in phases}
    total = _total(consumption) if snapshot.system_present else None
    unshown = _unsettled(state.settling, rules, snapshot, total, t)
    cycle.waiting = state.settling if unshown is not None else None
    missing = [p for p, v in consumption.items() if v is None]
    if not snapshot.system_present or missing:
        why = (
            "com.victronenergy.system is gone"
            if not snapshot.system_present
            else f"consumption on {', '.join(missing)} is unknown"
        )
        cycle.hold_or_stop_unknown(controlled, why)
        return _finish(cycle, controlled, total)

    pv = {
        p: _measured(snapshot, f"/Ac/PvOnGrid/{p}/Power")
        + _measured(snapshot, f"/Ac/PvOnOutput/{p}/Power")
        for p in phases
    }
    surplus = {p: pv[p] - (consumption[p] or 0.0) + own_load[p] for p in phases}
    dc = _measured(snapshot, "/Dc/Pv/Power") * rules.site.dc_efficiency
    for p in phases:
        if surplus[p] < 0:
            dc += surplus[p]
            surplus[p] = 0.0
    cycle.surplus = MappingProxyType(dict(surplus))
    cycle.dc_pool = dc
    cycle.pool = _Pool(
        MappingProxyType(dict(surplus)), dc, snapshot.hub4_mode == 1, rules.site.dc_efficiency**2
    )
    cip = snapshot.settings.continuous_inverter_power
    per_phase = cip if cip >= 0 else rules.site.continuous_inverter_power
    cycle.limits = {p: None if per_phase is None else per_phase + pv[p] for p in phases}
    # The base load is what the meters show without the engine's own loads; while
    # switches are unsettled, as the meters will show it once they have caught up, so a
    # shed load that still shows is not shed twice.
    cycle.projected = {
        p: (consumption[p] or 0.0) - own_load[p] + (unshown or {}).get(p, 0.0) for p in phases
    }
    ranked = sorted(enumerate(controlled), key=lambda item: (item[1].consumer.priority, item[0]))
    cycle.allocate([entry for _, entry in ranked])
    return _finish(cycle, controlled, total)


def _finish(
    cycle: _Cycle, controlled: list[_Controlled], total: float | None
) -> tuple[Plan, EngineState]:
    """The plan, with what the relays revealed this cycle added to their reasons."""
    for entry in controlled:
        if entry.note is not None:
            decision = cycle.decisions[entry.consumer.id]
            reason = f"{decision.reason} (the relay {entry.note})"
            cycle.decisions[entry.consumer.id] = replace(decision, reason=reason)
    return cycle.plan(), EngineState(MappingProxyType(cycle.states), _sent(cycle, total))
