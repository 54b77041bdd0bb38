"""I/O figures: ItemsChanged cost, MQTT to Switch.Set, Shelly polling cost.

The reaction to a D-Bus change and `hems-rules run`'s start-up, memory and CPU are in
bench_compare.py, measured beside the code before the speed work."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

import aiomqtt
from common import report

from hems_rules.dbus.client import BusClient
from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import BusService
from hems_rules.demo.broker import Mosquitto
from hems_rules.demo.bus import PrivateBus
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.shelly.relays import ShellyRelays
from hems_rules.sources.mqtt import MqttVariables
from tests.conftest import rules_from
from tests.live import running, surplus

SWITCH = "com.victronenergy.switch.hems"


def percentiles(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    report(f"{name}_p50", statistics.median(ordered) * 1000, "ms")
    report(f"{name}_p99", ordered[int(len(ordered) * 0.99) - 1] * 1000, "ms")


def rules_text(ports: list[int]) -> str:
    lines = ["site: {phases: 1, battery_reservation: 0}", "consumers:"]
    lines += [
        f"  - {{id: c{i}, shelly: {{host: 127.0.0.1, port: {p}}}, power: 100, priority: {i}}}"
        for i, p in enumerate(ports)
    ]
    return "\n".join(lines) + "\n"


async def items_changed_cost(rounds: int) -> None:
    with PrivateBus() as bus:
        async with BusService("com.victronenergy.switch.bench", bus.address) as service:
            for n in range(100):
                service.add(f"/Devices/{n}/Power", 0.0)
            client = BusClient(await connect(bus.address))
            got: asyncio.Queue[float] = asyncio.Queue()
            await client.watch(
                service.name, lambda v: got.put_nowait(time.perf_counter()), lambda: None
            )
            send, total = [], []
            await asyncio.sleep(0.1)
            for r in range(rounds):
                while not got.empty():
                    got.get_nowait()
                start = time.perf_counter()
                for n in range(100):
                    service.set(f"/Devices/{n}/Power", float(r * 100 + n + 1))
                service._flush()
                send.append(time.perf_counter() - start)
                total.append(await asyncio.wait_for(got.get(), 5) - start)
            report("itemschanged_100_paths_send", statistics.median(send) * 1e6, "us")
            report("itemschanged_100_paths_received", statistics.median(total) * 1e6, "us")
            client.bus.disconnect()


async def mqtt_to_switch_set(events: int) -> None:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        print("BENCH mqtt_to_switch_set skipped (no mosquitto)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp))
        broker.start()
        try:
            async with EmulatedShelly() as device:
                rules = rules_from(
                    "site:\n  phases: 1\n  battery_reservation: 0\n"
                    f"  mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
                    "variables:\n  tank: {mqtt: {topic: tank, json: value}}\n"
                    f"consumers:\n  - {{id: h, shelly: {{host: x.invalid, port: {device.port}}},"
                    ' power: 1000, auto_when: "tank < 70"}\n'
                )
                async with running(rules, {"h": device}, poll=5.0) as (inputs, _, _):
                    assert rules.site.mqtt is not None
                    source = MqttVariables(
                        rules.site.mqtt,
                        {"tank": rules.variables["tank"].source},  # type: ignore[dict-item]
                        lambda n, v: inputs.set_variable(n, v, time.monotonic()),
                    )
                    listener = asyncio.create_task(source.run())
                    await source.connected.wait()
                    surplus(inputs, 3000)
                    samples = []
                    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                        for n in range(events):
                            count = sum(1 for m, _ in device.calls if m == "Switch.Set")
                            start = time.perf_counter()
                            payload = json.dumps({"value": 60 if n % 2 == 0 else 80})
                            await client.publish("tank", payload, qos=0)
                            while sum(1 for m, _ in device.calls if m == "Switch.Set") == count:
                                await asyncio.sleep(0.001)
                            sets = [
                                t
                                for (m, _), t in zip(device.calls, device.call_times, strict=True)
                                if m == "Switch.Set"
                            ]
                            samples.append(sets[-1] - start)
                    listener.cancel()
                    percentiles("mqtt_to_switch_set", samples)
        finally:
            broker.stop()


async def polling_cost(devices: int, seconds: float) -> None:
    async with EmulatedShelly() as device:
        rules = rules_from(rules_text([device.port] * devices).replace("switch", "switch"))
        reports = 0

        def count(consumer_id: str, fact: object) -> None:
            nonlocal reports
            reports += 1

        cpu = time.process_time()
        async with ShellyRelays(count, poll_interval=0.05) as relays:
            relays.sync(rules.consumers)
            await asyncio.sleep(seconds)
        used = time.process_time() - cpu
    # Client and emulator share this process: an upper bound for the client alone.
    per_poll = used / max(reports, 1)
    report("shelly_poll_cpu", per_poll * 1000, "ms/poll (client+emulator)")
    report("shelly_poll_cost_per_device_minute", per_poll * 12 * 1000, "ms CPU at 5 s polling")


async def main() -> None:
    await items_changed_cost(300)
    await mqtt_to_switch_set(int(os.environ.get("BENCH_MQTT_EVENTS", "1000")))
    await polling_cost(10, 5.0)


if __name__ == "__main__":
    asyncio.run(main())
