"""The whole chain: an MQTT temperature crosses a threshold and a heater is released."""

from __future__ import annotations

import asyncio
import json
import time

from hems_rules.demo.broker import Mosquitto
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.sources.mqtt import MqttVariables
from tests.conftest import rules_from, wait_until
from tests.live import running, surplus
from tests.test_mqtt import broker, publish  # noqa: F401  (the broker fixture)


async def test_a_hot_tank_releases_the_heater_at_the_relay(broker: Mosquitto) -> None:  # noqa: F811
    async with EmulatedShelly() as device:
        rules = rules_from(
            "site:\n  phases: 1\n  battery_reservation: 0\n  loop_interval: 0.2s\n"
            f"  mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
            "variables:\n  tank: {mqtt: {topic: ebus/tank, json: value}}\n"
            f"consumers:\n  - {{id: heater, shelly: {{host: h.invalid, port: {device.port}}},"
            ' power: 1000, auto_when: "tank < 70"}\n'
        )
        async with running(rules, {"heater": device}) as (inputs, loop, _):
            assert rules.site.mqtt is not None
            mqtt = MqttVariables(
                rules.site.mqtt,
                {n: v.source for n, v in rules.variables.items()},  # type: ignore[misc]
                lambda name, value: inputs.set_variable(name, value, time.monotonic()),
            )
            task = asyncio.create_task(mqtt.run())
            try:
                await asyncio.wait_for(mqtt.connected.wait(), 5)
                surplus(inputs, 2000)
                await publish(broker, "ebus/tank", json.dumps({"value": 55}))
                await wait_until(lambda: device.switches[0].output, what="heater on")
                await publish(broker, "ebus/tank", json.dumps({"value": 71}))
                await wait_until(lambda: not device.switches[0].output, what="released")
                sets = [params for method, params in device.calls if method == "Switch.Set"]
                assert sets[-1] == {"id": 0, "on": False}
                plan = loop.controller.plan
                assert plan is not None
                assert "auto_when 'tank < 70' is false" in plan.decision("heater").reason
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
