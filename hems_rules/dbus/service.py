"""Exporting a Victron-style D-Bus service: one BusItem per path, GetItems on the root.

Conventions followed (venus-conventions.md §1, §3): GetValue/GetText/SetValue on every
path, GetItems/GetValue/GetText on `/`, invalid as an empty int32 array, incoming
variants coerced to the item's type, SetValue returns 0 only when accepted and an
accepted write is signalled, changes batched into one ItemsChanged per loop tick, one
connection per service, and the name requested only once every path exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from dbus_fast import Message, MessageFlag, MessageType, NameFlag, RequestNameReply, Variant
from dbus_fast.aio import MessageBus

from hems_rules import __version__
from hems_rules.dbus.connection import connect
from hems_rules.dbus.variants import Value, wrap, written
from hems_rules.errors import HemsError
from hems_rules.numbers import checked

log = logging.getLogger(__name__)

BUSITEM = "com.victronenergy.BusItem"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
PRODUCT_ID = 0xFFFF  # no Victron-registered id; what community drivers use

Accept = Callable[[str, Value], bool]


class DbusError(HemsError):
    """The bus refused something we need (e.g. our name is taken)."""


@dataclass
class Item:
    path: str
    value: Value
    kind: type | None = None  # int, float or str: what writes are coerced to
    writable: bool = False
    on_set: Accept | None = None  # may refuse a write by returning False
    unit: str = ""

    def text(self) -> str:
        if self.value is None:
            return ""
        if isinstance(self.value, float):
            return f"{self.value:.1f}{' ' + self.unit if self.unit else ''}"
        return f"{self.value}{' ' + self.unit if self.unit else ''}"

    def coerce(self, raw: Value) -> Value:
        """The written value as this item's type; ValueError when it cannot be.

        Numbers pass the one check of numbers.py: no NaN, no infinity, nothing huge.
        """
        if raw is None or self.kind is None:
            return raw
        if self.kind is str:
            if not isinstance(raw, str):
                raise ValueError(raw)
            return raw
        number = checked(raw)
        if self.kind is int:
            if not number.is_integer():
                raise ValueError(raw)
            return int(number)
        return number


class BusService:
    """A service on its own connection (an async context manager)."""

    def __init__(self, name: str, address: str | None = None) -> None:
        self.name = name
        self.address = address
        self.items: dict[str, Item] = {}
        self.bus: MessageBus | None = None
        self._pending: dict[str, Item] = {}
        self._flush_scheduled = False

    # -- building ---------------------------------------------------------------------

    def add(
        self,
        path: str,
        value: Value,
        *,
        kind: type | None = None,
        writable: bool = False,
        on_set: Accept | None = None,
        unit: str = "",
    ) -> Item:
        kind = kind or (type(value) if value is not None else None)
        return self.put(Item(path, value, kind, writable, on_set, unit))

    def put(self, item: Item) -> Item:
        self.items[item.path] = item
        if self.bus is not None:
            self._changed(item)  # paths added later must reach clients in a signal
        return item

    def add_mandatory(self, process: str, instance: int, product: str, connection: str) -> None:
        self.add("/Mgmt/ProcessName", process)
        self.add("/Mgmt/ProcessVersion", __version__)
        self.add("/Mgmt/Connection", connection)
        self.add("/DeviceInstance", instance)
        self.add("/ProductId", PRODUCT_ID)
        self.add("/ProductName", product)
        self.add("/FirmwareVersion", __version__)
        self.add("/HardwareVersion", None, kind=str)
        self.add("/Serial", self.name.rsplit(".", 1)[-1])
        self.add("/Connected", 1)
        self.add("/CustomName", "", kind=str, writable=True)

    def remove(self, path: str) -> None:
        item = self.items.pop(path, None)
        if item is not None and self.bus is not None:
            item.value = None
            self._changed(item)

    def set(self, path: str, value: Value) -> None:
        """Change a value; clients hear of it in the tick's ItemsChanged."""
        item = self.items[path]
        if item.value != value:
            item.value = value
            self._changed(item)

    def __getitem__(self, path: str) -> Value:
        return self.items[path].value

    # -- lifetime ---------------------------------------------------------------------

    async def register(self) -> None:
        """Connect and request the name: only now do clients see the service."""
        self.bus = await connect(self.address)
        self.bus.add_message_handler(self._handle)
        reply = await self.bus.request_name(self.name, NameFlag.DO_NOT_QUEUE)
        if reply != RequestNameReply.PRIMARY_OWNER:
            self.bus.disconnect()
            self.bus = None
            raise DbusError(f"{self.name} is already taken on the bus")
        log.debug("registered %s with %d paths", self.name, len(self.items))

    async def close(self) -> None:
        if self.bus is not None:
            bus, self.bus = self.bus, None
            try:
                await bus.release_name(self.name)
            except Exception as err:  # the bus may already be gone on shutdown
                log.debug("releasing %s: %s", self.name, err)
            bus.disconnect()

    async def __aenter__(self) -> Self:
        await self.register()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- signals ----------------------------------------------------------------------

    def _changed(self, item: Item) -> None:
        self._pending[item.path] = item
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        if self.bus is None or not pending:
            return
        body = {path: _entry(item) for path, item in pending.items()}
        self.bus.send(
            Message(
                message_type=MessageType.SIGNAL,
                path="/",
                interface=BUSITEM,
                member="ItemsChanged",
                signature="a{sa{sv}}",
                body=[body],
                flags=MessageFlag.NO_REPLY_EXPECTED,
            )
        )

    # -- method calls -----------------------------------------------------------------

    def _handle(self, msg: Message) -> Message | bool | None:
        if msg.message_type != MessageType.METHOD_CALL:
            return None
        custom = self.handle_custom(msg)
        if custom is not None:
            return custom
        if msg.interface not in (BUSITEM, None):
            return None
        member, path = msg.member, str(msg.path)
        if path == "/":
            return self._root(msg)
        item = self.items.get(path)
        if item is None:
            return Message.new_error(msg, UNKNOWN_OBJECT, f"no item {path}")
        if member == "GetValue":
            return Message.new_method_return(msg, "v", [wrap(item.value)])
        if member == "GetText":
            return Message.new_method_return(msg, "s", [item.text()])
        if member == "SetValue":
            refused = one_variant(msg)
            if refused is not None:
                return refused
            return Message.new_method_return(msg, "i", [self._set_value(item, msg.body[0])])
        return Message.new_error(msg, UNKNOWN_METHOD, f"{member} is not a BusItem method")

    def handle_custom(self, msg: Message) -> Message | None:
        """For services with more than BusItem methods (the simulated settings)."""
        return None

    def _root(self, msg: Message) -> Message:
        if msg.member == "GetItems":
            body = {path: _entry(item) for path, item in self.items.items()}
            return Message.new_method_return(msg, "a{sa{sv}}", [body])
        if msg.member == "GetValue":
            values = {p.lstrip("/"): wrap(i.value) for p, i in self.items.items()}
            return Message.new_method_return(msg, "v", [Variant("a{sv}", values)])
        if msg.member == "GetText":
            texts = {p.lstrip("/"): i.text() for p, i in self.items.items()}
            return Message.new_method_return(msg, "v", [Variant("a{ss}", texts)])
        if msg.member == "SetValue":
            return Message.new_method_return(msg, "i", [1])
        return Message.new_error(msg, UNKNOWN_METHOD, f"{msg.member} is not a BusItem method")

    def _set_value(self, item: Item, variant: Variant) -> int:
        if not item.writable:
            return 1
        try:
            value = item.coerce(written(variant))
        except ValueError:
            return 1
        if value == item.value:
            return 0
        if item.on_set is not None and not item.on_set(item.path, value):
            return 2
        item.value = value
        self._changed(item)
        return 0


def one_variant(msg: Message) -> Message | None:
    """The error reply for a SetValue that does not carry exactly one variant, or None."""
    if msg.signature == "v":
        return None
    return Message.new_error(
        msg, INVALID_ARGS, f"SetValue takes one variant (v), not {msg.signature or 'nothing'}"
    )


def _entry(item: Item) -> dict[str, Variant]:
    return {"Value": wrap(item.value), "Text": Variant("s", item.text())}
