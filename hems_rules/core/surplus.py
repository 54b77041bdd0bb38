"""What a cycle may hand out: the battery reservation, the surplus per phase, the DC pool.

DESIGN §5.1 and §5.2. Pure functions of the rules and the snapshot (plus what the
engine's own running loads draw, which the consumption already contains).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, overload

from hems_rules.core.model import Snapshot
from hems_rules.errors import ExpressionError
from hems_rules.expressions import RESERVATION_NAMES, Evaluation, Expression, compile_expression
from hems_rules.ruleset.rules import PHASES, Phase, RuleSet

EPSILON = 1e-6
CONSUMPTION = {p: f"/Ac/Consumption/{p}/Power" for p in PHASES}
# By the number of phases: each phase with its two AC PV paths.
_PV = {
    n: tuple((p, f"/Ac/PvOnGrid/{p}/Power", f"/Ac/PvOnOutput/{p}/Power") for p in PHASES[:n])
    for n in (1, 2, 3)
}


# The last inputs and result of each expression, by its source text.
_LAST: dict[str, tuple[dict[str, float | None], Evaluation]] = {}


def evaluate(expression: Expression, inputs: Mapping[str, float | None]) -> Evaluation:
    """The expression's value for these inputs, evaluated again only when they change.

    An expression's result depends on its text and inputs alone, and its inputs (SOC,
    a tank temperature) change far more slowly than cycles run.
    """
    values = {name: inputs.get(name) for name in expression.names}
    last = _LAST.get(expression.source)
    if last is not None and last[0] == values:
        return last[1]
    result = expression.evaluate(values)
    if len(_LAST) >= 256:  # rules reloaded many times: start afresh
        _LAST.clear()
    _LAST[expression.source] = (values, result)
    return result


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
    return _reservation(
        rules.site.battery_reservation,
        snapshot.settings.battery_reservation_equation,
        snapshot.system.get("/Dc/Battery/Soc"),
        snapshot.max_charge_current,
        snapshot.max_charge_voltage,
    )


# Its inputs (SOC, the BMS limits) change far more slowly than cycles run.
@lru_cache(maxsize=64)
def _reservation(
    rules_equation: Expression,
    text: str,
    soc: float | None,
    current: float | None,
    voltage: float | None,
) -> Reservation:
    text = text.strip()
    equation = _override(text) if text else rules_equation
    if isinstance(equation, str):
        return Reservation(None, "ERROR", equation)
    result = evaluate(equation, {"SOC": soc})
    if result.value is None:
        return Reservation(None, "ERROR", f"{equation.source!r}: {result.error}")
    watts = max(0.0, result.value)
    if current is not None and voltage is not None and current * voltage < watts:
        return Reservation(max(0.0, current * voltage), "BMS")
    return Reservation(watts, "OK")


class Pool:
    """What is left to hand out: per phase, and the DC pool (negative when it owes).

    Never changed after it is made: booking gives a new pool, so a booking that does
    not fit costs nothing to drop.

    `gain` bounds how far its figures move when the readings move: a pool made from the
    readings moves by at most what they moved together (1), and a booking that feeds a
    phase from another at `factor` may stretch a move by 1/factor (core/slack.py).
    """

    __slots__ = ("_total", "dc", "factor", "gain", "phases")

    def __init__(self, phases: dict[Phase, float], dc: float, factor: float, gain: float = 1.0):
        self.phases = phases
        self.dc = dc
        self.factor = factor  # what a watt fed from another phase delivers
        self.gain = gain
        self._total: float | None = None

    def total(self) -> float:
        """All of it: the phases and the DC pool (a method: cheaper to call than a property)."""
        total = self._total
        if total is None:
            total = self._total = sum(self.phases.values()) + self.dc
        return total

    @overload
    def book(self, shares: Sequence[tuple[Phase, float]], forced: Literal[True]) -> Pool: ...
    @overload
    def book(self, shares: Sequence[tuple[Phase, float]], forced: bool) -> Pool | None: ...
    def book(self, shares: Sequence[tuple[Phase, float]], forced: bool) -> Pool | None:
        """The pool after feeding `shares`, or None when they do not fit (unless forced).

        A phase is fed from itself, then from the DC pool, then from the other phases:
        at par when the system nets phases, else through the inverter at efficiency².
        A forced booking charges any shortfall to the DC pool.
        """
        phases = self.phases.copy()
        dc, factor = self.dc, self.factor
        for phase, watts in shares:
            had = phases.get(phase, 0.0)
            if 0.0 <= watts <= had:  # the usual: the load's own phase feeds it
                phases[phase] = had - watts
                continue
            # min() and max() written out: this runs for most consumers in every cycle.
            positive = 0.0 if had < 0.0 else had
            own = watts if watts < positive else positive
            phases[phase] = had - own
            need = watts - own
            spare = 0.0 if dc < 0.0 else dc
            from_dc = need if need < spare else spare
            dc -= from_dc
            need -= from_dc
            if need > EPSILON:
                for other, available in phases.items():
                    if other == phase or available <= 0:
                        continue
                    wanted = need / factor
                    cost = wanted if wanted < available else available
                    phases[other] -= cost
                    need -= cost * factor
                    if need <= EPSILON:
                        break
            if need > EPSILON:
                if not forced:
                    return None
                dc -= need
        return Pool(phases, dc, factor, self.gain / factor)


# The cycle's supply side: the surplus per phase (after the DC pool covered deficits),
# the DC pool, the pool to hand out, the inverter's bounds (the most a phase may consume,
# CIP plus its AC PV, plus EPSILON against rounding as every comparison with it takes it;
# no entry: no limit) and the base load (the consumption without the engine's own loads).
# A plain tuple, unpacked by its one reader: a NamedTuple costs several times more.
Supply = tuple[dict[Phase, float], float, Pool, dict[Phase, float], dict[Phase, float]]


def supply(
    rules: RuleSet,
    snapshot: Snapshot,
    consumption: Mapping[Phase, float | None],
    moves: Mapping[Phase, float],
    own_load: Mapping[Phase, float],
) -> Supply:
    """Surplus per phase: PV minus consumption plus the engine's own loads (§5.1).

    `moves` is what the meters do not show yet of the last switches (DESIGN §5.10): the
    consumption is taken as they will show it. An invalid PV path means there is no
    such PV (0).
    """
    system = snapshot.system
    site = rules.site
    cip = snapshot.settings.continuous_inverter_power
    per_phase = cip if cip >= 0 else site.continuous_inverter_power
    surplus: dict[Phase, float] = {}
    bounds: dict[Phase, float] = {}
    base: dict[Phase, float] = {}
    dc = system.get("/Dc/Pv/Power")
    dc = 0.0 if dc is None else dc * site.dc_efficiency
    for p, on_grid, on_output in _PV[site.phases]:
        # `in` and [] rather than get(): a mappingproxy's get() costs several times more.
        grid = system[on_grid] if on_grid in system else None  # noqa: SIM401
        output = system[on_output] if on_output in system else None  # noqa: SIM401
        pv = (0.0 if grid is None else grid) + (0.0 if output is None else output)
        if per_phase is not None:
            bounds[p] = per_phase + pv + EPSILON
        known = (consumption[p] or 0.0) + moves.get(p, 0.0)
        own = own_load[p]
        left = pv - known + own
        if left < 0:
            dc += left
            left = 0.0
        surplus[p] = left
        base[p] = known - own
    factor = 1.0 if snapshot.hub4_mode == 1 else site.dc_efficiency**2
    return surplus, dc, Pool(surplus, dc, factor), bounds, base  # a Pool copies to book
