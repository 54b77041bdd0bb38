"""Switch pane and `dbus:` relay figures, the appliance on a private bus:

- a `/SwitchableOutput/<n>/State` write (Auto 0) to the command reaching the relay
  (Switch.Set at an emulated Shelly, SetValue at an emulated dbus-shelly service);
- a change on com.victronenergy.system to the SetValue on a `dbus:` relay;
- D-Bus traffic with 10 `dbus:` consumers at a steady state (the system service
  publishing a change every second, as systemcalc does): signals per second and per cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import report
from dbus_fast import Message, MessageType, Variant

from hems_rules.app import App, AppOptions
from hems_rules.dbus.client import BusClient, open_client
from hems_rules.demo.bus import PrivateBus
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.demo.switch_emulator import EmulatedSwitchService, Output
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import ShellyEndpoint

SWITCH = "com.victronenergy.switch.hems"
SITE = "site: {phases: 1, battery_reservation: 0}\nconsumers:\n"


def acload(i: int) -> str:
    return f"com.victronenergy.acload.shelly_bench{i:02d}_0"


def percentiles(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    report(f"{name}_p50", statistics.median(ordered) * 1000, "ms")
    report(f"{name}_p99", ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000, "ms")


async def arrived(
    seen: Callable[[], Sequence[object]], before: int, what: str, timeout: float = 10.0
) -> None:
    """Wait until `seen()` grows past `before` entries, polling closely (the figures are
    in ms); a command that never arrives is a failure, not a hang."""
    deadline = time.perf_counter() + timeout
    while len(seen()) <= before:
        if time.perf_counter() > deadline:
            raise AssertionError(f"{what} never reached the relay")
        await asyncio.sleep(0.0005)


def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
    return "127.0.0.1", endpoint.port


@asynccontextmanager
async def appliance(
    settings: SimulatedSettings, rules: str, system: dict[str, float]
) -> AsyncIterator[tuple[App, SimulatedSystem, BusClient]]:
    """hems-rules with these rules, on the bus of `settings` (where the relays already are)."""
    address = settings.address
    assert address is not None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rules.yaml").write_text(rules)
        async with SimulatedSystem(address) as gx, open_client(address) as client:
            gx.update(system)
            options = AppOptions(Path(tmp), address, shelly_address=loopback, poll_interval=5)
            app = App(options, load_rules(tmp))
            stop = asyncio.Event()
            task = asyncio.create_task(app.run(stop))
            await app.ready.wait()
            settings.set("/Settings/HEMS/Mode", 1)
            try:
                yield app, gx, client
            finally:
                settings.set("/Settings/HEMS/Mode", 0)
                stop.set()
                await task


async def state_write_to_relay(writes: int) -> None:
    with PrivateBus() as bus:
        async with (
            SimulatedSettings(bus.address) as settings,
            EmulatedShelly() as shelly,
            EmulatedSwitchService(acload(0), bus.address, [Output("0")], delay=0.0) as service,
        ):
            rules = SITE + (
                f"  - {{id: http, shelly: {{host: x.invalid, port: {shelly.port}}}, power: 100}}\n"
                f"  - {{id: gx, dbus: {{service: {acload(0)}, output: 0}}, power: 100}}\n"
            )
            idle = {"/Ac/PvOnGrid/L1/Power": 0.0, "/Ac/Consumption/L1/Power": 300.0}
            async with appliance(settings, rules, idle) as (app, _, client):

                def arrivals(kind: str) -> list[float]:
                    if kind == "dbus":
                        return [w.at for w in service.writes]
                    calls = zip(shelly.calls, shelly.call_times, strict=True)
                    return [t for (method, _), t in calls if method == "Switch.Set"]

                for consumer, kind in (("http", "shelly"), ("gx", "dbus")):
                    n = app.numbers.numbers[consumer]
                    await client.set_value(SWITCH, f"/SwitchableOutput/{n}/Auto", Variant("i", 0))
                    await asyncio.sleep(0.3)  # the release of leaving Auto has been sent
                    samples = []
                    for k in range(writes):
                        before = len(arrivals(kind))
                        start = time.perf_counter()
                        path = f"/SwitchableOutput/{n}/State"
                        assert await client.set_value(SWITCH, path, Variant("i", (k + 1) % 2)) == 0
                        await arrived(
                            functools.partial(arrivals, kind), before, f"{kind} write {k}"
                        )
                        samples.append(arrivals(kind)[before] - start)
                        await asyncio.sleep(0.05)  # the read-back arrives before the next write
                    percentiles(f"state_write_to_{kind}_relay", samples)


async def system_change_to_set_value(changes: int) -> None:
    with PrivateBus() as bus:
        async with (
            SimulatedSettings(bus.address) as settings,
            EmulatedSwitchService(
                acload(0), bus.address, [Output("0", load=1000.0)], delay=0.0
            ) as service,
        ):
            rules = (
                SITE + f"  - {{id: gx, dbus: {{service: {acload(0)}, output: 0}}, power: 1000}}\n"
            )
            dark = {"/Ac/PvOnGrid/L1/Power": 0.0, "/Ac/Consumption/L1/Power": 300.0}
            async with appliance(settings, rules, dark) as (_, gx, _):
                samples = []
                for k in range(changes):
                    before = len(service.writes)
                    start = time.perf_counter()
                    # Sun, then none: each change switches the relay the other way.
                    pv = 2500.0 if k % 2 == 0 else 0.0
                    drawn = 1000.0 if k % 2 == 1 else 0.0
                    gx.update(
                        {"/Ac/PvOnGrid/L1/Power": pv, "/Ac/Consumption/L1/Power": 300.0 + drawn}
                    )
                    await arrived(lambda: service.writes, before, f"change {k}")
                    samples.append(service.writes[before].at - start)
                    want = k % 2 == 0
                    while service.outputs["0"].on != want:
                        await asyncio.sleep(0.001)
                    gx.update({"/Ac/Consumption/L1/Power": 300.0 + (1000.0 if want else 0.0)})
                    await asyncio.sleep(0.2)
                percentiles("system_change_to_dbus_set_value", samples)


async def steady_traffic(consumers: int, seconds: float) -> None:
    with PrivateBus() as bus:
        async with contextlib.AsyncExitStack() as stack:
            settings = await stack.enter_async_context(SimulatedSettings(bus.address))
            services = [
                await stack.enter_async_context(
                    EmulatedSwitchService(acload(i), bus.address, [Output("0", load=500.0)])
                )
                for i in range(consumers)
            ]
            rules = SITE + "".join(
                f"  - {{id: c{i}, dbus: {{service: {acload(i)}, output: 0}}, power: 500,"
                f" priority: {i}, vrm: {str(i < 2).lower()}}}\n"
                for i in range(consumers)
            )
            sunny = {"/Ac/PvOnGrid/L1/Power": 3300.0, "/Ac/Consumption/L1/Power": 300.0}
            app, gx, client = await stack.enter_async_context(appliance(settings, rules, sunny))
            await _count_traffic(app, gx, client, services, seconds)


async def _count_traffic(
    app: App,
    gx: SimulatedSystem,
    client: BusClient,
    services: list[EmulatedSwitchService],
    seconds: float,
) -> None:
    def on() -> int:
        return sum(s.outputs["0"].on for s in services)

    while on() < 6:
        await asyncio.sleep(0.05)
    owners = {await client.owner(s.name): "relays" for s in services}
    owners[await client.owner("com.victronenergy.system")] = "system"
    owners[await client.owner("com.victronenergy.settings")] = "settings"
    signals: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    watched = {*(s.name for s in services), "com.victronenergy.settings", gx.name}

    def count(msg: Message) -> bool | None:
        who = owners.get(msg.sender or "", "hems-rules")
        if msg.message_type == MessageType.SIGNAL and msg.member == "ItemsChanged":
            signals[who] += 1
            paths[who] += len(msg.body[0])
        elif msg.message_type == MessageType.SIGNAL and msg.member == "PropertiesChanged":
            signals[who] += 1
            paths[who] += 1
        elif msg.message_type == MessageType.METHOD_CALL and msg.destination != own:
            calls[f"{msg.destination} {msg.member}"] += msg.destination in watched
            return True  # overheard, not ours to answer
        return None

    for rule in (
        "type='signal',interface='com.victronenergy.BusItem'",
        "type='method_call',eavesdrop='true'",
    ):
        await client.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "AddMatch",
            signature="s",
            body=[rule],
            interface="org.freedesktop.DBus",
        )
    own = client.bus.unique_name
    client.bus.add_message_handler(count)
    assert app.loop is not None
    cycles0, start = app.loop.cycles, time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        tick += 1
        # systemcalc's 1 s tick: the house load (here 0..4 W besides 6 relays) moves.
        gx.update({"/Ac/Consumption/L1/Power": 3000.0 + (tick % 5)})
        await asyncio.sleep(1.0)
    elapsed = time.monotonic() - start
    cycles = app.loop.cycles - cycles0
    ours = signals["hems-rules"]
    report("steady_10_consumers_cycles", cycles / elapsed, "cycles/s")
    report("steady_10_consumers_hems_signals", ours / elapsed, "signals/s")
    report("steady_10_consumers_hems_signals_per_cycle", ours / max(cycles, 1), "signals")
    report("steady_10_consumers_hems_paths", paths["hems-rules"] / elapsed, "paths/s")
    report("steady_10_consumers_hems_calls", sum(calls.values()) / elapsed, "calls/s")
    report("steady_10_consumers_relay_signals", signals["relays"] / elapsed, "signals/s")
    report("steady_10_consumers_relays_on", on(), "of 10")


async def main() -> None:
    await state_write_to_relay(int(os.environ.get("BENCH_STATE_WRITES", "100")))
    await system_change_to_set_value(int(os.environ.get("BENCH_SYSTEM_CHANGES", "100")))
    await steady_traffic(10, float(os.environ.get("BENCH_STEADY_SECONDS", "30")))


if __name__ == "__main__":
    asyncio.run(main())
