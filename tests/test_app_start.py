"""`run` starts its independent components at once, and still stops each of them."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from hems_rules.app import App, AppOptions, enter_together
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.history.recorder import Recorder
from hems_rules.localtime import local_now
from hems_rules.ruleset import load_rules
from tests.bus import DbusDaemon
from tests.conftest import wait_until


class Component:
    """Entered after `delay` (or failing then), recording what happens to it."""

    def __init__(self, name: str, log: list[str], delay: float = 0.0, fails: bool = False):
        self.name, self.log, self.delay, self.fails = name, log, delay, fails

    async def __aenter__(self) -> Component:
        await asyncio.sleep(self.delay)
        if self.fails:
            raise LookupError(f"{self.name} cannot start")
        self.log.append(f"+{self.name}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.log.append(f"-{self.name}")


async def test_components_are_entered_at_once_and_exited_in_reverse_of_the_given_order() -> None:
    log: list[str] = []
    slow, fast = Component("slow", log, delay=0.05), Component("fast", log)
    async with contextlib.AsyncExitStack() as stack:
        await enter_together(stack, slow, fast)
        assert log == ["+fast", "+slow"]
    assert log[2:] == ["-fast", "-slow"]


async def test_a_failure_is_raised_as_it_is_once_the_others_are_in_and_they_are_exited() -> None:
    log: list[str] = []
    with pytest.raises(LookupError, match="broken cannot start"):
        async with contextlib.AsyncExitStack() as stack:
            await enter_together(
                stack,
                Component("a", log, delay=0.02),
                Component("broken", log, fails=True),
                Component("b", log),
            )
    assert sorted(log[:2]) == ["+a", "+b"]
    assert log[2:] == ["-b", "-a"]


async def test_a_start_cancelled_midway_exits_what_was_entered() -> None:
    """SIGTERM during start-up cancels it: what started is stopped, nothing is left open."""
    log: list[str] = []

    async def start() -> None:
        async with contextlib.AsyncExitStack() as stack:
            await enter_together(stack, Component("quick", log), Component("stuck", log, 60))

    task = asyncio.create_task(start())
    await wait_until(lambda: "+quick" in log, what="the quick one in")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["+quick", "-quick"]


async def test_the_history_records_the_first_decision_made_before_it_started(
    dbus_daemon: DbusDaemon, tmp_path: Path
) -> None:
    """The history starts after the first decision (it is not needed to make it), yet
    its day begins with it, as it did when the history started first."""
    async with (
        SimulatedSettings(dbus_daemon.address),
        SimulatedSystem(dbus_daemon.address),
        EmulatedShelly() as device,
    ):
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "rules.yaml").write_text(
            f"site: {{phases: 1, web: {{enabled: false}}, history: {{path: '{tmp_path}'}}}}\n"
            f"consumers:\n  - {{id: h, shelly: {{host: 127.0.0.1, port: {device.port}}}, "
            "power: 1000}\n"
        )
        options = AppOptions(tmp_path / "rules", bus_address=dbus_daemon.address)
        app = App(options, load_rules(tmp_path / "rules"))
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(stop))
        try:
            await asyncio.wait_for(app.ready.wait(), 10)
            assert app.loop is not None
            (history,) = [p for p in app.loop.publishers if isinstance(p, Recorder)]
            await wait_until(lambda: "h" in app.inputs.devices, what="the relay's report")
            await wait_until(lambda: app.loop is not None and app.loop.cycles >= 2)
            recorded = await history.read(local_now().date())
        finally:
            stop.set()
            assert await asyncio.wait_for(running, 10) == 0
    decisions = [e.value["state"] for e in recorded.events if e.kind == "decision"]
    assert decisions[:2] == ["unavailable", "off"]
