"""MQTT variables against a real mosquitto: values, garbage, a broker restart, Auto writes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from hems_rules.demo.broker import Mosquitto, mosquitto
from hems_rules.errors import ConfigurationError
from hems_rules.health import Faults
from hems_rules.ruleset.rules import AutoWrites, MqttBroker, MqttSource
from hems_rules.sources.mqtt import MqttVariables
from tests.conftest import wait_until

pytestmark = pytest.mark.skipif(
    mosquitto() is None,
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


async def test_values_become_unknown_when_the_broker_stays_away(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 3: a lost broker must not freeze the last values (HTTP: 3 failed polls)."""
    caplog.set_level(logging.INFO)
    seen = Seen()
    variables = {"tank": MqttSource(topic="ebus/tank", json="value")}
    mqtt = MqttVariables(
        MqttBroker("127.0.0.1", broker.port), variables, seen.variable, max_backoff=0.2, grace=1.0
    )
    task = asyncio.create_task(mqtt.run())
    try:
        await asyncio.wait_for(mqtt.connected.wait(), 5)
        await publish(broker, "ebus/tank", json.dumps({"value": 61}), retain=True)
        await wait_until(lambda: seen.values.get("tank") == 61)
        broker.stop()
        await wait_until(lambda: not mqtt.connected.is_set(), what="the loss")
        assert seen.values["tank"] == 61  # within the grace a restart goes unnoticed
        await wait_until(lambda: seen.values["tank"] is None, what="unknown after the grace")
        await wait_until(lambda: mqtt.health.failures >= 3, what="several retries")
        broker.start()
        await publish(broker, "ebus/tank", json.dumps({"value": 64}), retain=True)
        await wait_until(lambda: seen.values["tank"] == 64, timeout=10, what="back")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    told = [r.getMessage() for r in caplog.records if r.name == "hems_rules.sources.mqtt"]
    lost = [m for m in told if "unavailable" in m]
    back = [m for m in told if "available again" in m]
    assert len(lost) == 1 and len(back) == 1, told


async def test_a_refused_login_is_a_configuration_fault(tmp_path: Path) -> None:
    server = Mosquitto(tmp_path, anonymous=False)
    server.start()
    faults = Faults()
    try:
        mqtt = MqttVariables(
            MqttBroker("127.0.0.1", server.port, username="hems", password="wrong"),
            {"tank": MqttSource(topic="ebus/tank")},
            Seen().variable,
            max_backoff=0.2,
            faults=faults,
        )
        task = asyncio.create_task(mqtt.run())
        await wait_until(lambda: faults.text != "", what="the fault")
        assert "refused the login" in faults.text
        assert isinstance(mqtt.health.error, ConfigurationError)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert faults.text == ""
    finally:
        server.stop()
