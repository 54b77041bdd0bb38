"""Settings on com.victronenergy.settings: registered with AddSettings, followed for changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dbus_fast import Variant

from hems_rules.dbus.client import BusClient, Values, Watch
from hems_rules.dbus.service import BusService, DbusError
from hems_rules.dbus.variants import Value, unwrap
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

SETTINGS = "com.victronenergy.settings"


@dataclass(frozen=True)
class Setting:
    """One setting to register; the variant type of `default` fixes its type for good."""

    path: str
    default: Variant
    minimum: Variant | None = None
    maximum: Variant | None = None
    silent: bool = False

    def entry(self) -> dict[str, Variant]:
        entry = {"path": Variant("s", self.path), "default": self.default}
        if self.minimum is not None:
            entry["min"] = self.minimum
        if self.maximum is not None:
            entry["max"] = self.maximum
        if self.silent:
            entry["silent"] = Variant("i", 1)
        return entry


class SettingsClient:
    def __init__(self, client: BusClient) -> None:
        self.client = client

    async def wait(self, timeout: float = 60.0) -> None:
        """Wait for localsettings, which can come up after us at boot."""
        delay, waited = 0.1, 0.0
        while not await self.client.owner(SETTINGS):
            if waited >= timeout:
                raise DbusError(f"{SETTINGS} did not appear within {timeout:g} s")
            if not waited:
                log.info("waiting for %s", SETTINGS)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(2.0, delay * 2)

    async def add(self, settings: Sequence[Setting]) -> dict[str, Value]:
        """Register settings (existing ones keep their values); their current values."""
        (replies,) = await self.client.call(
            SETTINGS,
            "/",
            "AddSettings",
            signature="aa{sv}",
            body=[[s.entry() for s in settings]],
            interface="com.victronenergy.Settings",
        )
        values: dict[str, Value] = {}
        assert isinstance(replies, list)
        for setting, reply in zip(settings, replies, strict=True):
            error = reply.get("error")
            code = error.value if isinstance(error, Variant) else -1
            if code != 0:
                raise DbusError(f"AddSettings {setting.path} failed with error {code}")
            values[setting.path] = unwrap(reply.get("value"))
        return values

    async def set(self, path: str, value: Variant) -> bool:
        return await self.client.set_value(SETTINGS, path, value) == 0

    async def follow(self, paths: Sequence[str], on_change: Callable[[Values], None]) -> Watch:
        """Call `on_change` with the watched paths now and whenever any of them changes.

        While localsettings is away the values last read stand (the bus client logs its
        leaving once, and its return brings a fresh scan).
        """
        return await self.client.watch(SETTINGS, on_change, _stand, paths=paths)


def _stand() -> None:
    """Settings keep their last values while localsettings is away."""


def instance_of(class_and_instance: str) -> int:
    """The DeviceInstance in a ClassAndVrmInstance value such as "switch:815"."""
    return int(class_and_instance.rpartition(":")[2])


async def device_instance(settings: SettingsClient, path: str, wanted: str) -> int:
    """The instance localsettings gives the ClassAndVrmInstance at `path` for
    `wanted` ("class:preferred"): the preferred one, or the next free one."""
    values = await settings.add([Setting(path, Variant("s", wanted))])
    return instance_of(str(values[path]))


async def follow_instance(
    settings: SettingsClient, path: str, service: BusService, tasks: Tasks
) -> Watch:
    """Move `service` when its ClassAndVrmInstance setting changes (the GX's device list).

    flashmq caches a service's instance from its first scan, so the name is released and
    requested again: MQTT topics then move to the new instance. Close the watch when the
    service goes for good.
    """

    def changed(values: Values) -> None:
        value = values.get(path)
        if not isinstance(value, str):
            return
        instance = instance_of(value)
        if instance != service["/DeviceInstance"]:
            tasks.spawn(_move(service, instance), name=f"move-{service.name}")

    return await settings.follow([path], changed)


async def _move(service: BusService, instance: int) -> None:
    log.info("%s moves to instance %d", service.name, instance)
    await service.close()
    service.set("/DeviceInstance", instance)
    await service.register()
