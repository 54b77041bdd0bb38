"""Values shared by sources, the engine and sinks: what goes into a cycle and what comes out.

Everything here is immutable: a Snapshot is a fact, a Plan is a decision, and neither
changes after the fact. What the engine makes anew in every cycle, for every consumer
or once, is a NamedTuple, the rest a frozen dataclass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from hems_rules.core.reasons import Code, Reason
from hems_rules.ruleset.rules import ConsumerPhase, Phase

NO_LIMIT = -1.0

DecisionState = Literal["on", "off", "unavailable"]


def _empty() -> Mapping[str, Any]:
    """An immutable empty mapping, whatever its value type."""
    return MappingProxyType({})


@dataclass(frozen=True)
class DeviceFact:
    """What a relay reports: reachable or not, its output, and its measured draw.

    `power` is None until a measurement has arrived since the relay last switched.
    `cause` says why an unavailable relay is unavailable, in plain words for the Reason.
    """

    available: bool = True
    on: bool = False
    power: float | None = None
    cause: str = "the relay does not answer"

    def __post_init__(self) -> None:
        if self.power is not None and self.power < 0:
            raise ValueError("measured power must not be negative")


UNAVAILABLE = DeviceFact(available=False)


@dataclass(frozen=True)
class Settings:
    """The /Settings/HEMS/* overrides; their defaults mean "use the rules"."""

    mode: int = 0
    battery_reservation_equation: str = ""
    continuous_inverter_power: float = NO_LIMIT


@dataclass(frozen=True)
class Snapshot:
    """Everything one cycle may look at. None means invalid or unknown, never zero."""

    system: Mapping[str, float | None] = field(default_factory=_empty)
    system_present: bool = True
    settings: Settings = Settings()
    variables: Mapping[str, float | None] = field(default_factory=_empty)
    auto: Mapping[str, int] = field(default_factory=_empty)
    devices: Mapping[str, DeviceFact] = field(default_factory=_empty)
    max_charge_current: float | None = None
    max_charge_voltage: float | None = None
    hub4_mode: int | None = None
    names: Mapping[str, str] = field(default_factory=_empty)  # the user's, from the switch pane

    def name(self, consumer_id: str, default: str) -> str:
        """What the user calls a consumer: its CustomName, else `default` (the rules')."""
        return self.names.get(consumer_id) or default


# Makes a NamedTuple from its fields in order, without the class's own __new__ (a Python
# function, about twice the cost): for what a cycle makes for every consumer.
new_tuple = tuple.__new__


class ConsumerState(NamedTuple):
    """What the engine remembers about one consumer between cycles.

    A NamedTuple rather than a dataclass: it is rebuilt for every consumer in every
    cycle, and `_replace` is several times cheaper than `dataclasses.replace`.
    """

    on: bool = False
    switched_at: float | None = None  # None: never switched, so no timer holds it
    awaiting: bool = False  # a command was sent and its read-back has not arrived
    controlled: bool = False
    available: bool = True
    pending_since: float | None = None  # since when an on_delay / off_delay condition holds
    starts: int = 0  # switch-ons on `day`
    day: date | None = None  # the local day `starts` and `runtime` count
    runtime: float = 0.0  # seconds the relay reported on during `day`
    counted_at: float | None = None  # when it last reported on; None: off or unavailable

    def counting(self, runtime: float, counted_at: float | None) -> ConsumerState:
        """This state with its runtime counted anew: made for every relay that is on in
        every cycle, so built from a slice, a few times cheaper than `_replace` (and a
        concatenation: `(*self[:8], ...)` would make a list in between)."""
        return new_tuple(ConsumerState, self[:8] + (runtime, counted_at))  # noqa: RUF005

    def confirmed(self) -> ConsumerState:
        """This state once its relay has confirmed the last command: as `_replace` would
        make it, several times cheaper (every relay switched confirms a cycle later)."""
        return new_tuple(ConsumerState, (*self[:2], False, *self[3:]))

    def switching(self, on: bool, t: float, pending_since: float | None) -> ConsumerState:
        """This state once a command to switch `on` is sent at `t`: as `_replace` would
        make it, several times cheaper (a cycle can switch hundreds of consumers)."""
        controlled, available = self[3:5]
        starts = self.starts + int(on)
        fields = (on, t, True, controlled, available, pending_since, starts, *self[7:])
        return new_tuple(ConsumerState, fields)


class Switched(NamedTuple):
    """One command of a settling batch: which relay, which way, and the draw it moves."""

    consumer: str
    on: bool
    watts: float  # switch-on: nominal (the measured draw replaces it once reported)
    phase: ConsumerPhase


@dataclass(frozen=True)
class Settling:
    """Switches the meters may not show yet (DESIGN §5.10).

    The commands of one cycle, joined by any sent before they settled: until the total
    AC consumption has moved by half their net draw since `baseline`, or `settle` has
    passed since `since`, no consumer is switched because of surplus or deficit.
    """

    since: float  # when the latest of them was sent
    baseline: float | None  # total AC consumption when the first was sent; None: unknown
    switched: tuple[Switched, ...]


_NO_CONSUMERS: Mapping[str, ConsumerState] = MappingProxyType({})


class EngineState(NamedTuple):
    """What the engine remembers between cycles (a NamedTuple: one is made every cycle)."""

    consumers: Mapping[str, ConsumerState] = _NO_CONSUMERS
    settling: Settling | None = None


class Decision(NamedTuple):
    """One consumer's outcome of a cycle, and why.

    `why` keeps the reason as a code and its numbers; `reason` is its plain words, made
    when read (on D-Bus, in the log, on the status page), once per distinct reason.
    A NamedTuple, like ConsumerState: one is made for every consumer in every cycle.
    """

    consumer: str
    state: DecisionState
    controlled: bool
    why: Reason
    command: bool | None = None  # switch the relay to this now; None leaves it alone
    power: float = 0.0  # W this consumer is counted for in the plan
    runtime: float = 0.0  # seconds its relay reported on today (local day)

    @property
    def code(self) -> Code:
        return self.why.code

    @property
    def reason(self) -> str:
        return self.why.text


class Plan(NamedTuple):
    """A cycle's decisions, and what it decided on (a NamedTuple: one every cycle)."""

    decisions: tuple[Decision, ...]
    active: bool
    reservation: float | None
    reservation_state: str  # OK | BMS | ERROR
    reservation_error: str | None = None
    surplus: Mapping[Phase, float] | None = None  # per phase, after the DC pool covered deficits
    dc_pool: float | None = None
    left: float | None = None  # what remains after the plan, all phases and DC
    # How far the readings may move before a comparison of this plan comes out otherwise:
    # W of the power readings and the reservation together (core/slack.py).
    slack: float = math.inf

    def decision(self, consumer_id: str) -> Decision:
        for decision in self.decisions:
            if decision.consumer == consumer_id:
                return decision
        raise KeyError(consumer_id)


@dataclass(frozen=True)
class CycleResult:
    """What one cycle decided and what it decided on: everything a sink may publish.

    Sinks read only this, never the live inputs, so they show what the engine saw and
    can be tested without a bus.
    """

    plan: Plan
    changed: tuple[Decision, ...]  # decisions whose state, control or reason kind changed
    snapshot: Snapshot
    at: datetime  # the wall-clock time of the cycle (the GX's local time)
    loop_time: float  # seconds the cycle took
