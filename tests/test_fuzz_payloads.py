"""Fuzz: MQTT and HTTP payloads end in a number, None or a PayloadError, and MQTT input lives.

Payloads are JSON of any shape (NaN, booleans, huge integers, deep nesting), text that
looks like numbers (`1_0`, `1e999`, 5000 digits) and arbitrary bytes. The parser must
answer each within a time bound with a finite number within ±1e15, None, or a
PayloadError; against a real broker the MQTT source must keep reading after them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Iterator

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.demo.broker import Mosquitto, mosquitto
from hems_rules.numbers import LIMIT
from hems_rules.ruleset.rules import AutoWrites, MqttBroker, MqttSource
from hems_rules.sources.mqtt import MqttVariables
from hems_rules.sources.payloads import PayloadError, extract
from tests.conftest import wait_until

TIME_BOUND = 1.0

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["value", "a", "0", "tC", ""]), children, max_size=4)
    ),
    max_leaves=25,
)
numberish = st.from_regex(r"\A[ +-]?[0-9_]{0,60}(\.[0-9_]{0,20})?([eE][+-]?[0-9]{0,5})?\s?\Z")
deep = st.integers(min_value=1, max_value=5000).flatmap(
    lambda n: st.sampled_from(['{"value": ' + "[" * n + "]" * n + "}", "[" * n + "]" * n])
)
payloads = st.one_of(
    json_values.map(json.dumps),
    st.builds(lambda v: json.dumps({"value": v}), json_values),
    numberish,
    deep,
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "true", "null", "9" * 5000, "0x10", "\ufeff1"]
    ),
    st.text(max_size=40),
    st.binary(max_size=40),
)
paths = st.one_of(st.none(), st.sampled_from(["value", "a.0", "0", "value.a.0", "tC"]), st.text())


@settings(max_examples=400, deadline=None, derandomize=True)
@given(payloads, paths)
def test_every_payload_is_a_number_none_or_a_payload_error(
    payload: str | bytes, path: str | None
) -> None:
    started = time.monotonic()
    try:
        value = extract(payload, path)
    except PayloadError as err:
        assert str(err) and "Exceeds the limit" not in str(err)
    else:
        assert value is None or (math.isfinite(value) and abs(value) <= LIMIT)
    assert time.monotonic() - started < TIME_BOUND


needs_mosquitto = pytest.mark.skipif(
    mosquitto() is None, reason="mosquitto is not installed (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("broker"))
    server.start()
    yield server
    server.stop()


@needs_mosquitto
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(payloads, min_size=40, max_size=40))
async def test_mqtt_input_outlives_any_payloads(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture, batch: list[str | bytes]
) -> None:
    caplog.set_level(logging.WARNING)
    seen: dict[str, float | None] = {}
    autos: list[tuple[int, int]] = []

    def auto(number: int, value: int) -> bool:
        autos.append((number, value))
        return True

    mqtt = MqttVariables(
        MqttBroker("127.0.0.1", broker.port, auto_writes=AutoWrites("fuzz", 815)),
        {"tank": MqttSource(topic="fuzz/tank", json="value"), "raw": MqttSource("fuzz/raw")},
        seen.__setitem__,
        auto,
        max_backoff=0.2,
    )
    task = asyncio.create_task(mqtt.run())
    try:
        await asyncio.wait_for(mqtt.connected.wait(), 5)
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for payload in batch:
                for topic in ("fuzz/tank", "fuzz/raw", "W/fuzz/switch/815/Devices/1/S2/Auto"):
                    await client.publish(topic, payload, qos=1)
            await client.publish("fuzz/tank", json.dumps({"value": 42.5}), qos=1)
        await wait_until(lambda: seen.get("tank") == 42.5, timeout=10, what="the last value")
        assert not task.done() and mqtt.connections == 1
        assert all(v is None or (math.isfinite(v) and abs(v) <= LIMIT) for v in seen.values())
        assert all(value in (0, 1) for _, value in autos)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
