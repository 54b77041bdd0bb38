"""What a cycle may hand out: the battery reservation, the surplus per phase, the DC pool.

DESIGN §5.1 and §5.2. Pure functions of the rules and the snapshot (plus what the
engine's own running loads draw, which the consumption already contains).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from hems_rules.core.model import Snapshot
from hems_rules.errors import ExpressionError
from hems_rules.expressions import RESERVATION_NAMES, Evaluation, Expression, compile_expression
from hems_rules.ruleset.rules import PHASES, Phase, RuleSet

EPSILON = 1e-6
CONSUMPTION = {p: f"/Ac/Consumption/{p}/Power" for p in PHASES}
_PV_ON_GRID = {p: f"/Ac/PvOnGrid/{p}/Power" for p in PHASES}
_PV_ON_OUTPUT = {p: f"/Ac/PvOnOutput/{p}/Power" for p in PHASES}


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
    text = snapshot.settings.battery_reservation_equation.strip()
    equation = _override(text) if text else rules.site.battery_reservation
    if isinstance(equation, str):
        return Reservation(None, "ERROR", equation)
    result = evaluate(equation, {"SOC": snapshot.system.get("/Dc/Battery/Soc")})
    if result.value is None:
        return Reservation(None, "ERROR", f"{equation.source!r}: {result.error}")
    watts = max(0.0, result.value)
    current, voltage = snapshot.max_charge_current, snapshot.max_charge_voltage
    if current is not None and voltage is not None and current * voltage < watts:
        return Reservation(max(0.0, current * voltage), "BMS")
    return Reservation(watts, "OK")


class Pool:
    """What is left to hand out: per phase, and the DC pool (negative when it owes).

    Never changed after it is made: booking gives a new pool, so a booking that does
    not fit costs nothing to drop.
    """

    __slots__ = ("dc", "factor", "phases")

    def __init__(self, phases: dict[Phase, float], dc: float, factor: float) -> None:
        self.phases = phases
        self.dc = dc
        self.factor = factor  # what a watt fed from another phase delivers

    @property
    def total(self) -> float:
        return sum(self.phases.values()) + self.dc

    def book(self, shares: Iterable[tuple[Phase, float]], forced: bool) -> Pool | None:
        """The pool after feeding `shares`, or None when they do not fit (unless forced).

        A phase is fed from itself, then from the DC pool, then from the other phases:
        at par when the system nets phases, else through the inverter at efficiency².
        A forced booking charges any shortfall to the DC pool.
        """
        phases = self.phases.copy()
        dc = self.dc
        factor = self.factor
        for phase, watts in shares:
            need = watts
            own = min(max(phases.get(phase, 0.0), 0.0), need)
            phases[phase] = phases.get(phase, 0.0) - own
            need -= own
            from_dc = min(max(dc, 0.0), need)
            dc -= from_dc
            need -= from_dc
            for other, available in phases.items():
                if need <= EPSILON:
                    break
                if other == phase or available <= 0:
                    continue
                cost = min(available, need / factor)
                phases[other] -= cost
                need -= cost * factor
            if need > EPSILON:
                if not forced:
                    return None
                dc -= need
        return Pool(phases, dc, self.factor)


@dataclass(frozen=True)
class Supply:
    """The cycle's supply side: the pool to hand out and the inverter's limits."""

    surplus: dict[Phase, float]  # per phase, after the DC pool covered deficits
    dc_pool: float
    pool: Pool
    limits: dict[Phase, float | None]  # most a phase may consume: CIP plus its AC PV


def _reading(snapshot: Snapshot, path: str) -> float:
    """An AC or DC PV reading; an invalid path means there is no such PV."""
    value = snapshot.system.get(path)
    return 0.0 if value is None else value


def supply(
    rules: RuleSet,
    snapshot: Snapshot,
    consumption: Mapping[Phase, float],
    own_load: Mapping[Phase, float],
) -> Supply:
    """Surplus per phase: PV minus consumption plus the engine's own loads (§5.1)."""
    phases = rules.site.phase_names
    pv = {
        p: _reading(snapshot, _PV_ON_GRID[p]) + _reading(snapshot, _PV_ON_OUTPUT[p]) for p in phases
    }
    surplus = {p: pv[p] - consumption[p] + own_load[p] for p in phases}
    dc = _reading(snapshot, "/Dc/Pv/Power") * rules.site.dc_efficiency
    for p in phases:
        if surplus[p] < 0:
            dc += surplus[p]
            surplus[p] = 0.0
    factor = 1.0 if snapshot.hub4_mode == 1 else rules.site.dc_efficiency**2
    cip = snapshot.settings.continuous_inverter_power
    per_phase = cip if cip >= 0 else rules.site.continuous_inverter_power
    limits = {p: None if per_phase is None else per_phase + pv[p] for p in phases}
    return Supply(surplus, dc, Pool(dict(surplus), dc, factor), limits)
