"""Reading other services: scan with GetItems, follow ItemsChanged and PropertiesChanged,
and notice services appear and vanish (NameOwnerChanged). Writing with SetValue.

One client connection serves every watch; signals are matched to a service by its
unique name, which is how flashmq and dbusmonitor do it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import BUSITEM
from hems_rules.dbus.variants import Value, unwrap
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

DBUS = "org.freedesktop.DBus"
Values = dict[str, Value]


@dataclass
class _Watch:
    service: str
    on_values: Callable[[Values], None]
    on_gone: Callable[[], None]
    owner: str = ""
    scanned: Values = field(default_factory=dict)


class BusClient:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self._watches: dict[str, list[_Watch]] = {}
        self._tasks = Tasks("bus client")
        bus.add_message_handler(self._signal)

    async def aclose(self) -> None:
        """Stop the scans under way and disconnect."""
        await self._tasks.aclose()
        self.bus.disconnect()

    async def _dbus(self, member: str, signature: str, body: list[object]) -> list[object]:
        reply = await self.bus.call(
            Message(
                destination=DBUS,
                path="/org/freedesktop/DBus",
                interface=DBUS,
                member=member,
                signature=signature,
                body=body,
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name or "error", str(reply.body))
        return list(reply.body)

    async def owner(self, service: str) -> str:
        try:
            return str((await self._dbus("GetNameOwner", "s", [service]))[0])
        except DBusError:
            return ""

    async def call(
        self,
        service: str,
        path: str,
        member: str,
        *,
        signature: str = "",
        body: list[object] | None = None,
        interface: str = BUSITEM,
    ) -> list[object]:
        reply = await self.bus.call(
            Message(
                destination=service,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name or "error", f"{service}{path} {member}: {reply.body}")
        return list(reply.body)

    async def get_items(self, service: str) -> Values:
        (items,) = await self.call(service, "/", "GetItems")
        assert isinstance(items, dict)
        return {path: unwrap(entry.get("Value")) for path, entry in items.items()}

    async def set_value(self, service: str, path: str, value: Variant) -> int:
        """SetValue; any non-zero answer (or an error) is a refusal."""
        try:
            (result,) = await self.call(service, path, "SetValue", signature="v", body=[value])
        except DBusError as err:
            log.warning("SetValue %s%s failed: %s", service, path, err)
            return -1
        return result if isinstance(result, int) else -1

    async def watch(
        self, service: str, on_values: Callable[[Values], None], on_gone: Callable[[], None]
    ) -> None:
        """Follow a service from now on; `on_values` gets the full scan, then each change."""
        watch = _Watch(service, on_values, on_gone)
        first = service not in self._watches
        self._watches.setdefault(service, []).append(watch)
        matches = (
            f"type='signal',interface='{BUSITEM}',member='ItemsChanged',sender='{service}'",
            f"type='signal',interface='{BUSITEM}',member='PropertiesChanged',sender='{service}'",
            f"type='signal',interface='{DBUS}',member='NameOwnerChanged',arg0='{service}'",
        )
        for rule in matches if first else ():
            await self._dbus("AddMatch", "s", [rule])
        owner = await self.owner(service)
        if owner:
            await self._appeared(watch, owner)
        else:
            on_gone()

    async def _appeared(self, watch: _Watch, owner: str) -> None:
        watch.owner = owner
        try:
            values = await self.get_items(watch.service)
        except DBusError as err:
            log.warning("cannot scan %s: %s", watch.service, err)
            return
        log.info("%s is on the bus (%d paths)", watch.service, len(values))
        watch.on_values(values)

    def _signal(self, msg: Message) -> bool | None:
        if msg.message_type != MessageType.SIGNAL:
            return None
        if msg.member == "NameOwnerChanged" and msg.interface == DBUS:
            name, _, new_owner = msg.body
            for watch in self._watches.get(name, []):
                if new_owner:
                    self._tasks.spawn(self._appeared(watch, new_owner), name=f"scan-{name}")
                else:
                    log.warning("%s left the bus", name)
                    watch.owner = ""
                    watch.on_gone()
            return None
        if msg.interface != BUSITEM:
            return None
        for watch in (w for ws in self._watches.values() for w in ws):
            if watch.owner and watch.owner == msg.sender:
                if msg.member == "ItemsChanged":
                    changes = {p: unwrap(e.get("Value")) for p, e in msg.body[0].items()}
                    watch.on_values(changes)
                elif msg.member == "PropertiesChanged" and "Value" in msg.body[0]:
                    watch.on_values({str(msg.path): unwrap(msg.body[0]["Value"])})
        return None


@asynccontextmanager
async def open_client(address: str | None = None) -> AsyncIterator[BusClient]:
    """A client on its own connection to `address` (the system bus by default)."""
    client = BusClient(await connect(address))
    try:
        yield client
    finally:
        await client.aclose()
