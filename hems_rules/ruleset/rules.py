"""The compiled, immutable form of the rules: what the engine and the I/O layers read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Literal

from hems_rules.expressions import Expression

Phase = Literal["L1", "L2", "L3"]
PHASES: tuple[Phase, ...] = ("L1", "L2", "L3")
ConsumerPhase = Literal["L1", "L2", "L3", "3P"]
Shares = tuple[tuple[Phase, float], ...]  # a load's draw, split over the phases


def shares(phase: ConsumerPhase, watts: float) -> Shares:
    """How `watts` of a load on `phase` splits over the phases (3P: evenly)."""
    if phase == "3P":
        third = watts / 3
        return (("L1", third), ("L2", third), ("L3", third))
    return ((phase, watts),)


@dataclass(frozen=True)
class ShellyEndpoint:
    """Where a relay is: one switch channel of a Shelly Gen2+ device."""

    host: str
    port: int = 80
    switch: int = 0
    user: str = "admin"
    password: str | None = field(default=None, repr=False)
    toggle_after: float | None = None

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("a Shelly needs a host")
        if self.toggle_after is not None and self.toggle_after <= 0:
            raise ValueError("toggle_after must be positive")


# The service hems-rules publishes its consumers on: never a relay of its own rules
# (a State write there switches a consumer by hand, which would loop).
HEMS_SWITCH_SERVICE = "com.victronenergy.switch.hems"


@dataclass(frozen=True)
class DbusRelay:
    """A switchable output the GX already publishes (dbus-shelly, the GX's own relays)."""

    service: str
    output: str  # the <x> of /SwitchableOutput/<x>/

    @property
    def prefix(self) -> str:
        return f"/SwitchableOutput/{self.output}"

    def __str__(self) -> str:
        return f"{self.service} output {self.output}"


@dataclass(frozen=True)
class Runtime:
    """A consumer's on-time per local day, in seconds (DESIGN §5.11)."""

    min: float | None = None  # at least this long a day, finished by `by`
    by: int = 24 * 60  # minutes after midnight, local time; 1440 is the end of the day
    max: float | None = None  # at most this long a day

    @property
    def by_text(self) -> str:
        return f"{self.by // 60:02d}:{self.by % 60:02d}"


@dataclass(frozen=True)
class Consumer:
    """One controllable load, with every default applied and durations in seconds.

    It has exactly one relay: a Shelly spoken to over HTTP, or a `dbus:` output.
    """

    id: str
    name: str
    power: float
    shelly: ShellyEndpoint | None = None
    dbus: DbusRelay | None = None
    phase: ConsumerPhase = "L1"
    priority: int = 50
    primary: bool = False
    min_on: float = 0.0
    min_off: float = 0.0
    on_delay: float = 0.0
    off_delay: float = 0.0
    on_margin: float = 0.0
    off_margin: float = 0.0
    max_starts_per_day: int | None = None
    auto_when: Expression | None = None
    release_keeps: bool = False
    stale_holds: bool = False
    vrm: bool = False
    runtime: Runtime | None = None
    # shares(power), made once: every switch-on books it. A field, not a cached_property,
    # so that the instance keeps its compact attribute layout (fast attribute reads).
    nominal: Shares = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.power < 0:
            raise ValueError(f"{self.id}: power must not be negative")
        if (self.shelly is None) == (self.dbus is None):
            raise ValueError(f"{self.id}: needs exactly one relay, shelly or dbus")
        object.__setattr__(self, "nominal", self.shares(self.power))

    @property
    def relay(self) -> ShellyEndpoint | DbusRelay:
        relay = self.shelly or self.dbus
        assert relay is not None
        return relay

    def shares(self, watts: float) -> Shares:
        """How `watts` of this consumer's draw splits over the phases."""
        phase = self.phase
        if phase == "3P":
            return shares(phase, watts)
        return ((phase, watts),)  # inline: called several times per consumer and cycle


@dataclass(frozen=True)
class MqttSource:
    topic: str
    json: str | None = None
    stale_after: float | None = None


@dataclass(frozen=True)
class HttpSource:
    url: str
    json: str | None = None
    every: float = 10.0
    stale_after: float | None = None
    user: str = "admin"
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DbusSource:
    service: str
    path: str
    stale_after: float | None = None


VariableSource = MqttSource | HttpSource | DbusSource


@dataclass(frozen=True)
class Variable:
    name: str
    source: VariableSource


@dataclass(frozen=True)
class AutoWrites:
    """Which MQTT writes to /Devices/<n>/S2/Auto to accept ("+" = any portal id)."""

    portal: str = "+"
    instance: int = 815

    @property
    def topic(self) -> str:
        return f"W/{self.portal}/switch/{self.instance}/Devices/+/S2/Auto"


@dataclass(frozen=True)
class MqttBroker:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    auto_writes: AutoWrites | None = None


@dataclass(frozen=True)
class PageConfig:
    """The status page (site.web); `control` lets a password holder set Auto and on/off."""

    port: int = 8089
    bind: str = "0.0.0.0"
    control: bool = False
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class HistoryConfig:
    """Where the history lives (site.history) and how much of it is kept."""

    path: str = "/data/hems-rules/history"
    days: int = 31
    max_bytes: int = 64 << 20


@dataclass(frozen=True)
class Site:
    battery_reservation: Expression
    phases: int = 3
    loop_interval: float = 2.0
    continuous_inverter_power: float | None = None
    dc_efficiency: float = 0.925
    mqtt: MqttBroker | None = None
    settle: float = 5.0  # longest wait for the meters to show a switch (DESIGN §5.10)
    web: PageConfig | None = PageConfig()  # None: no page
    history: HistoryConfig | None = HistoryConfig()  # None: nothing recorded

    def __post_init__(self) -> None:
        if self.phases not in (1, 2, 3):
            raise ValueError("phases must be 1, 2 or 3")
        if not 0 < self.dc_efficiency <= 1:
            raise ValueError("dc_efficiency must be in (0, 1]")

    @cached_property
    def phase_names(self) -> tuple[Phase, ...]:
        return PHASES[: self.phases]


@dataclass(frozen=True)
class RuleSet:
    """Everything the user decided, compiled; consumers in the order of the rules."""

    site: Site
    consumers: tuple[Consumer, ...] = ()
    variables: Mapping[str, Variable] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        ids = [c.id for c in self.consumers]
        if len(ids) != len(set(ids)):
            raise ValueError("consumer ids must be unique")

    def consumer(self, consumer_id: str) -> Consumer:
        return self.by_id[consumer_id]

    @cached_property
    def by_id(self) -> Mapping[str, Consumer]:
        return MappingProxyType({c.id: c for c in self.consumers})

    @cached_property
    def ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.consumers)

    @cached_property
    def place(self) -> Mapping[str, int]:
        """Each consumer's place in `ranked`, by id."""
        return MappingProxyType(dict(zip(self.ids, self.rank, strict=True)))

    @cached_property
    def placed(self) -> tuple[tuple[Consumer, int], ...]:
        """Each consumer with its place in `ranked`, in the order of the rules: read in
        every cycle, where zipping `consumers` with `rank` would cost a zip each time."""
        return tuple(zip(self.consumers, self.rank, strict=True))

    @cached_property
    def conditions(self) -> Mapping[str, tuple[Expression, tuple[str, ...]]]:
        """Each distinct auto_when, by its text: the condition and the consumers it governs."""
        ids: dict[str, list[str]] = {}
        first: dict[str, Expression] = {}
        for c in self.consumers:
            if c.auto_when is not None:
                first.setdefault(c.auto_when.source, c.auto_when)
                ids.setdefault(c.auto_when.source, []).append(c.id)
        return MappingProxyType({s: (first[s], tuple(ids[s])) for s in first})

    @cached_property
    def timed(self) -> bool:
        """Whether any consumer has a daily runtime."""
        return any(c.runtime is not None for c in self.consumers)

    @cached_property
    def ranked(self) -> tuple[Consumer, ...]:
        """The consumers in the order they are served: priority, then order in the rules."""
        return tuple(self.consumers[i] for i in self._order)

    @cached_property
    def rank(self) -> tuple[int, ...]:
        """Each consumer's place in `ranked`, in the order of the rules."""
        places = [0] * len(self.consumers)
        for place, index in enumerate(self._order):
            places[index] = place
        return tuple(places)

    @cached_property
    def _order(self) -> list[int]:
        return sorted(range(len(self.consumers)), key=lambda i: (self.consumers[i].priority, i))
