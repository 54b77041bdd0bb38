"""The MQTT and HTTP variable sources of the rules in force, restarted when they change.

Each source is a worker that must keep running: one that fails or ends is logged with
its traceback and started again with backoff (see tasks.py), so a variable never
freezes because its task died.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Self

from hems_rules.core.inputs import Inputs
from hems_rules.health import Faults
from hems_rules.ruleset.rules import HttpSource, MqttBroker, MqttSource, RuleSet
from hems_rules.tasks import Tasks

if TYPE_CHECKING:
    import aiohttp

    from hems_rules.sources.mqtt import AutoReport

log = logging.getLogger(__name__)

# Where site.mqtt is reached; None: not at all (the demo without a broker of its own).
BrokerAddress = Callable[[MqttBroker], tuple[str, int] | None]


def broker_as_configured(broker: MqttBroker) -> tuple[str, int] | None:
    return broker.host, broker.port


class VariableSources:
    """An async context manager: the sources run while it is open."""

    def __init__(
        self,
        inputs: Inputs,
        rules: RuleSet,
        on_auto: AutoReport,
        clock: Callable[[], float] = time.monotonic,
        *,
        faults: Faults | None = None,
        broker_address: BrokerAddress = broker_as_configured,
        http: bool = True,
    ) -> None:
        self.inputs = inputs
        self._rules = rules
        self._on_auto = on_auto
        self._clock = clock
        self._faults = faults
        self._broker_address = broker_address
        self._http = http
        self._session: aiohttp.ClientSession | None = None  # with the first HTTP source
        self._open = False
        self._tasks = Tasks("variable sources")
        self._key: object = None

    async def __aenter__(self) -> Self:
        self._open = True
        self.use_rules(self._rules)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        if self._session is not None:
            await self._session.close()

    @property
    def running(self) -> list[str]:
        return self._tasks.names

    def report(self, name: str, value: float | None) -> None:
        self.inputs.set_variable(name, value, self._clock())

    def use_rules(self, rules: RuleSet) -> None:
        """Run the sources of `rules`; those of the previous rules are cancelled."""
        assert self._open, "use VariableSources as an async context manager"
        key = (dict(rules.variables), rules.site.mqtt)
        if key == self._key:
            return
        self._key = key
        self._tasks.cancel()
        mqtt = {n: v.source for n, v in rules.variables.items() if isinstance(v.source, MqttSource)}
        broker = rules.site.mqtt
        address = None if broker is None else self._broker_address(broker)
        if broker is not None and address is not None and (mqtt or broker.auto_writes):
            broker = dataclasses.replace(broker, host=address[0], port=address[1])
            # aiomqtt and paho are loaded only where MQTT is used.
            from hems_rules.sources.mqtt import MqttVariables  # noqa: PLC0415

            source = MqttVariables(broker, mqtt, self.report, self._on_auto, faults=self._faults)
            self._tasks.keep_running("mqtt", source.run)
        elif mqtt and broker is None:
            log.warning("MQTT variables %s need site.mqtt", ", ".join(mqtt))
        http = {n: v.source for n, v in rules.variables.items() if isinstance(v.source, HttpSource)}
        if self._http and http:
            # aiohttp's client is loaded only where HTTP is used (or a Shelly: relays.py).
            import aiohttp  # noqa: PLC0415

            from hems_rules.sources.http import HttpPoller  # noqa: PLC0415

            if self._session is None:
                self._session = aiohttp.ClientSession()
            for name, polled in http.items():
                poller = HttpPoller(name, polled, self._session, self.report, faults=self._faults)
                self._tasks.keep_running(f"http-{name}", poller.run)
