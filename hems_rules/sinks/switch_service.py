"""com.victronenergy.switch.hems: what the engine does, and the Auto switch per consumer.

Per consumer n (stable numbers, see devices.py): writable `/Devices/<n>/S2/Auto` (0/1,
kept in /Settings/HEMS/Auto/<id> so it survives a restart) and read-only `Name`,
`State`, `Power`, `Priority`, `Reason`. The engine's status is under `/Hems/`.
The DeviceInstance comes from ClassAndVrmInstance, preferring 815.
"""

from __future__ import annotations

import logging
from typing import Self

from dbus_fast import Variant

from hems_rules.core.inputs import Inputs
from hems_rules.core.model import CycleResult
from hems_rules.dbus.service import BusService
from hems_rules.dbus.settings import Setting, SettingsClient, follow_instance, instance_of
from hems_rules.dbus.variants import Value
from hems_rules.ruleset.rules import PHASES, RuleSet
from hems_rules.sinks.device_numbers import DeviceNumbers
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

SERVICE = "com.victronenergy.switch.hems"
INSTANCE_SETTING = "/Settings/Devices/hems_switch/ClassAndVrmInstance"
STATES = {"off": 0, "on": 1, "unavailable": 2}


def auto_setting(consumer_id: str) -> Setting:
    return Setting(
        f"/Settings/HEMS/Auto/{consumer_id}", Variant("i", 1), Variant("i", 0), Variant("i", 1)
    )


async def device_instance(settings: SettingsClient, path: str, wanted: str) -> int:
    """The instance localsettings gives us for `class:preferred`."""
    values = await settings.add([Setting(path, Variant("s", wanted))])
    allocated = str(values[path])
    return instance_of(allocated)


class SwitchService:
    def __init__(
        self,
        settings: SettingsClient,
        inputs: Inputs,
        numbers: DeviceNumbers,
        rules: RuleSet,
        address: str | None = None,
    ) -> None:
        self.settings = settings
        self.inputs = inputs
        self.numbers = numbers
        self.service = BusService(SERVICE, address)
        self._rules = rules
        self._tasks = Tasks("switch service")

    async def __aenter__(self) -> Self:
        await self.start(self._rules)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        await self.service.close()

    async def start(self, rules: RuleSet) -> None:
        instance = await device_instance(self.settings, INSTANCE_SETTING, "switch:815")
        service = self.service
        service.add_mandatory("hems-rules", instance, "hems-rules", "HEMS")
        service.add("/State", 0x100)
        service.add("/Hems/Active", 0)
        service.add("/Hems/BatteryReservation", None, kind=float, unit="W")
        service.add("/Hems/BatteryReservationState", "", kind=str)
        service.add("/Hems/BatteryReservationError", "", kind=str)
        for phase in PHASES:
            service.add(f"/Hems/Surplus/{phase}", None, kind=float, unit="W")
        service.add("/Hems/Surplus/Dc", None, kind=float, unit="W")
        service.add("/Hems/LoopTime", 0.0, unit="ms")
        service.add("/Hems/RulesError", "", kind=str)
        service.add("/Hems/ConfigError", "", kind=str)
        await self._add_devices(rules)
        await service.register()
        await follow_instance(self.settings, INSTANCE_SETTING, service, self._tasks)
        log.info("%s registered as switch instance %d", SERVICE, instance)

    async def _add_devices(self, rules: RuleSet) -> None:
        numbers = self.numbers.sync(rules.consumers)
        autos = await self.settings.add([auto_setting(c.id) for c in rules.consumers])
        present = {p.split("/")[2] for p in self.service.items if p.startswith("/Devices/")}
        for consumer in rules.consumers:
            n = numbers[consumer.id]
            auto = autos[auto_setting(consumer.id).path]
            if auto not in (0, 1):  # an invalid or odd setting is not a 1: not controlled
                log.warning("%s: Auto setting holds %r, read as 0", consumer.id, auto)
                auto = 0
            self.inputs.set_auto(consumer.id, int(auto))
            prefix = f"/Devices/{n}"
            present.discard(str(n))
            if f"{prefix}/S2/Auto" in self.service.items:
                self.service.set(f"{prefix}/Name", consumer.name)
                self.service.set(f"{prefix}/Priority", consumer.priority)
                continue
            self.service.add(
                f"{prefix}/S2/Auto",
                self.inputs.auto.get(consumer.id, 1),
                kind=int,
                writable=True,
                on_set=self._auto_written,
            )
            self.service.add(f"{prefix}/Name", consumer.name)
            self.service.add(f"{prefix}/State", None, kind=int)
            self.service.add(f"{prefix}/Power", None, kind=float, unit="W")
            self.service.add(f"{prefix}/Priority", consumer.priority)
            self.service.add(f"{prefix}/Reason", "", kind=str)
        for gone in present:
            for leaf in ("S2/Auto", "Name", "State", "Power", "Priority", "Reason"):
                self.service.remove(f"/Devices/{gone}/{leaf}")

    def use_rules(self, rules: RuleSet) -> None:
        self._tasks.spawn(self._add_devices(rules), name="switch-devices")

    def _auto_written(self, path: str, value: Value) -> bool:
        """An Auto write from VRM, Node-RED or MQTT (via flashmq)."""
        if value not in (0, 1):
            return False
        consumer_id = self.numbers.consumer(int(path.split("/")[2]))
        if consumer_id is None:
            return False
        assert isinstance(value, int)
        self.inputs.set_auto(consumer_id, value)
        log.info("%s: Auto set to %d", consumer_id, value)
        self._tasks.spawn(
            self.settings.set(auto_setting(consumer_id).path, Variant("i", value)),
            name=f"persist-auto-{consumer_id}",
        )
        return True

    def set_auto(self, number: int, value: int) -> bool:
        """The same write arriving over MQTT without dbus-flashmq."""
        path = f"/Devices/{number}/S2/Auto"
        if path not in self.service.items or not self._auto_written(path, value):
            return False
        self.service.set(path, value)
        return True

    def show_rules_error(self, error: str) -> None:
        """The hot reload's complaint, or "" once the rules load again."""
        self.service.set("/Hems/RulesError", error)

    def show_config_error(self, text: str) -> None:
        """The configuration faults devices report (a wrong password...), or "" (health.py)."""
        self.service.set("/Hems/ConfigError", text)

    def publish(self, result: CycleResult) -> None:
        plan = result.plan
        s = self.service
        s.set("/Hems/Active", int(plan.active))
        s.set("/Hems/BatteryReservation", plan.reservation)
        s.set("/Hems/BatteryReservationState", plan.reservation_state)
        s.set("/Hems/BatteryReservationError", plan.reservation_error or "")
        for phase in PHASES:
            s.set(f"/Hems/Surplus/{phase}", plan.surplus.get(phase) if plan.surplus else None)
        s.set("/Hems/Surplus/Dc", plan.dc_pool)
        s.set("/Hems/LoopTime", round(result.loop_time * 1000, 2))
        for decision in plan.decisions:
            number = self.numbers.numbers.get(decision.consumer)
            prefix = f"/Devices/{number}"
            if f"{prefix}/State" not in s.items:
                continue  # a consumer added by a reload, its paths are on their way
            fact = result.snapshot.devices.get(decision.consumer)
            measured = fact.power if fact is not None and fact.on else None
            s.set(f"{prefix}/State", STATES[decision.state])
            s.set(f"{prefix}/Power", measured if measured is not None else decision.power)
            s.set(f"{prefix}/Reason", decision.reason)
            s.set(f"{prefix}/S2/Auto", result.snapshot.auto.get(decision.consumer, 1))
