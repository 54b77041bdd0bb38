"""What the history holds, as plain values: sampled series, events, and a recorded day.

Powers and other readings are kept on a fixed grid of `step` seconds (bucket `i` covers
`[i * step, (i + 1) * step)` in Unix time), each bucket holding the time-weighted mean
of what the cycles in it saw, or None when nothing was known. Things that happen at an
instant (a decision changed, Auto was flipped, a setting or the rules changed) are
events with their exact time. Pure: no I/O, shared by the recorder, the page and replay.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from hems_rules.core.model import DeviceFact
from hems_rules.ruleset.rules import Consumer

STEP = 5.0  # s: fine enough for a day's chart and for replay, small enough for flash

EventKind = Literal["decision", "auto", "settings", "rules"]
Value = float | None


@dataclass(frozen=True)
class Event:
    """Something that happened at `t`: `subject` is a consumer id or a setting name."""

    t: float
    kind: EventKind
    subject: str
    value: Any  # JSON-compatible

    def encode(self) -> str:
        return json.dumps(self.value, separators=(",", ":"))

    @classmethod
    def decode(cls, t: float, kind: str, subject: str, text: str) -> Event:
        return cls(t, kind, subject, json.loads(text))  # type: ignore[arg-type]


@dataclass
class Batch:
    """Consecutive buckets from `first` on, and the events of the same stretch."""

    step: float
    first: int  # bucket index of columns[...][0]
    columns: dict[str, list[Value]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    @property
    def length(self) -> int:
        return max((len(v) for v in self.columns.values()), default=0)


def day_bounds(day: date) -> tuple[float, float]:
    """Unix times of the local midnight that starts `day` and of the next one."""
    start = datetime.combine(day, time(0)).astimezone()
    end = datetime.combine(day + timedelta(days=1), time(0)).astimezone()
    return start.timestamp(), end.timestamp()


def local_day(t: float) -> date:
    return datetime.fromtimestamp(t).astimezone().date()


@dataclass
class Recording:
    """A stretch of history on one grid: series aligned with `times()`, events in order.

    `before` holds the last event of each (kind, subject) before `start`, so the state
    at the start (Auto, settings, the rules, each consumer's decision) is known.
    """

    start: float  # Unix time of bucket 0 (a multiple of step)
    step: float
    length: int
    series: dict[str, list[Value]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    before: list[Event] = field(default_factory=list)

    @classmethod
    def empty(cls, start: float, end: float, step: float = STEP) -> Recording:
        first = int(start // step)
        length = max(0, int(-(-end // step)) - first)
        return cls(first * step, step, length)

    @property
    def first(self) -> int:
        return round(self.start / self.step)

    def times(self) -> list[float]:
        return [self.start + i * self.step for i in range(self.length)]

    def column(self, name: str) -> list[Value]:
        """A series, all None when it was never recorded in this stretch."""
        values = self.series.get(name)
        return values if values is not None else [None] * self.length

    def add(self, batch: Batch) -> None:
        """Place a batch's buckets that fall in this stretch (later batches win)."""
        if batch.step != self.step:
            return
        offset = batch.first - self.first
        for name, values in batch.columns.items():
            lo, hi = max(0, -offset), min(len(values), self.length - offset)
            if lo >= hi:
                continue
            column = self.series.get(name)
            if column is None:
                column = self.series[name] = [None] * self.length
            column[offset + lo : offset + hi] = values[lo:hi]
        end = self.start + self.length * self.step
        self.events.extend(e for e in batch.events if self.start <= e.t < end)
        earlier = [e for e in batch.events if e.t < self.start]
        if earlier:
            self.before = latest([*self.before, *earlier])

    def sort_events(self) -> None:
        """In time order, once each (a batch may arrive both stored and still pending)."""
        seen: set[tuple[float, str, str, str]] = set()
        ordered: list[Event] = []
        for event in sorted(self.events, key=lambda e: e.t):
            key = (event.t, event.kind, event.subject, event.encode())
            if key not in seen:
                seen.add(key)
                ordered.append(event)
        self.events = ordered

    def known(self) -> bool:
        """Whether anything at all was recorded in this stretch."""
        return bool(self.events) or any(
            v is not None for values in self.series.values() for v in values
        )

    def state_at_start(self) -> Mapping[tuple[str, str], Event]:
        return {(e.kind, e.subject): e for e in self.before}

    def timeline(self, kind: EventKind) -> Iterator[Event]:
        """The events of one kind, starting with the state carried in from before."""
        yield from (e for e in self.before if e.kind == kind)
        yield from (e for e in self.events if e.kind == kind)


def latest(events: list[Event]) -> list[Event]:
    """The last event of each (kind, subject), in time order."""
    last: dict[tuple[str, str], Event] = {}
    for event in sorted(events, key=lambda e: e.t):
        last[(event.kind, event.subject)] = event
    return sorted(last.values(), key=lambda e: e.t)


def drawn(consumer: Consumer, fact: DeviceFact) -> Value:
    """W the meter sees from a consumer: measured when reported, else nominal while on."""
    if not fact.available:
        return None
    if not fact.on:
        return 0.0
    return fact.power if fact.power is not None else consumer.power
