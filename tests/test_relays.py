"""The loop driving real HTTP relays on the emulator: commands, faults, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from hems_rules.core.inputs import Inputs
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.loop import EngineLoop
from hems_rules.ruleset import RuleSet
from hems_rules.ruleset.rules import ShellyEndpoint
from hems_rules.shelly.relays import ShellyRelays
from hems_rules.shelly.rpc import DeviceTimeoutError, ShellyRpc
from tests.conftest import rules_from, wait_until
from tests.live import running, surplus

RULES = """\
site: {phases: 1, battery_reservation: 0, loop_interval: 0.2s}
consumers:
  - {id: h1, shelly: {host: h1.invalid, port: PORT1}, power: 1000, priority: 10}
  - {id: h2, shelly: {host: h2.invalid, port: PORT2}, power: 1000, priority: 20}
"""


@asynccontextmanager
async def two_devices() -> AsyncIterator[tuple[RuleSet, EmulatedShelly, EmulatedShelly]]:
    async with EmulatedShelly() as one, EmulatedShelly() as two:
        text = RULES.replace("PORT1", str(one.port)).replace("PORT2", str(two.port))
        yield rules_from(text), one, two


@dataclass
class Pair:
    inputs: Inputs
    loop: EngineLoop
    one: EmulatedShelly
    two: EmulatedShelly


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """h1 (priority 10) and h2 (priority 20), each on its own emulated Shelly."""
    async with (
        two_devices() as (rules, one, two),
        running(rules, {"h1": one, "h2": two}) as (inputs, loop, _),
    ):
        yield Pair(inputs, loop, one, two)


def state(loop: EngineLoop, consumer_id: str) -> str:
    plan = loop.controller.plan
    return plan.decision(consumer_id).state if plan else "none"


async def test_surplus_switches_the_emulated_relay_and_reads_it_back(pair: Pair) -> None:
    inputs, loop, one, two = pair.inputs, pair.loop, pair.one, pair.two
    surplus(inputs, 1500)
    await wait_until(lambda: one.switches[0].output, what="h1 switched on at the device")
    await wait_until(lambda: inputs.devices["h1"].on, what="the read-back")
    assert not two.switches[0].output
    assert ("Switch.Set", {"id": 0, "on": True}) in one.calls
    surplus(inputs, 2500)
    await wait_until(lambda: two.switches[0].output, what="h2 on")
    assert state(loop, "h1") == "on"


async def test_a_dead_shelly_is_unavailable_and_rejoins_after_a_power_cut(pair: Pair) -> None:
    inputs, loop, one, two = pair.inputs, pair.loop, pair.one, pair.two
    surplus(inputs, 1500)
    await wait_until(lambda: one.switches[0].output and state(loop, "h1") == "on")
    one.power_cut()
    await one.stop()
    await wait_until(lambda: state(loop, "h1") == "unavailable", what="h1 unavailable")
    await wait_until(lambda: two.switches[0].output, what="h2 takes the power")
    await one.start()
    await wait_until(lambda: state(loop, "h1") == "on", timeout=8, what="h1 rejoins")
    await wait_until(lambda: not two.switches[0].output, what="h2 gives way")


async def test_a_slow_shelly_does_not_delay_a_fast_one() -> None:
    async with two_devices() as (rules, slow, fast):
        slow.delay = 0.3  # under the 0.5 s timeout: slow, not dead
        async with running(rules, {"h1": slow, "h2": fast}) as (inputs, _, _):
            await wait_until(lambda: "h1" in inputs.devices, what="first poll of the slow one")
            surplus(inputs, 2500)
            await wait_until(lambda: fast.switches[0].output, timeout=1.0, what="fast switched")
            await wait_until(lambda: slow.switches[0].output, timeout=5, what="slow switched")


async def test_garbage_answers_make_a_device_unavailable_until_it_recovers(pair: Pair) -> None:
    inputs, loop, one = pair.inputs, pair.loop, pair.one
    surplus(inputs, 500)
    await wait_until(lambda: state(loop, "h1") == "off")
    one.fault = "garbage"
    await wait_until(lambda: state(loop, "h1") == "unavailable")
    one.fault = None
    await wait_until(lambda: state(loop, "h1") == "off", timeout=8)


async def test_toggle_after_switches_off_on_its_own_when_hems_dies() -> None:
    async with EmulatedShelly() as device:
        rules = rules_from(
            "site: {phases: 1, battery_reservation: 0, loop_interval: 0.2s}\n"
            f"consumers:\n  - {{id: h, shelly: {{host: x.invalid, port: {device.port},"
            " toggle_after: 1s}, power: 1000}\n"
        )
        async with running(rules, {"h": device}) as (inputs, _, _):
            surplus(inputs, 1500)
            await wait_until(lambda: device.switches[0].output)

            def sets() -> int:
                return sum(1 for method, _ in device.calls if method == "Switch.Set")

            await wait_until(lambda: sets() >= 3, what="the dead-man re-asserted")
            assert device.switches[0].output
        await wait_until(lambda: not device.switches[0].output, timeout=3, what="fell back off")


async def test_channels_of_one_device_share_its_one_request_at_a_time() -> None:
    async with EmulatedShelly(switches=4, loads=[500.0] * 4) as device:
        device.delay = 0.02
        consumers = "\n".join(
            f"  - {{id: c{i}, shelly: {{host: pro.invalid, port: {device.port}, switch: {i}}},"
            f" power: 500, priority: {i}}}"
            for i in range(4)
        )
        site = "site: {phases: 1, battery_reservation: 0, loop_interval: 0.2s}"
        rules = rules_from(f"{site}\nconsumers:\n{consumers}\n")
        async with running(rules, {f"c{i}": device for i in range(4)}, poll=0.05) as (inputs, _, _):
            surplus(inputs, 1200)
            await wait_until(
                lambda: [s.output for s in device.switches] == [True, True, False, False]
            )
            assert device.max_in_flight == 1


async def test_shutdown_stops_the_workers_before_the_release() -> None:
    """A command still pending in a worker must not reach the relay after the off."""
    async with EmulatedShelly() as device:
        rules = rules_from(
            "site: {phases: 1, battery_reservation: 0}\n"
            f"consumers:\n  - {{id: h, shelly: {{host: x.invalid, port: {device.port}}},"
            " power: 1000}\n"
        )
        reports: list[bool] = []

        def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
            return "127.0.0.1", endpoint.port

        async with ShellyRelays(
            lambda _, fact: reports.append(fact.on), 60, timeout=2, address=loopback
        ) as relays:
            device.delay = 0.3
            relays.sync(rules.consumers)
            # The first poll is in flight and holds the device's lock when the engine's
            # last command and the shutdown arrive together.
            await wait_until(lambda: device.in_flight == 1, what="a poll in flight")
            relays.command("h", True)
            await relays.release(["h"])
            # Not synchronisation but an observation window: for twice the device's answer
            # time nothing more may reach it while the relays are still open.
            await asyncio.sleep(2 * device.delay)
        sets = [params["on"] for method, params in device.calls if method == "Switch.Set"]
        assert sets == [False]
        assert not device.switches[0].output


async def test_shutdown_ends_a_worker_whose_request_lost_its_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp 3.9 (the GX's) turns a cancellation that comes as a request's timeout
    fires into that timeout: the worker took it for a failed poll and went on polling,
    and the shutdown waited for it forever. Such a worker is cancelled again."""
    monkeypatch.setattr("hems_rules.tasks.RECANCEL", 0.01)
    post, lost = ShellyRpc._post, list[str]()
    polling = asyncio.Event()

    async def timed_out_as_cancelled(
        rpc: ShellyRpc, frame: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        if lost:
            return await post(rpc, frame, headers)
        polling.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            lost.append(frame["method"])
        raise DeviceTimeoutError("did not answer in time")

    monkeypatch.setattr(ShellyRpc, "_post", timed_out_as_cancelled)
    async with EmulatedShelly() as device:
        rules = rules_from(
            "site: {phases: 1, battery_reservation: 0}\n"
            f"consumers:\n  - {{id: h, shelly: {{host: 127.0.0.1, port: {device.port}}},"
            " power: 1000}\n"
        )
        device.switches[0].output = True
        async with ShellyRelays(lambda _, fact: None, 60) as relays:
            relays.sync(rules.consumers)
            await asyncio.wait_for(polling.wait(), 5)
            await asyncio.wait_for(relays.release(["h"]), 5)
        assert lost == ["Switch.GetStatus"]
        assert not device.switches[0].output, "released"


async def test_a_command_given_while_another_is_on_its_way_is_not_lost() -> None:
    """Found by the soak: on, then off 3 ms later, left the relay on for good."""
    async with EmulatedShelly() as device:
        device.delay = 0.2
        rules = rules_from(
            "site: {phases: 1, battery_reservation: 0}\n"
            f"consumers:\n  - {{id: h, shelly: {{host: x.invalid, port: {device.port}}},"
            " power: 1000}\n"
        )
        inputs = Inputs(rules)

        def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
            return "127.0.0.1", endpoint.port

        async with ShellyRelays(inputs.set_device, 60.0, address=loopback) as relays:
            relays.sync(rules.consumers)
            await wait_until(lambda: "h" in inputs.devices, what="the first poll")
            relays.command("h", True)
            await wait_until(lambda: device.in_flight == 1, what="the on on its way")
            relays.command("h", False)
            await wait_until(
                lambda: ("Switch.Set", {"id": 0, "on": False}) in device.calls, what="the off"
            )
            await wait_until(lambda: not inputs.devices["h"].on, what="read back off")
            assert not device.switches[0].output
