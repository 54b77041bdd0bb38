"""The recorder: every cycle into the history, written in batches about once a minute.

A component of the app (an async context manager) fed one record per cycle through
`publish`. Readings go to the sampler (time-weighted means on the history's grid);
decisions that changed, Auto flips, settings and rules changes become events. The
store lives in one worker thread, so a slow flash never delays a cycle.

The store failing never stops control: an unusable file is replaced (the store logs
it), and a read-only or full disk is logged once, and once more when writing works
again. Until then up to an hour of batches waits in memory; older ones are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from hems_rules.core.model import UNAVAILABLE, CycleResult, Decision, Settings
from hems_rules.history.recording import (
    STEP,
    Batch,
    Event,
    Recording,
    Value,
    day_bounds,
    drawn,
    local_day,
)
from hems_rules.history.sampler import Sampler
from hems_rules.history.store import HistoryStore, is_corrupt
from hems_rules.ruleset.rules import HistoryConfig, RuleSet
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

FLUSH_EVERY = 60.0  # s of real time between writes: flash wears with every write
PRUNE_EVERY = 3600.0
MAX_UNWRITTEN = 60  # batches kept in memory while the store cannot be written
RELOG_AFTER = 3600.0  # s before a store that fails again is logged again

T = TypeVar("T")


def readings(record: CycleResult, rules: RuleSet) -> dict[str, Value]:
    """The sampled series of one cycle, by name."""
    snapshot, plan = record.snapshot, record.plan
    values: dict[str, Value] = {f"sys:{path}": v for path, v in snapshot.system.items()}
    values.update((f"var:{name}", v) for name, v in snapshot.variables.items())
    for consumer in rules.consumers:
        fact = snapshot.devices.get(consumer.id, UNAVAILABLE)
        values[f"on:{consumer.id}"] = float(fact.on) if fact.available else None
        values[f"draw:{consumer.id}"] = drawn(consumer, fact)
    values["plan:reservation"] = plan.reservation
    for phase, watts in (plan.surplus or {}).items():
        values[f"plan:surplus:{phase}"] = watts
    values["plan:dc"] = plan.dc_pool
    values["bms:max_charge_current"] = snapshot.max_charge_current
    values["bms:max_charge_voltage"] = snapshot.max_charge_voltage
    values["hub4_mode"] = None if snapshot.hub4_mode is None else float(snapshot.hub4_mode)
    return values


def rules_summary(rules: RuleSet) -> dict[str, Any]:
    """What the page and replay need to know about the rules in force."""
    site = rules.site
    return {
        "phases": site.phases,
        "loop_interval": site.loop_interval,
        "continuous_inverter_power": site.continuous_inverter_power,
        "dc_efficiency": site.dc_efficiency,
        "consumers": [
            {
                "id": c.id,
                "name": c.name,
                "power": c.power,
                "phase": c.phase,
                "priority": c.priority,
                "primary": c.primary,
            }
            for c in rules.consumers
        ],
    }


def decision_value(decision: Decision) -> dict[str, Any]:
    value: dict[str, Any] = {
        "state": decision.state,
        "code": decision.code,
        "controlled": decision.controlled,
        "reason": decision.reason,
    }
    if decision.command is not None:
        value["command"] = decision.command
    return value


SETTING_NAMES = {
    "mode": "Mode",
    "battery_reservation_equation": "BatteryReservationEquation",
    "continuous_inverter_power": "ContinuousInverterPower",
}


class Recorder:
    """Records cycles into the store at `config.path`; readers get the latest too."""

    def __init__(
        self,
        config: HistoryConfig,
        rules: RuleSet,
        *,
        flush_every: float = FLUSH_EVERY,
        step: float = STEP,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = HistoryStore(Path(config.path), config.days, config.max_bytes)
        self.rules = rules
        self.flush_every = flush_every
        self.sampler = Sampler(step)
        self._monotonic = monotonic
        self._events: list[Event] = []
        self._unwritten: list[Batch] = []
        self._writing: list[Batch] = []  # handed to the store, not yet known to be there
        self._auto: dict[str, int] = {}
        self._settings: Settings | None = None
        self._rules_pending = True
        self._failing: str | None = None
        self._logged: float | None = None  # when a failure was last logged
        self._announced = False  # whether the current failure was logged
        self._pruned = -PRUNE_EVERY
        self._latest: float | None = None  # the wall time of the last cycle
        self._executor: ThreadPoolExecutor | None = None
        self._tasks = Tasks("history")

    async def __aenter__(self) -> Recorder:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="history")
        # A flush that fails in a way the store does not expect (a bug) is logged and the
        # writer restarts: the history must not stop for good while control goes on.
        self._tasks.keep_running("writer", self._flush_forever)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        await self.flush(everything=True)
        await self._in_thread(self.store.close)
        if self._executor is not None:
            self._executor.shutdown()

    # -- fed by the loop -----------------------------------------------------------

    def use_rules(self, rules: RuleSet) -> None:
        self.rules = rules
        self._rules_pending = True

    def publish(self, record: CycleResult) -> None:
        t = self._latest = record.at.timestamp()
        self.sampler.add(t, readings(record, self.rules))
        events = self._events
        if self._rules_pending:
            self._rules_pending = False
            events.append(Event(t, "rules", "rules", rules_summary(self.rules)))
        events.extend(Event(t, "decision", d.consumer, decision_value(d)) for d in record.changed)
        snapshot = record.snapshot
        for consumer_id, auto in snapshot.auto.items():
            if self._auto.get(consumer_id) != auto:
                self._auto[consumer_id] = auto
                events.append(Event(t, "auto", consumer_id, auto))
        settings = snapshot.settings
        if settings != self._settings:
            for attribute, name in SETTING_NAMES.items():
                value = getattr(settings, attribute)
                if self._settings is None or getattr(self._settings, attribute) != value:
                    events.append(Event(t, "settings", name, value))
            self._settings = settings

    # -- writing ---------------------------------------------------------------------

    async def _flush_forever(self) -> None:
        # The store is opened by the first flush: opening checks the file (quick_check),
        # seconds on a big store on a GX, and must not delay the first decision.
        while True:
            await asyncio.sleep(self.flush_every)
            await self.flush()

    async def flush(self, everything: bool = False) -> None:
        """Hand what is finished to the store (everything, when closing)."""
        batch = self.sampler.take(everything) or Batch(self.sampler.step, 0)
        batch.events, self._events = self._events, []
        if batch.columns or batch.events:
            self._unwritten.append(batch)
        if not self._unwritten:
            return
        # Taken out before the write: a flush cancelled mid-write (at shutdown) must not
        # leave them here for the next flush to write twice.
        batches, self._unwritten = self._unwritten, []
        self._writing = batches
        try:
            written = await self._attempt(lambda: self._write(batches))
        finally:
            self._writing = []
        if not written:
            self._unwritten = [*batches, *self._unwritten][-MAX_UNWRITTEN:]

    def _write(self, batches: list[Batch]) -> None:
        """In the worker thread."""
        self.store.write(batches)
        now = self._monotonic()
        if now - self._pruned >= PRUNE_EVERY and self._latest is not None:
            self._pruned = now
            # Retention counts on the clock the cycles carry (the demo's runs fast).
            self.store.prune(self._latest)

    async def _attempt(self, action: Callable[[], None]) -> bool:
        """Run `action` against an open store; log a failure once and a recovery once."""

        def attempt() -> None:
            store = self.store
            if store.is_open and not store.file.exists():
                log.warning("history %s was removed, starting anew", store.file)
                store.close()
            if store.is_open and not store.writable:
                store.close()  # opened for reading while writing failed
            try:
                if not store.is_open:
                    store.open()
                action()
            except sqlite3.DatabaseError as err:
                store.close()
                if not is_corrupt(err):
                    raise
                store.open()  # moves the broken file aside
                action()
            except OSError:
                store.close()
                raise

        try:
            await self._in_thread(attempt)
        except (sqlite3.Error, OSError) as err:
            if self._failing is None:
                # A nearly full disk may take one batch and refuse the next: say it once
                # an hour, not at every turn.
                now = self._monotonic()
                self._announced = self._logged is None or now - self._logged >= RELOG_AFTER
                if self._announced:
                    self._logged = now
                    log.error(
                        "history %s cannot be written, control goes on: %s", self.store.file, err
                    )
                else:
                    log.debug("history %s cannot be written again: %s", self.store.file, err)
            self._failing = str(err)
            return False
        if self._failing is not None:
            self._failing = None
            if self._announced:
                log.info("history %s is written again", self.store.file)
        return True

    async def _in_thread(self, call: Callable[[], T]) -> T:
        assert self._executor is not None, "the recorder is not running"
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # -- reading ---------------------------------------------------------------------

    @property
    def failing(self) -> str | None:
        """Why the store cannot be written right now, or None."""
        return self._failing

    async def read(self, day: date) -> Recording:
        """A local day as recorded, with what is still waiting to be written."""
        start, end = day_bounds(day)
        step = self.sampler.step
        try:
            recording = await self._in_thread(lambda: self._read(start, end, step))
        except (sqlite3.Error, OSError):
            recording = Recording.empty(start, end, step)
        for batch in self._pending():
            recording.add(batch)
        recording.sort_events()
        return recording

    def _read(self, start: float, end: float, step: float) -> Recording:
        self._readable()
        return self.store.read(start, end, step)

    def _readable(self) -> None:
        """While writing fails, what is stored can still be read."""
        if not self.store.is_open:
            self.store.open(create=False)

    def _pending(self) -> list[Batch]:
        pending = [*self._writing, *self._unwritten]
        latest = self.sampler.peek()
        if latest is not None:
            pending.append(latest)
        if self._events:
            pending.append(Batch(self.sampler.step, 0, events=list(self._events)))
        return pending

    async def days(self) -> list[date]:
        """The local days recorded, oldest first, today included once it has data."""
        try:
            found = set(await self._in_thread(self._days))
        except (sqlite3.Error, OSError):
            found = set()
        for batch in self._pending():
            if batch.columns:
                found.add(local_day(batch.first * batch.step))
        return sorted(found)

    def _days(self) -> list[date]:
        self._readable()
        return self.store.days()

    async def size(self) -> int:
        return await self._in_thread(self.store.size)
