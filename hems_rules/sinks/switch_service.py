"""com.victronenergy.switch.hems: what the engine does, and every consumer in the GX's
own switch pane.

Per consumer n (numbers are never reused, see device_numbers.py):

- `/Devices/<n>/`: writable `S2/Auto` (0/1) and read-only `Name`, `State`, `Power`,
  `Priority`, `Reason`, `RuntimeToday` (s): the surface MQTT clients, Node-RED and VRM
  widgets use.
- `/SwitchableOutput/<n>/`: what gui-v2 (on the GX, in the local console and in VRM's
  remote console) shows as a three-state switch with On, Off and Auto buttons
  (`Settings/Type` 9). `Auto` is the same value as `/Devices/<n>/S2/Auto`: a write to
  either changes both. `State` is the relay as it reports itself; only while Auto is 0
  does a write switch it, by hand, through the same relay worker the engine uses (gui-v2
  refuses On and Off itself while Auto is on). `Status` is 0x00 off, 0x09 on, 0x08
  while unavailable. `Settings/CustomName`, `Group` and `ShowUIControl` are the user's.

Auto and the user's settings are kept per consumer id in localsettings
(`/Settings/HEMS/<Leaf>/<id>`), the numbers in `/Settings/HEMS/DeviceNumbers`, so all of
them survive reloads and restarts. The engine's status is under `/Hems/`. The
DeviceInstance comes from ClassAndVrmInstance, preferring 815.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from dbus_fast import Variant

from hems_rules.core.inputs import Inputs
from hems_rules.core.model import CycleResult
from hems_rules.dbus.service import BusService
from hems_rules.dbus.settings import Setting, SettingsClient, device_instance, follow_instance
from hems_rules.dbus.variants import Value
from hems_rules.ruleset.rules import HEMS_SWITCH_SERVICE, PHASES, Consumer, RuleSet
from hems_rules.sinks.device_numbers import DeviceNumbers
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

SERVICE = HEMS_SWITCH_SERVICE
INSTANCE_SETTING = "/Settings/Devices/hems_switch/ClassAndVrmInstance"
NUMBERS_SETTING = "/Settings/HEMS/DeviceNumbers"
DEVICE_NAME_SETTING = "/Settings/Devices/hems_switch/CustomName"
STATES = {"off": 0, "on": 1, "unavailable": 2}
STATUS_OFF, STATUS_ON, STATUS_FAULT = 0x00, 0x09, 0x08
THREE_STATE = 9  # gui-v2's On / Off / Auto switch
MANUAL = 2  # never 6: that is the GX's own Opportunity Loads
NAME_BYTES = 32  # what gui-v2 and dbus-shelly allow for CustomName and Group

# Switch by hand: the same relay worker the engine commands.
Command = Callable[[str, bool], None]


def _short_text(value: Value) -> bool:
    return isinstance(value, str) and len(value.encode()) <= NAME_BYTES


def _show_ui(value: Value) -> bool:
    """0 hidden, bit 0 everywhere, bit 1 on the GX only, bit 2 in VRM only."""
    return isinstance(value, int) and 0 <= value <= 6


@dataclass(frozen=True)
class UserSetting:
    """A per-consumer setting the user changes in the switch pane, kept in localsettings."""

    leaf: str  # under /SwitchableOutput/<n>/Settings/
    default: Variant
    valid: Callable[[Value], bool]
    minimum: Variant | None = None
    maximum: Variant | None = None

    def setting(self, consumer_id: str) -> Setting:
        return Setting(
            f"/Settings/HEMS/{self.leaf}/{consumer_id}", self.default, self.minimum, self.maximum
        )


AUTO = UserSetting("Auto", Variant("i", 1), lambda v: v in (0, 1), Variant("i", 0), Variant("i", 1))
USER_SETTINGS = {
    s.leaf: s
    for s in (
        UserSetting("CustomName", Variant("s", ""), _short_text),
        UserSetting("Group", Variant("s", "HEMS"), _short_text),
        UserSetting("ShowUIControl", Variant("i", 1), _show_ui, Variant("i", 0), Variant("i", 6)),
    )
}


def _number(path: str) -> int:
    """n of /Devices/<n>/... and /SwitchableOutput/<n>/..."""
    return int(path.split("/")[2])


class SwitchService:
    def __init__(
        self,
        settings: SettingsClient,
        inputs: Inputs,
        numbers: DeviceNumbers,
        rules: RuleSet,
        *,
        address: str | None = None,
        command: Command | None = None,
    ) -> None:
        self.settings = settings
        self.inputs = inputs
        self.numbers = numbers
        self.service = BusService(SERVICE, address)
        self._rules = rules
        self._command = command
        self._lock = asyncio.Lock()  # one reload's paths at a time
        self._tasks = Tasks("switch service")

    async def __aenter__(self) -> Self:
        await self.start(self._rules)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._tasks.aclose()
        await self.service.close()

    async def start(self, rules: RuleSet) -> None:
        instance = await device_instance(self.settings, INSTANCE_SETTING, "switch:815")
        stored = await self.settings.add(
            [
                Setting(NUMBERS_SETTING, Variant("s", "{}")),
                Setting(DEVICE_NAME_SETTING, Variant("s", "")),
            ]
        )
        self.numbers.restore(str(stored[NUMBERS_SETTING] or "{}"))
        service = self.service
        service.add_mandatory("hems-rules", instance, "hems-rules", "HEMS")
        # The device's own name in the GX's lists, and before its rows in the switch pane.
        name = stored[DEVICE_NAME_SETTING]
        service.add(
            "/CustomName",
            name if isinstance(name, str) else "",
            kind=str,
            writable=True,
            on_set=self._device_named,
        )
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

    def use_rules(self, rules: RuleSet) -> None:
        self._tasks.spawn(self._add_devices(rules), name="switch-devices")

    async def _add_devices(self, rules: RuleSet) -> None:
        async with self._lock:
            if self.numbers.sync(rules.consumers):
                await self._persist(NUMBERS_SETTING, Variant("s", self.numbers.dump()))
            wanted = [AUTO, *USER_SETTINGS.values()]
            stored = await self.settings.add(
                [s.setting(c.id) for c in rules.consumers for s in wanted]
            )
            numbers = self.numbers.numbers
            for consumer in rules.consumers:
                values = {s.leaf: stored[s.setting(consumer.id).path] for s in wanted}
                self._add_consumer(consumer, numbers[consumer.id], values)
            kept = {str(n) for n in numbers.values()}
            prefixes = ("/Devices/", "/SwitchableOutput/")
            for path in [p for p in self.service.items if p.startswith(prefixes)]:
                if path.split("/")[2] not in kept:
                    self.service.remove(path)

    def _add_consumer(self, consumer: Consumer, n: int, stored: dict[str, Value]) -> None:
        """Its paths, or for a consumer that has them, its name and priority from the rules."""
        device, output = f"/Devices/{n}", f"/SwitchableOutput/{n}"
        s = self.service
        if f"{device}/S2/Auto" in s.items:  # its Auto and settings are live already
            custom = s[f"{output}/Settings/CustomName"]
            s.set(f"{device}/Name", custom or consumer.name)
            s.set(f"{device}/Priority", consumer.priority)
            s.set(f"{output}/Name", consumer.name)
            return
        custom = stored["CustomName"] if isinstance(stored["CustomName"], str) else ""
        self.inputs.set_name(consumer.id, custom)
        auto = stored["Auto"]
        if auto not in (0, 1):  # an invalid or odd setting is not a 1: not controlled
            log.warning("%s: Auto setting holds %r, read as 0", consumer.id, auto)
            auto = 0
        assert isinstance(auto, int)
        self.inputs.set_auto(consumer.id, auto)
        s.add(f"{device}/S2/Auto", auto, kind=int, writable=True, on_set=self._auto_written)
        s.add(f"{device}/Name", custom or consumer.name)
        s.add(f"{device}/State", None, kind=int)
        s.add(f"{device}/Power", None, kind=float, unit="W")
        s.add(f"{device}/Priority", consumer.priority)
        s.add(f"{device}/Reason", "", kind=str)
        s.add(f"{device}/RuntimeToday", 0, unit="s")
        s.add(f"{output}/State", 0, writable=True, on_set=self._state_written)
        s.add(f"{output}/Status", STATUS_FAULT)
        s.add(f"{output}/Name", consumer.name)
        s.add(f"{output}/Auto", auto, kind=int, writable=True, on_set=self._auto_written)
        s.add(f"{output}/Settings/Type", THREE_STATE)
        s.add(f"{output}/Settings/ValidTypes", 1 << THREE_STATE)
        s.add(f"{output}/Settings/Function", MANUAL)
        s.add(f"{output}/Settings/ValidFunctions", 1 << MANUAL)
        for leaf, user in USER_SETTINGS.items():
            s.add(
                f"{output}/Settings/{leaf}",
                stored[leaf],
                kind=str if user.default.signature == "s" else int,
                writable=True,
                on_set=self._setting_written,
            )

    # -- writes from gui-v2, VRM, Node-RED or MQTT (via flashmq) ----------------------------

    def _consumer(self, path: str) -> str | None:
        return self.numbers.consumer(_number(path))

    def _auto_written(self, path: str, value: Value) -> bool:
        """Auto, from either of its two paths; the other follows."""
        consumer_id = self._consumer(path)
        if not AUTO.valid(value) or consumer_id is None:
            return False
        assert isinstance(value, int)
        if value == self.inputs.auto.get(consumer_id, 1):
            return True  # nothing to change, nothing to write to flash
        n = _number(path)
        self.inputs.set_auto(consumer_id, value)
        self.service.set(f"/Devices/{n}/S2/Auto", value)
        self.service.set(f"/SwitchableOutput/{n}/Auto", value)
        log.info("%s: Auto set to %d", consumer_id, value)
        self._persist_later(AUTO.setting(consumer_id).path, Variant("i", value))
        return True

    def _state_written(self, path: str, value: Value) -> bool:
        consumer_id = self._consumer(path)
        if value not in (0, 1) or consumer_id is None:
            return False
        return self.switch_by_hand(consumer_id, bool(value))

    def switch_by_hand(self, consumer_id: str, on: bool) -> bool:
        """Switch a consumer's relay by hand: only while its Auto is 0, as gui-v2 says."""
        if self.inputs.auto.get(consumer_id, 1) != 0:
            log.info("%s: not switched by hand, Auto is on", consumer_id)
            return False
        if self._command is None:
            return False
        log.info("%s: switched %s by hand", consumer_id, "on" if on else "off")
        self._command(consumer_id, on)
        return True

    def _setting_written(self, path: str, value: Value) -> bool:
        consumer_id = self._consumer(path)
        user = USER_SETTINGS[path.rsplit("/", 1)[1]]
        if consumer_id is None or not user.valid(value):
            return False
        if value == self.service[path]:
            return True
        if user.leaf == "CustomName":
            assert isinstance(value, str)
            self.inputs.set_name(consumer_id, value)
            n = _number(path)
            name = value or self.service[f"/SwitchableOutput/{n}/Name"]  # the rules' name
            self.service.set(f"/Devices/{n}/Name", name)
        self._persist_later(user.setting(consumer_id).path, Variant(user.default.signature, value))
        return True

    def _device_named(self, path: str, value: Value) -> bool:
        if not isinstance(value, str):
            return False
        if value != self.service[path]:
            self._persist_later(DEVICE_NAME_SETTING, Variant("s", value))
        return True

    def set_auto(self, number: int, value: int) -> bool:
        """The same write arriving over MQTT without dbus-flashmq."""
        path = f"/Devices/{number}/S2/Auto"
        return path in self.service.items and self._auto_written(path, value)

    async def _persist(self, path: str, value: Variant) -> None:
        if not await self.settings.set(path, value):
            log.error("localsettings refused %s = %r; it will not survive a restart", path, value)

    def _persist_later(self, path: str, value: Variant) -> None:
        self._tasks.spawn(self._persist(path, value), name=f"persist-{path}")

    # -- what the engine does -------------------------------------------------------------

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
        numbers = self.numbers.numbers
        for decision in plan.decisions:
            number = numbers.get(decision.consumer)
            device, output = f"/Devices/{number}", f"/SwitchableOutput/{number}"
            if f"{device}/State" not in s.items:
                continue  # a consumer added by a reload, its paths are on their way
            fact = result.snapshot.devices.get(decision.consumer)
            measured = fact.power if fact is not None and fact.on else None
            auto = result.snapshot.auto.get(decision.consumer, 1)
            s.set(f"{device}/State", STATES[decision.state])
            s.set(f"{device}/Power", measured if measured is not None else decision.power)
            s.set(f"{device}/Reason", decision.reason)
            s.set(f"{device}/RuntimeToday", round(decision.runtime))
            s.set(f"{device}/S2/Auto", auto)
            s.set(f"{output}/Auto", auto)
            # The relay as it reports itself, not what the plan wants of it.
            available = fact is not None and fact.available
            on = available and fact is not None and fact.on
            s.set(f"{output}/State", int(on))
            status = (STATUS_ON if on else STATUS_OFF) if available else STATUS_FAULT
            s.set(f"{output}/Status", status)
