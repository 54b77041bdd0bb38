"""The engine loop survives what fails around it: a broken sink, a broken rules swap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from hems_rules.core.controller import Controller
from hems_rules.core.inputs import Inputs
from hems_rules.core.model import CycleResult, DeviceFact, Settings
from hems_rules.loop import EngineLoop
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.watch import RulesWatcher
from tests.conftest import rules_from, wait_until

SITE = "site: {phases: 1, battery_reservation: 0, loop_interval: 0.1s}\n"
HEATER = "consumers:\n  - {id: h, shelly: {host: h.invalid}, power: 1000}\n"


class BrokenRelays:
    """A relay sink with a bug: every command raises."""

    def __init__(self) -> None:
        self.commands = 0

    def command(self, consumer_id: str, on: bool) -> None:
        self.commands += 1
        raise RuntimeError(f"relay sink bug ({consumer_id} {on})")


class Recorder:
    def __init__(self) -> None:
        self.results: list[CycleResult] = []

    def publish(self, result: CycleResult) -> None:
        self.results.append(result)


async def test_a_failing_swap_does_not_end_hot_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "rules.yaml").write_text(SITE + HEATER)
    rules = load_rules(tmp_path)
    inputs = Inputs(rules, Settings(mode=1))
    inputs.update_system({"/Ac/PvOnGrid/L1/Power": 3000.0, "/Ac/Consumption/L1/Power": 1300.0})
    inputs.set_device("h", DeviceFact(on=True, power=1000.0))
    relays, recorder = BrokenRelays(), Recorder()
    async with EngineLoop(Controller(rules), inputs, relays, [recorder]) as loop:
        await wait_until(lambda: loop.controller.plan is not None, what="a first cycle")
        assert loop.controller.plan is not None
        assert loop.controller.plan.decision("h").state == "on"
        async with RulesWatcher(tmp_path, rules, loop.swap_rules, debounce=0.05) as watcher:
            # Removing the running heater releases it: the release command raises.
            (tmp_path / "rules.yaml").write_text(SITE + "consumers: []\n")
            await wait_until(lambda: watcher.reloads == 1, what="the first reload")
            await wait_until(lambda: relays.commands >= 1, what="the release command")
            (tmp_path / "rules.yaml").write_text(SITE + HEATER)
            await wait_until(lambda: watcher.reloads == 2, what="a reload after the failure")
            await wait_until(
                lambda: [c.id for c in loop.controller.rules.consumers] == ["h"],
                what="the engine on the newest rules",
            )
    assert "cycle failed" in caplog.text


async def test_a_broken_publisher_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def publish(self, result: CycleResult) -> None:
            raise ValueError("publisher bug")

    rules = rules_from(SITE + HEATER)
    inputs = Inputs(rules, Settings(mode=1))
    recorder = Recorder()
    async with EngineLoop(Controller(rules), inputs, BrokenRelays(), [Broken(), recorder]):
        await wait_until(lambda: len(recorder.results) >= 3, what="cycles keep coming")
    assert "Broken could not publish the cycle" in caplog.text
    assert recorder.results[-1].snapshot.settings.mode == 1


SLOW = "site: {phases: 1, battery_reservation: 0, loop_interval: 10m}\n"


async def passes(count: int) -> None:
    """Let the event loop run `count` times round (no wall-clock wait)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_change_is_decided_within_a_few_passes_of_the_event_loop() -> None:
    rules = rules_from(SLOW + HEATER)
    inputs = Inputs(rules, Settings(mode=1))
    inputs.update_system({"/Ac/PvOnGrid/L1/Power": 0.0})
    recorder = Recorder()
    async with EngineLoop(Controller(rules), inputs, BrokenRelays(), [recorder]):
        await wait_until(lambda: len(recorder.results) == 1, what="the first cycle")
        await passes(20)
        assert len(recorder.results) == 1, "no change, no cycle (loop_interval is 10 min)"
        inputs.update_system({"/Ac/PvOnGrid/L1/Power": 500.0})
        await passes(8)
        assert len(recorder.results) == 2
        assert recorder.results[-1].snapshot.system["/Ac/PvOnGrid/L1/Power"] == 500.0


async def test_a_burst_of_changes_over_several_passes_is_one_cycle() -> None:
    rules = rules_from(SLOW + HEATER)
    inputs = Inputs(rules, Settings(mode=1))
    inputs.update_system({"/Ac/PvOnGrid/L1/Power": 0.0})
    recorder = Recorder()
    loop = asyncio.get_running_loop()

    def burst(value: float) -> None:
        # Signals that arrive one read after another, as a D-Bus burst does.
        inputs.update_system({"/Ac/PvOnGrid/L1/Power": value})
        if value < 1005:
            loop.call_soon(burst, value + 1)

    async with EngineLoop(Controller(rules), inputs, BrokenRelays(), [recorder]):
        await wait_until(lambda: len(recorder.results) == 1, what="the first cycle")
        burst(1000.0)
        await wait_until(lambda: len(recorder.results) == 2, what="a cycle after the burst")
        await passes(20)
    assert len(recorder.results) == 2
    assert recorder.results[-1].snapshot.system["/Ac/PvOnGrid/L1/Power"] == 1005.0


async def test_a_stream_of_changes_does_not_hold_decisions_back() -> None:
    rules = rules_from(SLOW + HEATER)
    inputs = Inputs(rules, Settings(mode=1))
    recorder = Recorder()
    streaming = True
    loop = asyncio.get_running_loop()

    def stream(value: float) -> None:
        inputs.update_system({"/Ac/PvOnGrid/L1/Power": value})
        if streaming:
            loop.call_soon(stream, value + 1)

    async with EngineLoop(Controller(rules), inputs, BrokenRelays(), [recorder]):
        stream(0.0)
        try:
            await wait_until(lambda: len(recorder.results) >= 5, what="cycles during a stream")
        finally:
            streaming = False


class ReportingRelays:
    """Relays that switch at once and report back, with a meter that shows them at once."""

    def __init__(self, inputs: Inputs, house: float) -> None:
        self.inputs = inputs
        self.house = house
        self.commands: list[tuple[str, bool, float]] = []  # consumer, on, monotonic time

    def command(self, consumer_id: str, on: bool) -> None:
        self.commands.append((consumer_id, on, time.monotonic()))
        self.inputs.update_system({"/Ac/Consumption/L1/Power": self.house + (1000 if on else 0)})
        self.inputs.set_device(consumer_id, DeviceFact(on=on, power=1000.0 if on else None))


async def test_a_min_on_that_ends_is_acted_on_at_once_not_at_the_next_loop_interval() -> None:
    """With no change at all after the surplus went, the heater goes off when its
    min_on ends: the loop wakes for the engine's timer (loop_interval is 10 min)."""
    rules = rules_from(
        SLOW + "consumers:\n  - {id: h, shelly: {host: h.invalid}, power: 1000, min_on: 0.5s}\n"
    )
    inputs = Inputs(rules, Settings(mode=1))
    inputs.update_system({"/Ac/PvOnGrid/L1/Power": 3000.0, "/Ac/Consumption/L1/Power": 300.0})
    inputs.set_device("h", DeviceFact(on=False))
    relays = ReportingRelays(inputs, house=300.0)
    recorder = Recorder()
    async with EngineLoop(Controller(rules), inputs, relays, [recorder]):
        await wait_until(lambda: len(relays.commands) == 1, what="the heater switched on")
        inputs.update_system({"/Ac/PvOnGrid/L1/Power": 0.0})
        await wait_until(lambda: len(relays.commands) == 2, what="the heater switched off")
    (_, on, started), (_, off, ended) = relays.commands
    assert (on, off) == (True, False)
    assert 0.5 <= ended - started < 1.5
    reasons = [d.reason for r in recorder.results for d in r.plan.decisions]
    assert any("held by min_on" in reason for reason in reasons)


async def test_the_first_decision_is_made_before_the_loop_runs_and_reaches_later_publishers() -> (
    None
):
    """`run` decides once before its relays, history and page start (app.py): those
    that start after the first decision still get it, and every cycle after it."""
    rules = rules_from(SLOW + HEATER)
    inputs = Inputs(rules, Settings(mode=1))
    inputs.update_system({"/Ac/PvOnGrid/L1/Power": 0.0})
    first, later = Recorder(), Recorder()
    loop = EngineLoop(Controller(rules), inputs, BrokenRelays(), [first])
    await loop.decide_first()
    assert [r.plan.decision("h").state for r in first.results] == ["unavailable"]
    inputs.set_device("h", DeviceFact(on=False))  # the relay reports while others start
    loop.add_publisher(later)
    assert later.results == first.results
    async with loop:
        await wait_until(lambda: len(later.results) == 2, what="a cycle for the report")
        await passes(20)
    assert later.results == first.results
    assert [r.plan.decision("h").state for r in later.results] == ["unavailable", "off"]
