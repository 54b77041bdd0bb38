"""Scenarios: the public test language, run against the real engine in virtual time.

A scenario is a timeline of changes to the simulated world and a list of expectations.
Cycles run DEBOUNCE after every change (live, a change is decided within milliseconds;
the fixed delay keeps the printed times stable), again DEBOUNCE after relays report
that they switched, and every `loop_interval`. An engine timer (a min_on that ends, a
settle that passes) is seen by the next of these cycles; live, the loop wakes for it.
No sleeping: a simulated day runs in seconds.

A scenario file is checked whole before anything runs (schema/scenario.schema.json,
then the names it uses and the work its span implies): every mistake is a located
error, and what is accepted ends.
"""

from __future__ import annotations

import difflib
import heapq
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hems_rules.core.controller import Controller
from hems_rules.core.model import NO_LIMIT, Decision, EngineState, Plan, Settings, Snapshot
from hems_rules.core.slack import Baseline
from hems_rules.core.timers import EARLY, idle, next_timer
from hems_rules.errors import Problem, RulesError
from hems_rules.ruleset import schema
from hems_rules.ruleset.compiler import compile_documents, load_rules, read_rule_file
from hems_rules.ruleset.durations import format_duration, parse_duration
from hems_rules.ruleset.rules import RuleSet
from hems_rules.ruleset.yamldoc import PathPart, YamlDocument, format_path, parse_yaml
from hems_rules.simulate.plant import Plant, dbus_reads

DEBOUNCE = 0.1
DEFAULT_START = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)

# The work a scenario may ask for. Every `at` is at most 366 days (the schema): a year
# holds every season, both daylight-saving changes and a leap day, and no timer of the
# rules spans more than 7 days, so a longer run shows nothing new. The cost is per
# cycle, though, and grows with the consumers: 16 million loop cycles is that year at
# the default loop_interval of 2 s (at 100 ms, 18 days), and 100 million decisions
# (cycles times consumers) is that year for six consumers (for 1000, 2.3 days).
MAX_CYCLES = 16_000_000
MAX_DECISIONS = 100_000_000
_YEARS = (1970, 9997)  # the year after a start (a span) must fit in a datetime too
_ZONE = re.compile(r"[A-Za-z0-9_+-]{1,32}(?:/[A-Za-z0-9_+-]{1,32}){0,2}")
_EXAMPLE_START = "2026-06-21T12:00:00+02:00"
_SETTING_NAMES = {
    "Mode": "mode",
    "BatteryReservationEquation": "battery_reservation_equation",
    "ContinuousInverterPower": "continuous_inverter_power",
}


class ScenarioError(RulesError):
    """The scenario file itself is wrong; every problem found is listed, located."""


@dataclass(frozen=True)
class Step:
    at: float
    body: Mapping[str, Any]
    rules: RuleSet | None = None


@dataclass(frozen=True)
class Expectation:
    at: float
    index: int
    state: Mapping[str, str] = field(default_factory=dict)
    reservation: float | None = None
    reason: Mapping[str, str] = field(default_factory=dict)
    relays: Mapping[str, str] = field(default_factory=dict)
    switches: Mapping[str, int] = field(default_factory=dict)
    runtime: Mapping[str, float] = field(default_factory=dict)  # seconds today


@dataclass(frozen=True)
class Scenario:
    file: str
    rules: RuleSet
    settings: Settings
    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...]
    start: datetime = DEFAULT_START
    meter_lag: float = 0.0  # the meters show a relay's draw this long after it switched

    @property
    def end(self) -> float:
        """The time of the last step or expectation: where a run stops."""
        return max([s.at for s in self.steps] + [e.at for e in self.expectations] + [0.0])

    def cost(self) -> tuple[float, float]:
        """The loop cycles the span implies, and the consumer decisions they make.

        Changes add cycles of their own, but at most a few per step: the loop is what
        a long span multiplies.
        """
        cycles = decisions = 0.0
        t, rules = 0.0, self.rules
        for step in [s for s in self.steps if s.rules is not None] + [Step(self.end, {})]:
            count = max(0.0, min(step.at, self.end) - t) / rules.site.loop_interval
            cycles += count
            decisions += count * len(rules.consumers)
            t, rules = max(t, step.at), step.rules or rules
        return cycles, decisions


def _on_off(value: Any) -> str:
    """YAML 1.1 reads a bare on/off as a boolean; the contract means the words."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return str(value)


def _settings(base: Settings, values: Mapping[str, Any]) -> Settings:
    """/Settings/HEMS/<Name> values the schema accepted; null is each one's default."""
    changes: dict[str, Any] = {}
    for name, value in values.items():
        field_name = _SETTING_NAMES[name]
        if field_name == "battery_reservation_equation":
            changes[field_name] = "" if value is None else str(value)
        elif field_name == "mode":
            changes[field_name] = int(value)
        else:
            changes[field_name] = NO_LIMIT if value is None else float(value)
    return replace(base, **changes)


@dataclass
class _Reader:
    """What a valid scenario document means; every problem found is collected, located."""

    doc: YamlDocument
    problems: list[Problem] = field(default_factory=list)

    def problem(self, path: tuple[PathPart, ...], message: str, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    def rules(self, path: tuple[PathPart, ...]) -> RuleSet | None:
        """Inline rules, their problems located by their whole path in the scenario."""
        try:
            return compile_documents([self.doc.part(path)])
        except RulesError as err:
            prefix = format_path(path)
            for problem in err.problems:
                inner = f"{prefix}.{problem.path}" if problem.path else prefix
                self.problems.append(replace(problem, path=inner))
            return None

    def start(self, value: Any) -> datetime:
        """`start:` in ISO 8601, optionally with the time zone whose clock runs the day.

        "2026-03-29T00:00:00+01:00[Europe/Berlin]" runs on Berlin's clock, daylight-saving
        changes included; without [zone] the offset stays fixed all along, and without an
        offset the time is UTC. YAML reads an unquoted time as a timestamp: the same.
        """
        zone_name = None
        if isinstance(value, datetime):
            start = value
        elif isinstance(value, date):
            return self._no_start(f"{value} is a date alone: add the time, as in {_EXAMPLE_START}")
        elif isinstance(value, str) and len(value) <= 100:
            text = value.strip()
            if text.endswith("]") and "[" in text:
                text, zone_name = text[:-1].split("[", 1)
            try:
                start = datetime.fromisoformat(text)
            except ValueError:
                return self._no_start(f"{json.dumps(value)} is not a time like {_EXAMPLE_START}")
        else:
            shown = json.dumps(value)[:40] if isinstance(value, str) else type(value).__name__
            return self._no_start(f"{shown} is not a time like {_EXAMPLE_START}")
        if not _YEARS[0] <= start.year <= _YEARS[1]:
            return self._no_start(f"{start.year} is not a year from {_YEARS[0]} to {_YEARS[1]}")
        if zone_name is not None:
            try:
                if not _ZONE.fullmatch(zone_name):
                    raise ValueError(zone_name)
                zone = ZoneInfo(zone_name)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                return self._no_start(f"{json.dumps(zone_name)[:40]} is not a time zone")
            start = start.astimezone(zone) if start.tzinfo else start.replace(tzinfo=zone)
        return start if start.tzinfo is not None else start.replace(tzinfo=UTC)

    def _no_start(self, message: str) -> datetime:
        self.problem(("start",), message)
        return DEFAULT_START

    def known(
        self, path: tuple[PathPart, ...], names: Iterable[Any], known: Collection[str], what: str
    ) -> None:
        """Every name in `names` is one of `known`: a typo must not pass unnoticed."""
        for name in names:
            if name in known:
                continue
            hint = difflib.get_close_matches(str(name), sorted(known), n=1)
            why = f"did you mean {hint[0]!r}?" if hint else "not in the scenario's rules"
            self.problem((*path, name), f"unknown {what} {name!r}: {why}", key=True)


def load_scenario(path: Path | str, rules_dir: Path | str | None = None) -> Scenario:
    """Read and check a scenario file; its rules come inline or from `rules_dir`.

    ScenarioError lists every problem, located; RulesError those of `rules_dir`.
    """
    file = str(path)
    try:
        text = read_rule_file(Path(path), "scenario")
    except RulesError as err:
        raise ScenarioError(err.problems) from None
    doc, problems = parse_yaml(file, text)
    if doc is None:
        raise ScenarioError(problems)
    problems = schema.validate(doc, schema.SCENARIO)
    if problems:
        raise ScenarioError(problems)
    data: dict[str, Any] = doc.data
    reader = _Reader(doc)

    rules: RuleSet | None = None
    if rules_dir is not None:
        if "rules" in data:
            message = "the scenario has its own rules: leave out --rules, or these"
            reader.problem(("rules",), message, key=True)
        rules = load_rules(rules_dir)
    elif "rules" in data:
        rules = reader.rules(("rules",))
    else:
        reader.problem((), "no rules: give them inline under rules: or with --rules DIR")
    steps = []
    for index, raw in enumerate(data.get("timeline", [])):
        step_rules = reader.rules(("timeline", index, "rules")) if "rules" in raw else None
        steps.append(Step(parse_duration(raw["at"]), raw, step_rules))
    expectations = [
        Expectation(
            at=parse_duration(raw["at"]),
            index=index,
            state={k: _on_off(v) for k, v in raw.get("state", {}).items()},
            reservation=float(raw["reservation"]) if "reservation" in raw else None,
            reason={k: _on_off(v) for k, v in raw.get("reason", {}).items()},
            relays={k: _on_off(v) for k, v in raw.get("relays", {}).items()},
            switches={k: int(v) for k, v in raw.get("switches", {}).items()},
            runtime={k: parse_duration(v) for k, v in raw.get("runtime", {}).items()},
        )
        for index, raw in enumerate(data.get("expect", []))
    ]
    start = reader.start(data["start"]) if "start" in data else DEFAULT_START
    if rules is None or reader.problems:
        raise ScenarioError(reader.problems)

    rulesets = [rules] + [s.rules for s in steps if s.rules is not None]
    _check_names(reader, rulesets)
    scenario = Scenario(
        file,
        rules,
        _settings(Settings(mode=1), data.get("settings", {})),
        tuple(sorted(steps, key=lambda s: s.at)),
        tuple(sorted(expectations, key=lambda e: (e.at, e.index))),
        start,
        parse_duration(data.get("plant", {}).get("meter_lag", 0)),
    )
    _check_cost(reader, scenario)
    if reader.problems:
        raise ScenarioError(reader.problems)
    return scenario


def _check_names(reader: _Reader, rulesets: list[RuleSet]) -> None:
    """Consumers, variables and D-Bus values named must exist in some rules of the scenario.

    Some rules: a reload may add a consumer later, and `relays:` may check the relay of
    one the rules no longer have.
    """
    consumers = {c.id for rules in rulesets for c in rules.consumers}
    variables = {name for rules in rulesets for name in rules.variables}
    data = reader.doc.data
    for index, raw in enumerate(data.get("timeline", [])):
        at: tuple[PathPart, ...] = ("timeline", index)
        for key in ("auto", "devices"):
            reader.known((*at, key), raw.get(key, {}), consumers, "consumer")
        reader.known((*at, "variables"), raw.get("variables", {}), variables, "variable")
        for service, values in raw.get("dbus", {}).items():
            for dbus_path in values:
                if not dbus_reads(service, dbus_path, rulesets):
                    message = (
                        f"nothing reads {dbus_path} of {service}: not a dbus variable's "
                        "source, a BMS's /Info/MaxChargeCurrent or /Info/MaxChargeVoltage, "
                        "or the settings' /Settings/CGwacs/Hub4Mode"
                    )
                    reader.problem((*at, "dbus", service, dbus_path), message, key=True)
    for index, raw in enumerate(data.get("expect", [])):
        for key in ("state", "reason", "relays", "switches", "runtime"):
            reader.known(("expect", index, key), raw.get(key, {}), consumers, "consumer")


def _check_cost(reader: _Reader, scenario: Scenario) -> None:
    """Refuse a span whose loop cycles or decisions are beyond MAX_CYCLES or MAX_DECISIONS."""
    cycles, decisions = scenario.cost()
    if cycles <= MAX_CYCLES and decisions <= MAX_DECISIONS:
        return
    data = reader.doc.data
    last = max(
        [(parse_duration(r["at"]), ("timeline", i)) for i, r in enumerate(data.get("timeline", []))]
        + [(parse_duration(r["at"]), ("expect", i)) for i, r in enumerate(data.get("expect", []))],
        key=lambda item: item[0],
    )[1]
    runs = f"runs {format_duration(scenario.end)}: {cycles:,.0f} loop cycles"
    if cycles > MAX_CYCLES:
        too_much = f"more than the {MAX_CYCLES:,} simulate runs"
    else:
        too_much = f"{decisions:,.0f} consumer decisions, more than {MAX_DECISIONS:,}"
    fix = "shorten the scenario or lengthen site.loop_interval"
    reader.problem((*last, "at"), f"the scenario {runs}, {too_much}: {fix}")


@dataclass(frozen=True)
class Failure:
    expectation: Expectation
    message: str

    def __str__(self) -> str:
        return f"expect[{self.expectation.index}] at {self.expectation.at:g}s: {self.message}"


@dataclass
class Outcome:
    failures: list[Failure] = field(default_factory=list)
    cycles: int = 0
    skipped: int = 0  # of the cycles, those that could not change the plan: not run
    switchings: int = 0
    commands: dict[str, int] = field(default_factory=dict)  # per consumer, on and off

    @property
    def passed(self) -> bool:
        return not self.failures


def _check(
    expectation: Expectation,
    plan: Plan | None,
    plant: Plant,
    commands: Mapping[str, int],
    tolerance: float,
) -> list[Failure]:
    """The failures of one expectation; runtimes may be off by `tolerance` seconds."""
    failures = []
    for consumer_id, count in expectation.switches.items():
        sent = commands.get(consumer_id, 0)
        if sent != count:
            message = f"{consumer_id} was switched {sent} times, expected {count}"
            failures.append(Failure(expectation, message))
    for consumer_id, wanted in expectation.relays.items():
        relay = plant.relay(consumer_id)
        actual = "unavailable" if not relay.online else ("on" if relay.on else "off")
        if actual != wanted:
            message = f"relay of {consumer_id} is {actual}, expected {wanted}"
            failures.append(Failure(expectation, message))
    if plan is None:
        return [Failure(expectation, "no cycle has run yet")]
    decisions = {d.consumer: d for d in plan.decisions}
    for consumer_id in {**expectation.state, **expectation.runtime, **expectation.reason}:
        if consumer_id not in decisions:
            failures.append(Failure(expectation, f"{consumer_id} is not in the rules now"))
    for consumer_id, wanted in expectation.state.items():
        decision = decisions.get(consumer_id)
        if decision is not None and decision.state != wanted:
            message = f"{consumer_id} is {decision.state}, expected {wanted} ({decision.reason})"
            failures.append(Failure(expectation, message))
    for consumer_id, wanted_s in expectation.runtime.items():
        decision = decisions.get(consumer_id)
        if decision is not None and abs(decision.runtime - wanted_s) > tolerance:
            message = (
                f"{consumer_id} ran {decision.runtime:g} s today, expected {wanted_s:g} s "
                f"(± {tolerance:g})"
            )
            failures.append(Failure(expectation, message))
    for consumer_id, fragment in expectation.reason.items():
        decision = decisions.get(consumer_id)
        if decision is not None and fragment not in decision.reason:
            message = f"{consumer_id}'s reason {decision.reason!r} does not contain {fragment!r}"
            failures.append(Failure(expectation, message))
    wanted_r = expectation.reservation
    if wanted_r is not None and (
        plan.reservation is None or abs(plan.reservation - float(wanted_r)) > 0.5
    ):
        why = f" ({plan.reservation_error})" if plan.reservation_error else ""
        got = "unknown" if plan.reservation is None else f"{plan.reservation:g}"
        failures.append(Failure(expectation, f"reservation is {got}, expected {wanted_r}{why}"))
    return failures


def _apply(plant: Plant, controller: Controller, step: Step) -> None:
    body = step.body
    inputs = plant.inputs
    if step.rules is not None:
        controller.swap_rules(step.rules)
        plant.use_rules(step.rules)
    if "system" in body:
        plant.update_system(body["system"])
    for service, values in (body.get("dbus") or {}).items():
        plant.update_dbus(service, values, step.at)
    for name, value in (body.get("variables") or {}).items():
        plant.set_variable(name, value, step.at)
    if "settings" in body:
        inputs.set_settings(_settings(inputs.settings, body["settings"]))
    for consumer_id, value in (body.get("auto") or {}).items():
        inputs.set_auto(consumer_id, int(value))
    for consumer_id, spec in (body.get("devices") or {}).items():
        plant.set_device(consumer_id, spec, step.at)


Driver = Callable[[float, Plant], None]


class _Cycles:
    """The engine's cycles in virtual time, skipping those that would repeat the last.

    After an idle cycle (it changed nothing but the clock in the engine's state), the
    next cycles on the same rules and snapshot decide what it decided until the engine's
    next timer falls due (core/timers.py), so they are skipped. With `banded`, so are
    those whose readings moved less than the plan's slack (core/slack.py): they decide
    the same states and reasons, though the numbers in the reasons, the surplus and the
    reservation they would show differ. Whoever reads the plan (an expectation) first has
    the latest skipped cycle run, so it sees the plan it made.
    """

    def __init__(
        self,
        scenario: Scenario,
        plant: Plant,
        controller: Controller,
        outcome: Outcome,
        *,
        on_change: Callable[[float, Decision], None] | None,
        on_cycle: Callable[[float, Plan, Plant], None] | None,
        skip: bool,
        banded: bool,
    ) -> None:
        self.plant = plant
        self.controller = controller
        self.outcome = outcome
        self.on_change = on_change
        self.on_cycle = on_cycle
        self.skip = skip
        self.banded = banded
        # Absolute time: adding a timedelta to a zoned datetime would add wall-clock time.
        self.origin, self.zone = scenario.start.timestamp(), scenario.start.tzinfo
        self._last: _Ran | None = None
        self._skipped: tuple[float, Snapshot] | None = None  # the latest, since one ran

    def due(self, at: float) -> bool:
        """The cycle due at `at`; True when it switched a relay."""
        snapshot = self.plant.snapshot(at)
        self.outcome.cycles += 1
        last = self._last
        same = last is not None and last.snapshot is snapshot
        if (
            last is not None
            and last.rules is self.controller.rules
            and (same or self.banded)
            and self.origin + at < last.repeats_until()  # after the cheap tests: it costs
            and (same or last.baseline().holds(snapshot))
        ):
            self._skipped = (at, snapshot)
            self.outcome.skipped += 1
            plan, switched = last.plan, False
        else:
            plan, switched = self._run(at, snapshot)
        if self.on_cycle is not None:
            self.on_cycle(at, plan, self.plant)
        return switched

    def catch_up(self) -> None:
        """Run the latest skipped cycle: the plan is read, or the rules change."""
        if self._skipped is not None:
            self.outcome.skipped -= 1
            self._run(*self._skipped)

    def _run(self, at: float, snapshot: Snapshot) -> tuple[Plan, bool]:
        self._skipped = None
        controller, outcome = self.controller, self.outcome
        before = controller.state
        now = datetime.fromtimestamp(self.origin + at, self.zone)
        plan, changed = controller.cycle(snapshot, now)
        switched = False
        for decision in changed:
            if decision.command is not None:
                switched = True
                self.plant.switch(decision.consumer, decision.command, at)
                outcome.switchings += int(decision.command)
                commands = outcome.commands
                commands[decision.consumer] = commands.get(decision.consumer, 0) + 1
            if self.on_change is not None:
                self.on_change(at, decision)
        if self.skip:
            self._last = _Ran(controller.rules, plan, snapshot, (before, controller.state), now)
        return plan, switched


class _Ran:
    """A cycle that ran, and until when cycles on its rules and snapshot would repeat it:
    worked out only when such a cycle comes (with a driver, the snapshot mostly changes)."""

    __slots__ = ("_baseline", "_until", "after", "before", "now", "plan", "rules", "snapshot")

    def __init__(
        self,
        rules: RuleSet,
        plan: Plan,
        snapshot: Snapshot,
        states: tuple[EngineState, EngineState],
        now: datetime,
    ) -> None:
        self.rules, self.plan, self.snapshot, self.now = rules, plan, snapshot, now
        self.before, self.after = states  # the engine's state before the cycle and after
        self._until: float | None = None
        self._baseline: Baseline | None = None

    def baseline(self) -> Baseline:
        """What later snapshots are measured against (core/slack.py)."""
        if self._baseline is None:
            self._baseline = Baseline(self.rules, self.plan, self.snapshot)
        return self._baseline

    def repeats_until(self) -> float:
        """The time before which a cycle on the same rules and snapshot decides the same;
        none if this cycle changed the engine's state (the next may decide otherwise)."""
        if self._until is None:
            self._until = (
                next_timer(self.rules, self.after, self.now) - EARLY
                if idle(self.before, self.after)
                else -math.inf
            )
        return self._until


def run_scenario(
    scenario: Scenario,
    on_change: Callable[[float, Decision], None] | None = None,
    driver: Driver | None = None,
    until: float | None = None,
    on_cycle: Callable[[float, Plan, Plant], None] | None = None,
    *,
    skip_idle: bool = True,
) -> Outcome:
    """Run a scenario to its last step or expectation (or `until`).

    A `driver` changes the world once per simulated second, before the timeline's steps.
    `on_cycle` sees every cycle's plan and the plant after its commands (replay's meter).
    The outcome lists the expectations that failed. Cycles that cannot change the plan
    are skipped unless `skip_idle` is False; what is printed and checked is the same.
    With `on_cycle`, only the cycles on the same snapshot as the last one run are
    skipped, and it sees them with that cycle's plan (the same decisions, reservation
    and surplus; reasons and runtimes as of that cycle).
    """
    plant = Plant(rules=scenario.rules, settings=scenario.settings, meter_lag=scenario.meter_lag)
    controller = Controller(scenario.rules)
    outcome = Outcome()
    cycles = _Cycles(
        scenario,
        plant,
        controller,
        outcome,
        on_change=on_change,
        on_cycle=on_cycle,
        skip=skip_idle,
        banded=on_cycle is None,  # on_cycle sees each cycle's reservation
    )
    end = scenario.end if until is None else until
    # Events at one time run in this order: the driver, changes, cycles, expectations.
    # The driver's second comes every second, so it is kept out of the queue: one
    # comparison a second instead of a push and a pop.
    queue: list[tuple[float, int, int, Any]] = []
    sequence = 0

    def push(at: float, kind: int, payload: Any = None) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(queue, (round(at, 6), kind, sequence, payload))

    cycle_due: set[float] = set()

    def changed(at: float) -> None:
        """A change at `at`: a cycle DEBOUNCE later, unless one is due then already."""
        due = round(at + DEBOUNCE, 6)
        if due not in cycle_due:
            cycle_due.add(due)
            push(due, 1, "change")

    for step in scenario.steps:
        push(step.at, 0, step)
    for expectation in scenario.expectations:
        push(expectation.at, 2, expectation)
    push(0.0, 1, "tick")
    drive_at = 0.0
    last = end + 1e-9  # the last time that runs (times are rounded to 1 µs)
    while queue:
        if driver is not None and drive_at <= queue[0][0]:
            if drive_at > last:
                break
            driver(drive_at, plant)
            changed(drive_at)
            drive_at += 1.0  # whole seconds: exact, so rounded already
            continue
        at, kind, _, payload = heapq.heappop(queue)
        if at > last:
            break
        if kind == 0:
            if payload is not None:
                if payload.rules is not None:
                    cycles.catch_up()
                _apply(plant, controller, payload)
                if plant.meter_lag and "devices" in payload.body:
                    push(at + plant.meter_lag, 0)
            changed(at)
        elif kind == 1:
            cycle_due.discard(at)
            if cycles.due(at):
                push(at + DEBOUNCE, 1, "read-back")
                if plant.meter_lag:
                    push(at + plant.meter_lag, 0)  # the meter shows the switch: a change
            if payload == "tick":
                interval = controller.rules.site.loop_interval or 1.0
                push(at + interval, 1, "tick")
        else:
            cycles.catch_up()
            tolerance = 2 * controller.rules.site.loop_interval
            failures = _check(payload, controller.plan, plant, outcome.commands, tolerance)
            outcome.failures.extend(failures)
    return outcome


def decision_line(at: float, decision: Decision) -> str:
    """The JSON line `simulate` prints for a decision change."""
    line: dict[str, Any] = {
        "t": round(at, 3),
        "consumer": decision.consumer,
        "state": decision.state,
        "reason": decision.reason,
    }
    if decision.command is not None:
        line["switch"] = "on" if decision.command else "off"
    return json.dumps(line)
