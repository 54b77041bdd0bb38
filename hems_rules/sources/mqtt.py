"""MQTT variables (and, optionally, Auto writes) from a broker that may restart.

One connection subscribes every variable topic. When the broker goes away the source
reconnects with backoff and subscribes again; the outage is logged once and so is the
recovery. A variable older than its `stale_after` reads as unknown (see Inputs), so a
silent topic is never mistaken for a steady value.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping

import aiomqtt

from hems_rules.ruleset.rules import AutoWrites, MqttBroker, MqttSource
from hems_rules.sources.payloads import extract, load_json

log = logging.getLogger(__name__)

VariableReport = Callable[[str, float | None], None]
AutoReport = Callable[[int, int], bool]  # (device number, value) -> accepted
_AUTO_PATH = re.compile(r"/Devices/([0-9]{1,9})/S2/Auto$")


class MqttVariables:
    def __init__(
        self,
        broker: MqttBroker,
        variables: Mapping[str, MqttSource],
        report: VariableReport,
        auto: AutoReport | None = None,
        *,
        keepalive: int = 10,
        max_backoff: float = 30.0,
    ) -> None:
        self.broker = broker
        self.variables = dict(variables)
        self._report = report
        self._auto = auto if broker.auto_writes is not None else None
        self._keepalive = keepalive
        self._max_backoff = max_backoff
        self.connected = asyncio.Event()
        self.connections = 0

    def _topics(self) -> list[str]:
        topics = sorted({v.topic for v in self.variables.values()})
        if self._auto is not None and self.broker.auto_writes is not None:
            topics.append(self.broker.auto_writes.topic)
        return topics

    async def run(self) -> None:
        backoff = 0.5
        failing = False
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    username=self.broker.username,
                    password=self.broker.password,
                    keepalive=self._keepalive,
                    identifier=None,
                ) as client:
                    for topic in self._topics():
                        await client.subscribe(topic, qos=1)
                    self.connections += 1
                    self.connected.set()
                    log.info("MQTT connected to %s:%s", self.broker.host, self.broker.port)
                    failing, backoff = False, 0.5
                    async for message in client.messages:
                        self._handle(str(message.topic), message.payload)
            except aiomqtt.MqttError as err:
                self.connected.clear()
                if not failing:
                    log.warning("MQTT %s:%s lost: %s", self.broker.host, self.broker.port, err)
                failing = True
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)

    def _handle(self, topic: str, payload: object) -> None:
        raw = bytes(payload) if isinstance(payload, (bytes, bytearray)) else str(payload)
        writes = self.broker.auto_writes
        if (
            self._auto is not None
            and writes is not None
            and aiomqtt.Topic(topic).matches(writes.topic)
        ):
            self._handle_auto(topic, raw, writes)
            return
        for name, source in self.variables.items():
            if not aiomqtt.Topic(topic).matches(source.topic):
                continue
            try:
                value = extract(raw, source.json)
            except ValueError as err:
                log.warning("%s: ignored a payload on %s: %s", name, topic, err)
                continue
            self._report(name, value)

    def _handle_auto(self, topic: str, raw: bytes | str, writes: AutoWrites) -> None:
        assert self._auto is not None
        match = _AUTO_PATH.search(topic)
        try:
            data = load_json(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        except ValueError:
            data = None
        value = data.get("value") if match and isinstance(data, dict) else None
        if match is None or value is None or not (isinstance(value, bool) or value in (0, 1)):
            log.warning('ignored Auto write on %s: payload must be {"value": 0|1}', topic)
            return
        if not self._auto(int(match.group(1)), int(value)):
            log.warning("ignored Auto write on %s: no such device", topic)
