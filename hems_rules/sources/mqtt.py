"""MQTT variables (and, optionally, Auto writes) from a broker that may restart.

One connection subscribes every variable topic. When the broker goes away the source
reconnects with backoff and subscribes again; the outage is logged once and so is the
recovery (health.py). A refused login is a configuration fault (/Hems/ConfigError).

A value is never passed off as fresh while nothing can refresh it: once the broker has
been gone for `LOST_GRACE` seconds every variable of this source reads as unknown until
the broker sends it again, as HTTP values do after 3 failed polls. A variable older
than its `stale_after` reads as unknown too (see Inputs), so a silent topic is never
mistaken for a steady value either.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping

import aiomqtt

from hems_rules.errors import ConfigurationError, TransientError
from hems_rules.health import Faults, Health
from hems_rules.ruleset.rules import AutoWrites, MqttBroker, MqttSource
from hems_rules.sources.payloads import extract, load_json

log = logging.getLogger(__name__)

VariableReport = Callable[[str, float | None], None]
AutoReport = Callable[[int, int], bool]  # (device number, value) -> accepted
_AUTO_PATH = re.compile(r"/Devices/([0-9]{1,9})/S2/Auto$")

# Seconds without a broker before its values become unknown: long enough for a broker
# restart (FlashMQ on a GX, mosquitto) to pass unnoticed, short next to the minutes a
# heating decision lasts.
LOST_GRACE = 60.0
# CONNACK codes that retrying cannot fix: MQTT 3.1.1's 4 and 5, MQTT 5's 134 and 135.
_REFUSED_LOGIN = frozenset({4, 5, 134, 135})


class BrokerUnreachableError(TransientError):
    """The broker cannot be reached or dropped the connection: retried."""

    reason = "the MQTT broker does not answer"


class BrokerLoginError(ConfigurationError):
    """The broker refused the username or password of site.mqtt."""

    reason = "the MQTT broker refused the login"


def broker_error(err: aiomqtt.MqttError) -> TransientError | ConfigurationError:
    """An aiomqtt error, split by who must act."""
    rc = getattr(err, "rc", None)
    code = getattr(rc, "value", rc)
    if isinstance(code, int) and code in _REFUSED_LOGIN:
        return BrokerLoginError(f"the broker refused the login: {err}")
    return BrokerUnreachableError(str(err) or type(err).__name__)


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
        grace: float = LOST_GRACE,
        faults: Faults | None = None,
    ) -> None:
        self.broker = broker
        self.variables = dict(variables)
        self._report = report
        self._auto = auto if broker.auto_writes is not None else None
        self._keepalive = keepalive
        self._max_backoff = max_backoff
        self._grace = grace
        self._forget: asyncio.TimerHandle | None = None
        self.health = Health(f"MQTT broker {broker.host}:{broker.port}", log, faults)
        self.connected = asyncio.Event()
        self.connections = 0

    def _topics(self) -> list[str]:
        topics = sorted({v.topic for v in self.variables.values()})
        if self._auto is not None and self.broker.auto_writes is not None:
            topics.append(self.broker.auto_writes.topic)
        return topics

    async def run(self) -> None:
        backoff = 0.5
        try:
            while True:
                connections = self.connections
                error: BaseException
                try:
                    await self._session()
                    error = BrokerUnreachableError("the broker ended the session")
                except aiomqtt.MqttError as err:
                    error = broker_error(err)
                except Exception as err:
                    # Not an MQTT failure but a bug: logged once with its traceback, and
                    # the source goes on rather than leave its values frozen.
                    error = err
                self._lost(error)
                if self.connections != connections:
                    backoff = 0.5
                await asyncio.sleep(backoff)
                backoff = min(self._max_backoff, backoff * 2)
        finally:
            if self._forget is not None:
                self._forget.cancel()
            self.health.close()

    async def _session(self) -> None:
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
            if self._forget is not None:
                self._forget.cancel()
                self._forget = None
            if not self.health.ok():
                log.info("MQTT connected to %s:%s", self.broker.host, self.broker.port)
            async for message in client.messages:
                self._handle(str(message.topic), message.payload)

    def _lost(self, error: BaseException) -> None:
        """The connection failed or could not be made: values go unknown after the grace."""
        self.connected.clear()
        self.health.failed(error)
        if self._forget is None and self.variables:
            self._forget = asyncio.get_running_loop().call_later(self._grace, self._unknown)

    def _unknown(self) -> None:
        log.warning(
            "MQTT variables %s are unknown: no broker for %g s",
            ", ".join(sorted(self.variables)),
            self._grace,
        )
        for name in self.variables:
            self._report(name, None)

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
