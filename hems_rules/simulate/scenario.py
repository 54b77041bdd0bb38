"""Scenarios: the public test language, run against the real engine in virtual time.

A scenario is a timeline of changes to the simulated world and a list of expectations.
Cycles run as they do live: on every change (after the debounce), at least every
`loop_interval`, and again after relays report that they switched. No sleeping: a
simulated day runs in seconds.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hems_rules.core.controller import Controller
from hems_rules.core.model import Decision, EngineState, Plan, Settings, Snapshot
from hems_rules.core.timers import EARLY, idle, next_timer
from hems_rules.errors import HemsError, RulesError
from hems_rules.ruleset.compiler import compile_documents, load_rules
from hems_rules.ruleset.durations import parse_duration
from hems_rules.ruleset.rules import RuleSet
from hems_rules.ruleset.yamldoc import YamlDocument, parse_yaml
from hems_rules.simulate.plant import Plant

DEBOUNCE = 0.1
DEFAULT_START = datetime(2026, 6, 21, 10, 0, tzinfo=UTC)

_TOP_KEYS = {"rules", "settings", "timeline", "expect", "start", "description", "plant"}
_PLANT_KEYS = {"meter_lag"}
_STEP_KEYS = {"at", "system", "variables", "settings", "auto", "devices", "dbus", "rules"}
_EXPECT_KEYS = {"at", "state", "reservation", "reason", "relays", "switches", "runtime"}
_SETTING_NAMES = {
    "Mode": "mode",
    "BatteryReservationEquation": "battery_reservation_equation",
    "ContinuousInverterPower": "continuous_inverter_power",
}


class ScenarioError(HemsError):
    """The scenario file itself is wrong."""


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


def _on_off(value: Any) -> str:
    """YAML 1.1 reads a bare on/off as a boolean; the contract means the words."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return str(value)


def _settings(base: Settings, values: Mapping[str, Any], where: str) -> Settings:
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name not in _SETTING_NAMES:
            raise ScenarioError(f"{where}: unknown setting {name!r} ({', '.join(_SETTING_NAMES)})")
        field_name = _SETTING_NAMES[name]
        if field_name == "battery_reservation_equation":
            changes[field_name] = "" if value is None else str(value)
        elif field_name == "mode":
            changes[field_name] = int(value)
        else:
            changes[field_name] = -1.0 if value is None else float(value)
    return replace(base, **changes)


def _keys(doc: YamlDocument, path: tuple[str | int, ...], data: Any, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ScenarioError(str(doc.problem(path, "must be a mapping")))
    for key in data:
        if key not in allowed:
            where = doc.problem(
                (*path, key), f"unknown key {key!r} ({', '.join(sorted(allowed))})", key=True
            )
            raise ScenarioError(str(where))


def _time(doc: YamlDocument, path: tuple[str | int, ...], value: Any) -> float:
    try:
        return parse_duration(value)
    except (ValueError, AttributeError) as err:
        raise ScenarioError(str(doc.problem(path, str(err)))) from None


def _start(doc: YamlDocument, value: Any) -> datetime:
    """`start:` as ISO 8601, optionally with the time zone whose clock runs the day.

    "2026-03-29T00:00:00+01:00[Europe/Berlin]" runs on Berlin's clock, daylight-saving
    changes included; without [zone] the offset stays fixed all along.
    """
    text = str(value).strip()
    zone_name = None
    if text.endswith("]") and "[" in text:
        text, zone_name = text[:-1].split("[", 1)
    try:
        start = datetime.fromisoformat(text)
        if zone_name is not None:
            start = start.astimezone(ZoneInfo(zone_name))
    except (ValueError, ZoneInfoNotFoundError) as err:
        raise ScenarioError(str(doc.problem(("start",), f"{value!r}: {err}"))) from None
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


def load_scenario(path: Path | str, rules_dir: Path | str | None = None) -> Scenario:
    """Read a scenario file; its rules come inline or from `rules_dir`."""
    file = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except OSError as err:
        raise ScenarioError(f"{file}: cannot read: {err}") from None
    doc, problems = parse_yaml(file, text)
    if doc is None:
        raise RulesError(problems)
    _keys(doc, (), doc.data, _TOP_KEYS)
    data = doc.data
    if rules_dir is not None:
        rules = load_rules(rules_dir)
    elif "rules" in data:
        rules = compile_documents([doc.part("rules")])
    else:
        raise ScenarioError(f"{file}: no rules: give them inline under rules: or with --rules DIR")
    settings = _settings(Settings(mode=1), data.get("settings") or {}, file)
    steps = []
    for index, raw in enumerate(data.get("timeline") or []):
        _keys(doc, ("timeline", index), raw, _STEP_KEYS)
        step_rules = None
        if "rules" in raw:
            inner = YamlDocument(file, raw["rules"], doc.part("timeline").root)
            step_rules = compile_documents([inner])
        steps.append(Step(_time(doc, ("timeline", index, "at"), raw.get("at", 0)), raw, step_rules))
    expectations = []
    for index, raw in enumerate(data.get("expect") or []):
        _keys(doc, ("expect", index), raw, _EXPECT_KEYS)
        known = {c.id for c in rules.consumers} | {
            c.id for s in steps if s.rules for c in s.rules.consumers
        }
        named = {**(raw.get("state") or {}), **(raw.get("reason") or {})}
        named |= (raw.get("switches") or {}) | (raw.get("runtime") or {})
        for consumer_id in named:
            if consumer_id not in known:
                raise ScenarioError(
                    str(doc.problem(("expect", index), f"unknown consumer {consumer_id!r}"))
                )
        expectations.append(
            Expectation(
                at=_time(doc, ("expect", index, "at"), raw.get("at", 0)),
                index=index,
                state={k: _on_off(v) for k, v in (raw.get("state") or {}).items()},
                reservation=raw.get("reservation"),
                reason=dict(raw.get("reason") or {}),
                relays={k: _on_off(v) for k, v in (raw.get("relays") or {}).items()},
                switches={k: int(v) for k, v in (raw.get("switches") or {}).items()},
                runtime={
                    k: _time(doc, ("expect", index, "runtime", k), v)
                    for k, v in (raw.get("runtime") or {}).items()
                },
            )
        )
    start = _start(doc, data["start"]) if "start" in data else DEFAULT_START
    meter_lag = 0.0
    if "plant" in data:
        _keys(doc, ("plant",), data["plant"], _PLANT_KEYS)
        meter_lag = _time(doc, ("plant", "meter_lag"), data["plant"].get("meter_lag", 0))
    steps.sort(key=lambda s: s.at)
    expectations.sort(key=lambda e: (e.at, e.index))
    return Scenario(file, rules, settings, tuple(steps), tuple(expectations), start, meter_lag)


@dataclass(frozen=True)
class Failure:
    expectation: Expectation
    message: str

    def __str__(self) -> str:
        return f"expect[{self.expectation.index}] at {self.expectation.at:g}s: {self.message}"


@dataclass
class Outcome:
    failures: list[Failure] = field(default_factory=list)
    cycles: int = 0  # run
    skipped: int = 0  # cycles that could not have changed the plan, not run
    switchings: int = 0
    changes: int = 0
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
    for consumer_id, wanted in expectation.state.items():
        try:
            decision = plan.decision(consumer_id)
        except KeyError:
            failures.append(Failure(expectation, f"{consumer_id} is not in the rules now"))
            continue
        if decision.state != wanted:
            message = f"{consumer_id} is {decision.state}, expected {wanted} ({decision.reason})"
            failures.append(Failure(expectation, message))
    for consumer_id, wanted_s in expectation.runtime.items():
        ran = plan.decision(consumer_id).runtime
        if abs(ran - wanted_s) > tolerance:
            message = (
                f"{consumer_id} ran {ran:g} s today, expected {wanted_s:g} s (± {tolerance:g})"
            )
            failures.append(Failure(expectation, message))
    for consumer_id, fragment in expectation.reason.items():
        reason = plan.decision(consumer_id).reason
        if str(fragment) not in reason:
            message = f"{consumer_id}'s reason {reason!r} does not contain {fragment!r}"
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
        where = f"timeline at {step.at:g}s"
        inputs.set_settings(_settings(inputs.settings, body["settings"], where))
    for consumer_id, value in (body.get("auto") or {}).items():
        inputs.set_auto(consumer_id, int(value))
    for consumer_id, spec in (body.get("devices") or {}).items():
        plant.set_device(consumer_id, spec, step.at)


Driver = Callable[[float, Plant], None]


class _Cycles:
    """The engine's cycles in virtual time, skipping those that would repeat the last.

    After an idle cycle (it changed nothing but the clock in the engine's state), the
    next cycles on the same rules and snapshot decide what it decided until the engine's
    next timer falls due (core/timers.py), so they are skipped. Whoever reads the plan
    (an expectation) first has the latest skipped cycle run, so it sees the plan it made.
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
    ) -> None:
        self.plant = plant
        self.controller = controller
        self.outcome = outcome
        self.on_change = on_change
        self.on_cycle = on_cycle
        self.skip = skip
        # Absolute time: adding a timedelta to a zoned datetime would add wall-clock time.
        self.origin, self.zone = scenario.start.timestamp(), scenario.start.tzinfo
        self._last: _Ran | None = None
        self._skipped: tuple[float, Snapshot] | None = None  # the latest, since one ran

    def due(self, at: float) -> bool:
        """The cycle due at `at`; True when it switched a relay."""
        snapshot = self.plant.snapshot(at)
        last = self._last
        if (
            last is not None
            and last.snapshot is snapshot
            and last.rules is self.controller.rules
            and self.origin + at < last.repeats_until()
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
            self._run(*self._skipped)

    def _run(self, at: float, snapshot: Snapshot) -> tuple[Plan, bool]:
        self._skipped = None
        controller, outcome = self.controller, self.outcome
        before = controller.state
        now = datetime.fromtimestamp(self.origin + at, self.zone)
        plan, changed = controller.cycle(snapshot, now)
        outcome.cycles += 1
        switched = False
        for decision in changed:
            outcome.changes += 1
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

    __slots__ = ("_until", "after", "before", "now", "plan", "rules", "snapshot")

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
    are skipped unless `skip_idle` is False; what is printed and checked is the same,
    and `on_cycle` sees a skipped cycle with the plan of the last one run (the same
    decisions, reservation and surplus; reasons and runtimes as of that cycle).
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
    )
    end = max([s.at for s in scenario.steps] + [e.at for e in scenario.expectations] + [0.0])
    if until is not None:
        end = until
    # Events at one time run in this order: changes, cycles, then expectations.
    queue: list[tuple[float, int, int, Any]] = []
    sequence = 0

    def push(at: float, kind: int, payload: Any = None) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(queue, (round(at, 6), kind, sequence, payload))

    for step in scenario.steps:
        push(step.at, 0, step)
    for expectation in scenario.expectations:
        push(expectation.at, 2, expectation)
    push(0.0, 1, "tick")
    if driver is not None:
        push(0.0, -1)
    cycle_due: set[float] = set()
    while queue:
        at, kind, _, payload = heapq.heappop(queue)
        if at > end + 1e-9:
            break
        if kind <= 0:
            if kind < 0 and driver is not None:
                driver(at, plant)
                push(at + 1.0, -1)
            elif payload is not None:
                if payload.rules is not None:
                    cycles.catch_up()
                _apply(plant, controller, payload)
                if plant.meter_lag and "devices" in payload.body:
                    push(at + plant.meter_lag, 0)
            if round(at + DEBOUNCE, 6) not in cycle_due:
                cycle_due.add(round(at + DEBOUNCE, 6))
                push(at + DEBOUNCE, 1, "change")
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
