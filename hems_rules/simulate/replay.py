"""Replay: a recorded day through the engine with other rules, beside what really happened.

The recorded day becomes a scenario (§7) on the history's 5 s grid: every reading as
recorded, except that consumption is the house alone (the recorded consumption minus
what the recorded consumers drew, per phase), to which the plant adds what the what-if
relays draw, as the GX's meter would. Auto, the /Settings/HEMS values and relay outages
come from the recording at the times they happened. A what-if relay draws what the
recorded one drew while on (a heater whose thermostat opened draws nothing in both), and
its nominal power when the recording never saw it on.

Approximations, said plainly: the battery's SOC is replayed as recorded, although other
decisions would have charged it differently; readings are 5 s means, so a spike shorter
than that is smoothed; relays only move when the engine switches them (a manual switch
in the recording is not repeated).

The same figures are computed for both sides from per-bucket means: energy into each
consumer from the surplus (the solar power beyond the house load, handed out in priority
order) and from the grid or the battery, starts, runtime, how much of the battery
reservation the consumers took that the sun could have covered, and the time a phase was
over the continuous inverter power. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from hems_rules.core.model import Decision, Plan, Settings
from hems_rules.history.recording import Event, Recording, Value, local_day
from hems_rules.history.sampler import Sampler
from hems_rules.ruleset.rules import PHASES, ConsumerPhase, Phase, RuleSet, shares
from hems_rules.simulate.plant import HUB4_MODE, SETTINGS, Plant
from hems_rules.simulate.scenario import Scenario, Step, run_scenario

BMS = "com.victronenergy.battery.recorded"
CONSUMPTION = "sys:/Ac/Consumption/{}/Power"
REFRESH = 60.0  # s: what-if readings are sampled at least this often, changed or not


class ReplayError(ValueError):
    """The history has nothing to replay for that day."""


@dataclass(frozen=True)
class Member:
    """A consumer as the figures see it."""

    id: str
    name: str
    phase: ConsumerPhase
    power: float

    def shares(self, watts: float) -> tuple[tuple[Phase, float], ...]:
        return shares(self.phase, watts)


@dataclass(frozen=True)
class ConsumerFigures:
    id: str
    name: str
    from_surplus_wh: float = 0.0
    from_grid_wh: float = 0.0  # from the grid or the battery
    starts: int = 0
    runtime_s: float = 0.0
    shortfall_wh: float = 0.0  # of the battery reservation
    over_limit_s: float = 0.0  # on while its phase was over the inverter limit


@dataclass(frozen=True)
class Figures:
    consumers: tuple[ConsumerFigures, ...]
    total: ConsumerFigures  # sums; its over_limit_s counts the seconds any phase was over
    unused_surplus_wh: float  # to the battery or exported

    def consumer(self, consumer_id: str) -> ConsumerFigures:
        for figures in self.consumers:
            if figures.id == consumer_id:
                return figures
        return ConsumerFigures(consumer_id, consumer_id)


def _figures_json(figures: ConsumerFigures) -> dict[str, Any]:
    return {
        "from_surplus_wh": round(figures.from_surplus_wh, 1),
        "from_grid_or_battery_wh": round(figures.from_grid_wh, 1),
        "starts": figures.starts,
        "runtime_s": round(figures.runtime_s),
        "reservation_shortfall_wh": round(figures.shortfall_wh, 1),
        "over_inverter_limit_s": round(figures.over_limit_s),
    }


@dataclass(frozen=True)
class Comparison:
    day: date
    start: float  # Unix time of the first recorded bucket
    seconds: float  # the recorded span replayed
    recorded: Figures
    what_if: Figures

    def as_json(self) -> dict[str, Any]:
        def side(figures: Figures) -> dict[str, Any]:
            return {
                "consumers": {
                    c.id: {"name": c.name, **_figures_json(c)} for c in figures.consumers
                },
                "total": {
                    **_figures_json(figures.total),
                    "unused_surplus_wh": round(figures.unused_surplus_wh, 1),
                },
            }

        return {
            "day": self.day.isoformat(),
            "start": datetime.fromtimestamp(self.start).astimezone().isoformat(),
            "seconds": round(self.seconds),
            "recorded": side(self.recorded),
            "what_if": side(self.what_if),
        }


@dataclass
class _Run:
    """What the consumers did, per bucket: mean draw (W), on fraction, and the context."""

    members: Sequence[Member]  # in priority order
    draw: Mapping[str, Sequence[Value]]
    on: Mapping[str, Sequence[Value]]
    starts: Mapping[str, int]
    reservation: Sequence[Value]
    limit: Sequence[float | None]  # continuous inverter power per phase, W

    @classmethod
    def of(
        cls,
        recording: Recording,
        members: Sequence[Member],
        starts: Mapping[str, int],
        limit: Sequence[float | None],
    ) -> _Run:
        """A run as the recorder's series hold it (the what-if run is sampled the same way)."""
        return cls(
            members,
            {m.id: recording.column(f"draw:{m.id}") for m in members},
            {m.id: recording.column(f"on:{m.id}") for m in members},
            starts,
            recording.column("plan:reservation"),
            limit,
        )


@dataclass
class _Meter:
    """The world without the managed consumers, per bucket."""

    step: float
    known: list[bool]
    base: dict[Phase, list[float]]  # the house alone, per phase
    pv: dict[Phase, list[float]]  # AC PV per phase (grid and output side)
    available: list[float]  # solar beyond the house: what the consumers could use
    phases: tuple[Phase, ...] = field(default=PHASES)


# -- the recording as the figures read it -------------------------------------------


def _summaries(recording: Recording) -> list[Mapping[str, Any]]:
    return [e.value for e in recording.timeline("rules")]


def recorded_members(recording: Recording) -> list[Member]:
    """Every consumer the recording knew, latest attributes, in its priority order."""
    found: dict[str, tuple[int, int, Member]] = {}
    for summary in _summaries(recording):
        for index, c in enumerate(summary["consumers"]):
            member = Member(c["id"], c["name"], c["phase"], float(c["power"]))
            found[c["id"]] = (int(c["priority"]), index, member)
    return [m for _, _, m in sorted(found.values(), key=lambda x: (x[0], x[1]))]


def _site(recording: Recording) -> Mapping[str, Any]:
    summaries = _summaries(recording)
    if not summaries:
        raise ReplayError("the recording holds no rules summary")
    return summaries[-1]


def _held(changes: Iterable[Event], times: Sequence[float], initial: Any) -> list[Any]:
    """The value in force at each bucket start, from a series of changes."""
    ordered = sorted(changes, key=lambda e: e.t)
    values, value, index = [], initial, 0
    for t in times:
        while index < len(ordered) and ordered[index].t <= t:
            value = ordered[index].value
            index += 1
        values.append(value)
    return values


def _limits(recording: Recording, rules_limit: float | None) -> list[float | None]:
    """The continuous inverter power per bucket: the D-Bus setting overrides the rules."""
    changes = [e for e in recording.timeline("settings") if e.subject == "ContinuousInverterPower"]
    return [
        float(v) if v is not None and v >= 0 else rules_limit
        for v in _held(changes, recording.times(), None)
    ]


def _meter(recording: Recording, members: Sequence[Member], dc_efficiency: float) -> _Meter:
    n = recording.length
    consumption = {p: recording.column(CONSUMPTION.format(p)) for p in PHASES}
    phases = tuple(p for p in PHASES if any(v is not None for v in consumption[p]))
    base = {p: [0.0] * n for p in phases}
    pv = {p: [0.0] * n for p in phases}
    known = [bool(phases)] * n
    for p in phases:
        grid = recording.column(f"sys:/Ac/PvOnGrid/{p}/Power")
        output = recording.column(f"sys:/Ac/PvOnOutput/{p}/Power")
        for k in range(n):
            value = consumption[p][k]
            if value is None:
                known[k] = False
            else:
                base[p][k] = value
            pv[p][k] = (grid[k] or 0.0) + (output[k] or 0.0)
    for member in members:
        drawn = recording.column(f"draw:{member.id}")
        for phase, share in member.shares(1.0):
            if phase in base:
                house = base[phase]
                for k, watts in enumerate(drawn):
                    if watts:
                        house[k] = max(0.0, house[k] - watts * share)
    dc = recording.column("sys:/Dc/Pv/Power")
    available = [
        max(0.0, sum(pv[p][k] - base[p][k] for p in phases) + (dc[k] or 0.0) * dc_efficiency)
        for k in range(n)
    ]
    return _Meter(recording.step, known, base, pv, available, phases)


def _recorded_run(recording: Recording, members: Sequence[Member]) -> _Run:
    starts = dict.fromkeys((m.id for m in members), 0)
    for event in recording.events:
        if event.kind == "decision" and event.value.get("command") is True:
            starts[event.subject] = starts.get(event.subject, 0) + 1
    limits = _limits(recording, _site(recording)["continuous_inverter_power"])
    return _Run.of(recording, members, starts, limits)


# -- the what-if run ----------------------------------------------------------------


def _span(recording: Recording, meter: _Meter) -> tuple[int, int]:
    known = [k for k, ok in enumerate(meter.known) if ok]
    if not known:
        raise ReplayError(f"nothing was recorded on {local_day(recording.start)}")
    return known[0], known[-1] + 1


def _steps(
    recording: Recording, meter: _Meter, rules: RuleSet, first: int, last: int
) -> list[Step]:
    """The recorded world as a scenario timeline, from bucket `first` to `last`."""
    times = recording.times()
    t0 = times[first]
    system_names = [
        name
        for name in recording.series
        if name.startswith("sys:") and name not in {CONSUMPTION.format(p) for p in PHASES}
    ]
    variables = [name for name in recording.series if name.startswith("var:")]
    bms = (recording.column("bms:max_charge_current"), recording.column("bms:max_charge_voltage"))
    hub4 = recording.column("hub4_mode")
    recorded_ids = {m.id for m in recorded_members(recording)}
    relays = {
        c.id: (recording.column(f"on:{c.id}"), recording.column(f"draw:{c.id}"))
        for c in rules.consumers
        if c.id in recorded_ids
    }
    steps: list[Step] = []
    last_devices: dict[str, dict[str, Any]] = {}
    last_limits: tuple[Value, Value, Value] | None = None
    for k in range(first, last):
        system: dict[str, Value] = {n[4:]: recording.series[n][k] for n in system_names}
        for p in meter.phases:
            system[f"/Ac/Consumption/{p}/Power"] = meter.base[p][k] if meter.known[k] else None
        # Variables every bucket: a recorded value was fresh, so it must not go stale.
        body: dict[str, Any] = {
            "system": system,
            "variables": {n[4:]: recording.series[n][k] for n in variables},
        }
        limits = (bms[0][k], bms[1][k], hub4[k])
        if limits != last_limits:
            last_limits = limits
            body["dbus"] = {
                BMS: {"/Info/MaxChargeCurrent": limits[0], "/Info/MaxChargeVoltage": limits[1]},
                SETTINGS: {HUB4_MODE: limits[2]},
            }
        devices: dict[str, dict[str, Any]] = {}
        for consumer_id, (on, drawn) in relays.items():
            spec = last_devices.get(consumer_id, {"offline": False, "power": None})
            fraction, watts = on[k], drawn[k]
            spec = {
                "offline": fraction is None,
                # What the relay drew while on; kept while the recording shows it off.
                "power": watts / fraction if fraction and watts is not None else spec["power"],
            }
            if spec != last_devices.get(consumer_id):
                devices[consumer_id] = last_devices[consumer_id] = spec
        if devices:
            body["devices"] = devices
        steps.append(Step(times[k] - t0, body))
    end = times[last - 1] + recording.step
    for event in [*recording.before, *recording.events]:
        at = max(0.0, event.t - t0)
        if event.t >= end:
            continue
        if event.kind == "auto" and any(c.id == event.subject for c in rules.consumers):
            steps.append(Step(at, {"auto": {event.subject: event.value}}))
        elif event.kind == "settings":
            steps.append(Step(at, {"settings": {event.subject: event.value}}))
    steps.sort(key=lambda s: s.at)  # stable: events after the readings of their bucket
    return steps


def _what_if_run(recording: Recording, meter: _Meter, rules: RuleSet) -> _Run:
    first, last = _span(recording, meter)
    times = recording.times()
    t0 = times[first]
    scenario = Scenario(
        file="<history>",
        rules=rules,
        settings=Settings(),
        steps=tuple(_steps(recording, meter, rules, first, last)),
        expectations=(),
        start=datetime.fromtimestamp(t0).astimezone(),
    )
    sampler = Sampler(recording.step)
    starts = dict.fromkeys((c.id for c in rules.consumers), 0)
    previous: tuple[Any, ...] = ()
    sampled_at = -REFRESH
    seen: tuple[Plan | None, int] = (None, -1)  # the plan and relays `previous` was read from

    def on_change(at: float, decision: Decision) -> None:
        if decision.command is True:
            starts[decision.consumer] = starts.get(decision.consumer, 0) + 1

    def on_cycle(at: float, plan: Plan, plant: Plant) -> None:
        """The relays and the reservation as they are from this cycle to the next."""
        nonlocal previous, sampled_at, seen
        if at - sampled_at < REFRESH and seen[0] is plan and seen[1] == plant.relay_changes:
            return  # the same plan (a skipped cycle's) and relays: the same readings
        seen = (plan, plant.relay_changes)
        relays = [plant.relay(c.id) for c in rules.consumers]
        now = (plan.reservation, *((r.on, r.online, r.power) for r in relays))
        if now == previous and at - sampled_at < REFRESH:
            return
        previous, sampled_at = now, at
        values: dict[str, Value] = {"plan:reservation": plan.reservation}
        for consumer, relay in zip(rules.consumers, relays, strict=True):
            values[f"on:{consumer.id}"] = float(relay.on) if relay.online else None
            values[f"draw:{consumer.id}"] = relay.draw(consumer.power)
        sampler.add(t0 + at, values)

    run_scenario(
        scenario, on_change, until=times[last - 1] + recording.step - t0, on_cycle=on_cycle
    )
    what_if = Recording(recording.start, recording.step, recording.length)
    batch = sampler.take(everything=True)
    if batch is not None:
        what_if.add(batch)
    members = [Member(c.id, c.name, c.phase, c.power) for c in rules.ranked]
    return _Run.of(
        what_if, members, starts, _limits(recording, rules.site.continuous_inverter_power)
    )


# -- the figures --------------------------------------------------------------------


def figures(meter: _Meter, run: _Run) -> Figures:
    """The day's figures for one side, from per-bucket means."""
    step = meter.step
    hours = step / 3600.0
    totals = {
        m.id: dict.fromkeys(("surplus", "grid", "runtime", "shortfall", "over"), 0.0)
        for m in run.members
    }
    unused = shortfall = over_s = 0.0
    for k, known in enumerate(meter.known):
        if not known:
            continue
        available = meter.available[k]
        reserved = min(run.reservation[k] or 0.0, available)
        load = {p: meter.base[p][k] for p in meter.phases}
        left = available
        for member in run.members:
            drawn = run.draw[member.id][k] or 0.0
            if not drawn:
                continue
            take = min(drawn, left)
            # The part of its take that lies in the lowest `reserved` W of the surplus.
            eaten = max(0.0, min(left, reserved) - max(0.0, left - take))
            left -= take
            own = totals[member.id]
            own["surplus"] += take * hours
            own["grid"] += (drawn - take) * hours
            own["shortfall"] += eaten * hours
            shortfall += eaten * hours
            for phase, watts in member.shares(drawn):
                if phase in load:
                    load[phase] += watts
        unused += left * hours
        limit = run.limit[k]
        over = (
            set()
            if limit is None
            else {p for p in meter.phases if load[p] > limit + meter.pv[p][k] + 0.5}
        )
        if over:
            over_s += step
        for member in run.members:
            fraction = run.on[member.id][k] or 0.0
            totals[member.id]["runtime"] += fraction * step
            if over & {p for p, _ in member.shares(1.0)}:
                totals[member.id]["over"] += fraction * step
    consumers = tuple(
        ConsumerFigures(
            m.id,
            m.name,
            totals[m.id]["surplus"],
            totals[m.id]["grid"],
            run.starts.get(m.id, 0),
            totals[m.id]["runtime"],
            totals[m.id]["shortfall"],
            totals[m.id]["over"],
        )
        for m in run.members
    )
    total = ConsumerFigures(
        "total",
        "total",
        sum(c.from_surplus_wh for c in consumers),
        sum(c.from_grid_wh for c in consumers),
        sum(c.starts for c in consumers),
        sum(c.runtime_s for c in consumers),
        shortfall,
        over_s,
    )
    return Figures(consumers, total, unused)


def replay(recording: Recording, rules: RuleSet) -> Comparison:
    """The recorded day's figures beside those of the same day under `rules`."""
    consumption = (recording.column(CONSUMPTION.format(p)) for p in PHASES)
    if all(v is None for values in consumption for v in values):
        raise ReplayError(f"nothing was recorded on {local_day(recording.start)}")
    site = _site(recording)
    members = recorded_members(recording)
    meter = _meter(recording, members, float(site["dc_efficiency"]))
    first, last = _span(recording, meter)
    recorded = figures(meter, _recorded_run(recording, members))
    what_if = figures(meter, _what_if_run(recording, meter, rules))
    return Comparison(
        local_day(recording.start),
        recording.start + first * recording.step,
        (last - first) * recording.step,
        recorded,
        what_if,
    )


# -- the report ----------------------------------------------------------------------


def _kwh(wh: float) -> str:
    return f"{wh / 1000:.2f}"


def _hours(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


_ROWS: tuple[tuple[str, str, Any], ...] = (
    ("energy from the surplus (kWh)", "from_surplus_wh", _kwh),
    ("energy from the grid or the battery (kWh)", "from_grid_wh", _kwh),
    ("starts", "starts", str),
    ("runtime (h:mm)", "runtime_s", _hours),
    ("battery reservation taken (kWh)", "shortfall_wh", _kwh),
    ("seconds over the inverter limit", "over_limit_s", lambda s: f"{s:.0f}"),
)


def report(comparison: Comparison, rules_name: str) -> str:
    """The comparison as a table a person reads in a terminal (80 columns)."""
    start = datetime.fromtimestamp(comparison.start).astimezone()
    lines = [
        f"replay of {comparison.day}, {start:%H:%M} for {_hours(comparison.seconds)} h:",
        f"as recorded, beside the same day with the rules of {rules_name}",
    ]
    ids = [c.id for c in comparison.what_if.consumers]
    ids += [c.id for c in comparison.recorded.consumers if c.id not in ids]
    names = {c.id: c.name for c in (*comparison.recorded.consumers, *comparison.what_if.consumers)}
    width = max([len("total"), *(len(names[i]) for i in ids)]) + 4

    def row(label: str, recorded: str, what_if: str) -> str:
        return f"    {label:<{width}}{recorded:>11}{what_if:>11}"

    for title, key, show in _ROWS:
        lines.extend(("", title, row("", "recorded", "what-if")))
        for consumer_id in ids:
            recorded = getattr(comparison.recorded.consumer(consumer_id), key)
            what_if = getattr(comparison.what_if.consumer(consumer_id), key)
            lines.append(row(names[consumer_id], show(recorded), show(what_if)))
        recorded = getattr(comparison.recorded.total, key)
        what_if = getattr(comparison.what_if.total, key)
        lines.append(row("total", show(recorded), show(what_if)))
    unused = (comparison.recorded.unused_surplus_wh, comparison.what_if.unused_surplus_wh)
    lines.extend(("", "surplus left to the battery or export (kWh)"))
    lines.extend((row("total", *map(_kwh, unused)), ""))
    lines.append(
        "The what-if side replays the recorded SOC and house load: how the battery would\n"
        "have charged under other decisions is not modelled (see docs/replay.md)."
    )
    return "\n".join(lines)
