"""Battery services that make VRM tell the engine's story at a glance.

VRM and the GX lists show battery services; these are display-only (never a DVCC
charge-control path such as /Info/MaxChargeVoltage, so they can never steer chargers).

- `com.victronenergy.battery.hems_reservation`: CustomName "HEMS reservation 1500 W (OK)"
  ("HEMS reservation unknown (ERROR)" when it cannot be computed); /Dc/0/Power is what
  the real battery is charging with; /Soc is the share of the reservation the battery
  actually gets (100 % when the reservation is met or zero, invalid while the
  reservation or the battery's power is unknown: never "met" without knowing).
- `com.victronenergy.battery.hems_<id>` for each consumer with `vrm: true`:
  CustomName "<name>: on|off|unavailable"; /Dc/0/Power is the power it draws
  (measured when the relay reports it); /Soc is 100 while on, 0 while off.

Unknown readings are published as invalid, never as 0.
"""

from __future__ import annotations

import logging
from typing import Self

from hems_rules.core.model import CycleResult
from hems_rules.dbus.client import Watch
from hems_rules.dbus.service import BusService
from hems_rules.dbus.settings import SettingsClient, device_instance, follow_instance
from hems_rules.numbers import number
from hems_rules.ruleset.rules import RuleSet
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

PREFIX = "com.victronenergy.battery.hems_"
FIRST_INSTANCE = 200


def _battery(name: str, address: str | None, instance: int, product: str) -> BusService:
    service = BusService(PREFIX + name, address)
    service.add_mandatory("hems-rules", instance, product, "HEMS")
    # Read-only, the name included: each cycle rewrites them, so a write taken (SetValue
    # 0) would be undone a moment later; refused, the GX's UI and Node-RED know at once.
    service.add("/CustomName", product, kind=str)
    service.add("/Soc", 0.0, kind=float, unit="%")
    service.add("/Dc/0/Power", 0.0, kind=float, unit="W")
    service.add("/Dc/0/Voltage", 0.0, kind=float, unit="V")
    service.add("/Dc/0/Current", 0.0, kind=float, unit="A")
    return service


class VrmBatteries:
    def __init__(self, settings: SettingsClient, rules: RuleSet, address: str | None = None):
        self.settings = settings
        self.address = address
        self.reservation: BusService | None = None
        self.consumers: dict[str, BusService] = {}
        self._names: dict[str, str] = {}
        self._rules = rules
        self._instances: dict[str, Watch] = {}  # each service's ClassAndVrmInstance watch
        self._tasks = Tasks("VRM battery view")

    async def __aenter__(self) -> Self:
        await self.start(self._rules)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        await self.close()

    async def _service(self, name: str, offset: int, product: str) -> BusService:
        """A registered battery service whose instance follows the GX's device list."""
        path = f"/Settings/Devices/hems_{name}/ClassAndVrmInstance"
        wanted = f"battery:{FIRST_INSTANCE + offset}"
        service = _battery(
            name, self.address, await device_instance(self.settings, path, wanted), product
        )
        await service.register()
        self._instances[name] = await follow_instance(self.settings, path, service, self._tasks)
        return service

    async def start(self, rules: RuleSet) -> None:
        self.reservation = await self._service("reservation", 0, "HEMS reservation")
        await self.sync(rules)

    def use_rules(self, rules: RuleSet) -> None:
        self._tasks.spawn(self.sync(rules), name="vrm-battery-sync")

    async def sync(self, rules: RuleSet) -> None:
        wanted = {c.id: c for c in rules.consumers if c.vrm}
        self._names = {i: c.name for i, c in wanted.items()}
        for consumer_id in [i for i in self.consumers if i not in wanted]:
            self._instances.pop(consumer_id).close()
            await self.consumers.pop(consumer_id).close()
        for offset, consumer in enumerate(wanted.values(), start=1):
            if consumer.id not in self.consumers:
                self.consumers[consumer.id] = await self._service(
                    consumer.id, offset, consumer.name
                )

    async def close(self) -> None:
        for service in [self.reservation, *self.consumers.values()]:
            if service is not None:
                await service.close()

    def publish(self, result: CycleResult) -> None:
        plan = result.plan
        system = result.snapshot.system
        volts = number(system.get("/Dc/Battery/Voltage"))
        charging = number(system.get("/Dc/Battery/Power"))
        if self.reservation is not None:
            r = self.reservation
            reserved = plan.reservation
            watts = "unknown" if reserved is None else f"{reserved:.0f} W"
            r.set("/CustomName", f"HEMS reservation {watts} ({plan.reservation_state})")
            r.set("/Dc/0/Power", charging)
            r.set("/Dc/0/Voltage", volts)
            r.set(
                "/Dc/0/Current",
                round(charging / volts, 2) if charging is not None and volts else None,
            )
            share: float | None = None
            if reserved is not None and reserved <= 0:
                share = 100.0  # nothing to reserve: met whatever the battery does
            elif reserved is not None and charging is not None:
                share = round(min(100.0, max(0.0, charging / reserved * 100)), 1)
            r.set("/Soc", share)
        for decision in plan.decisions:
            service = self.consumers.get(decision.consumer)
            if service is None:
                continue
            fact = result.snapshot.devices.get(decision.consumer)
            drawn = (
                fact.power
                if fact is not None and fact.on and fact.power is not None
                else decision.power
            )
            name = self._names.get(decision.consumer, decision.consumer)
            service.set("/CustomName", f"{name}: {decision.state}")
            service.set("/Dc/0/Power", float(drawn))
            service.set("/Dc/0/Voltage", volts)
            service.set("/Soc", 100.0 if decision.state == "on" else 0.0)
