"""The variable sources of the rules in force: supervised, restarted, following reloads."""

from __future__ import annotations

import json
from pathlib import Path

from hems_rules.core.inputs import Inputs
from hems_rules.demo.broker import Mosquitto
from hems_rules.sources.variables import VariableSources
from tests.conftest import rules_from, wait_until
from tests.test_mqtt import broker, publish  # noqa: F401  (the broker fixture)
from tests.test_mqtt import pytestmark as needs_mosquitto

pytestmark = needs_mosquitto

RULES = """\
site: {{phases: 1, mqtt: {{host: 127.0.0.1, port: {port}}}}}
variables:
  tank: {{mqtt: {{topic: ebus/tank, json: value}}}}
consumers: []
"""


async def test_mqtt_input_comes_back_after_its_task_failed(
    broker: Mosquitto,  # noqa: F811
    tmp_path: Path,
) -> None:
    rules = rules_from(RULES.format(port=broker.port))
    inputs = Inputs(rules)
    async with VariableSources(inputs, rules, lambda n, v: False, clock=lambda: 0.0) as sources:
        await wait_until(lambda: sources.running == ["mqtt"], what="the MQTT worker")
        # Retained: the worker may subscribe only after this publish.
        await publish(broker, "ebus/tank", json.dumps({"value": 55}), retain=True)
        await wait_until(lambda: inputs.variable("tank", 0.0) == 55.0, what="a first value")
        failures: list[float | None] = []
        store = inputs.set_variable

        def failing_once(name: str, value: float | None, at: float) -> None:
            if not failures:
                failures.append(value)
                raise RuntimeError("a bug while handling a message")
            store(name, value, at)

        inputs.set_variable = failing_once  # type: ignore[method-assign]
        await publish(broker, "ebus/tank", json.dumps({"value": 60}))
        await wait_until(lambda: failures == [60.0], what="the failing message")
        await publish(broker, "ebus/tank", json.dumps({"value": 71}), retain=True)
        await wait_until(
            lambda: inputs.variable("tank", 0.0) == 71.0, timeout=10, what="MQTT input back"
        )
