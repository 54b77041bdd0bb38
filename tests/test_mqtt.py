"""MQTT variables against a real mosquitto: values, garbage, a broker restart, Auto writes."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from hems_rules.ruleset.rules import AutoWrites, MqttBroker, MqttSource
from hems_rules.sources.mqtt import MqttVariables
from tests.broker import Mosquitto
from tests.conftest import wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="mosquitto is not installed (.ci/run installs it)",
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path)
    server.start()
    yield server
    server.stop()


async def publish(broker: Mosquitto, topic: str, payload: str, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


class Seen:
    def __init__(self) -> None:
        self.values: dict[str, float | None] = {}
        self.autos: list[tuple[int, int]] = []

    def variable(self, name: str, value: float | None) -> None:
        self.values[name] = value

    def auto(self, number: int, value: int) -> bool:
        self.autos.append((number, value))
        return number < 3


@pytest.fixture
async def source(broker: Mosquitto) -> AsyncIterator[tuple[MqttVariables, Seen]]:
    seen = Seen()
    variables = {
        "tank": MqttSource(topic="ebus/tank", json="value"),
        "rod": MqttSource(topic="shelly/+/rod"),
    }
    mqtt = MqttVariables(
        MqttBroker("127.0.0.1", broker.port, auto_writes=AutoWrites("abc123", 815)),
        variables,
        seen.variable,
        seen.auto,
        keepalive=2,
        max_backoff=0.5,
    )
    task = asyncio.create_task(mqtt.run())
    await asyncio.wait_for(mqtt.connected.wait(), 5)
    yield mqtt, seen
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_values_by_json_path_and_raw(
    source: tuple[MqttVariables, Seen], broker: Mosquitto
) -> None:
    _, seen = source
    await publish(broker, "ebus/tank", json.dumps({"value": 61.5, "unit": "C"}))
    await publish(broker, "shelly/one/rod", "88.25")
    await wait_until(lambda: seen.values == {"tank": 61.5, "rod": 88.25}, what="both values")


async def test_garbage_is_ignored_and_the_last_value_kept(
    source: tuple[MqttVariables, Seen], broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    _, seen = source
    await publish(broker, "ebus/tank", json.dumps({"value": 50}))
    await wait_until(lambda: seen.values.get("tank") == 50)
    for garbage in ("not json", json.dumps({"value": "hot"}), json.dumps({"other": 1}), "\xff\xfe"):
        await publish(broker, "ebus/tank", garbage)
    await publish(broker, "ebus/tank", json.dumps({"value": None}))
    await wait_until(lambda: seen.values.get("tank", 0) is None, what="null means unknown")
    assert caplog.text.count("ignored a payload on ebus/tank") == 4


async def test_reconnects_and_resubscribes_after_a_broker_restart(
    source: tuple[MqttVariables, Seen], broker: Mosquitto
) -> None:
    mqtt, seen = source
    broker.stop()
    await wait_until(lambda: not mqtt.connected.is_set(), what="the loss")
    broker.start()
    await wait_until(lambda: mqtt.connections == 2, timeout=10, what="reconnection")
    await publish(broker, "ebus/tank", json.dumps({"value": 70.5}))
    await wait_until(lambda: seen.values.get("tank") == 70.5, what="a value after the restart")


async def test_auto_writes_as_flashmq_would_publish_them(
    source: tuple[MqttVariables, Seen], broker: Mosquitto
) -> None:
    _, seen = source
    await publish(broker, "W/abc123/switch/815/Devices/1/S2/Auto", json.dumps({"value": 0}))
    await publish(broker, "W/abc123/switch/815/Devices/2/S2/Auto", json.dumps({"value": True}))
    await publish(broker, "W/other/switch/815/Devices/1/S2/Auto", json.dumps({"value": 1}))
    await publish(broker, "W/abc123/switch/815/Devices/1/S2/Auto", json.dumps({"value": 7}))
    await publish(broker, "W/abc123/switch/815/Devices/0/S2/Auto", json.dumps({"value": 1}))
    await wait_until(lambda: len(seen.autos) == 3, what="three accepted writes")
    assert seen.autos == [(1, 0), (2, 1), (0, 1)]


async def test_hostile_payloads_never_end_mqtt_input(
    source: tuple[MqttVariables, Seen], broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    mqtt, seen = source
    deep = "[" * 2000 + "]" * 2000
    for topic, payload in (
        ("ebus/tank", deep),
        ("ebus/tank", json.dumps({"value": True})),
        ("ebus/tank", '{"value": ' + "9" * 5000 + "}"),
        ("shelly/x/rod", "1_0"),
        ("shelly/x/rod", deep),
        ("W/abc123/switch/815/Devices/1/S2/Auto", deep),
        ("W/abc123/switch/815/Devices/" + "9" * 5000 + "/S2/Auto", '{"value": 1}'),
    ):
        await publish(broker, topic, payload)
    await publish(broker, "ebus/tank", json.dumps({"value": 42}))
    await wait_until(lambda: seen.values.get("tank") == 42, what="a value after the garbage")
    assert mqtt.connections == 1 and "rod" not in seen.values and not seen.autos
    assert "tank: ignored a payload on ebus/tank: nested deeper than 32 levels" in caplog.text
    assert "true is not a number" in caplog.text
    assert "(5000 characters) is too long for a number" in caplog.text
    assert '"1_0" is not a number' in caplog.text
    assert "Exceeds the limit" not in caplog.text
