"""Reading other services: scan with GetItems, follow ItemsChanged and PropertiesChanged,
and notice services appear and vanish (NameOwnerChanged). Writing with SetValue.

One client connection serves every watch. A service is followed once, however many
watches it has: one set of match rules, one GetItems scan when it appears, and its
current values kept here, so a later watch is answered without a new scan.
Signals are matched to a service by its unique name, as flashmq and dbusmonitor do.
A watch that is closed stops its callbacks; the last one closed removes the match
rules, so watches do not pile up over reloads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import BUSITEM
from hems_rules.dbus.variants import Value, unwrap
from hems_rules.tasks import Tasks

log = logging.getLogger(__name__)

DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
Values = dict[str, Value]


@dataclass(eq=False)
class Watch:
    """One watcher of one service: `on_values` gets its paths (all when `paths` is None)."""

    service: str
    paths: frozenset[str] | None
    on_values: Callable[[Values], None]
    on_gone: Callable[[], None]
    _close: Callable[[Watch], None]

    def close(self) -> None:
        """No more callbacks from now on."""
        self._close(self)

    def wants(self, values: Values) -> Values:
        """This watch's part of `values`, as a dict of its own."""
        if self.paths is None:
            return dict(values)
        if len(self.paths) < len(values):
            return {p: values[p] for p in self.paths if p in values}
        return {p: v for p, v in values.items() if p in self.paths}


@dataclass(eq=False)
class _Followed:
    """A service with at least one watch, and its current values while it is present."""

    name: str
    watches: list[Watch] = field(default_factory=list)
    owner: str = ""
    values: Values = field(default_factory=dict)
    # Setting up (match rules, owner, first scan) and rescans happen one at a time.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    started: bool = False
    # Paths changed by signals while a scan is under way: a signal that arrives in the
    # same read as the GetItems reply is handled before the scan resumes, so it is newer
    # than the reply and the reply must not undo it.
    changed_during_scan: set[str] | None = None

    def update(self, values: Values) -> None:
        self.values.update(values)
        if self.changed_during_scan is not None:
            self.changed_during_scan.update(values)
        for watch in list(self.watches):
            part = watch.wants(values)
            if part:
                watch.on_values(part)


def _matches(service: str) -> tuple[str, ...]:
    return (
        f"type='signal',interface='{BUSITEM}',member='ItemsChanged',sender='{service}'",
        f"type='signal',interface='{BUSITEM}',member='PropertiesChanged',sender='{service}'",
        f"type='signal',interface='{DBUS}',member='NameOwnerChanged',arg0='{service}'",
    )


class BusClient:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.scans = 0  # GetItems calls, for tests and benchmarks
        self._followed: dict[str, _Followed] = {}
        self._by_owner: dict[str, list[_Followed]] = {}
        self._tasks = Tasks("bus client")
        bus.add_message_handler(self._signal)

    async def aclose(self) -> None:
        """Stop the scans under way and disconnect."""
        await self._tasks.aclose()
        self.bus.disconnect()

    async def _dbus(self, member: str, signature: str, body: list[object]) -> list[object]:
        """A call to the bus daemon itself."""
        return await self.call(
            DBUS, DBUS_PATH, member, signature=signature, body=body, interface=DBUS
        )

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
        self.scans += 1
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
        self,
        service: str,
        on_values: Callable[[Values], None],
        on_gone: Callable[[], None],
        *,
        paths: Collection[str] | None = None,
    ) -> Watch:
        """Follow a service from now on: `on_values` gets the current values, then each
        change, of `paths` (all when None); `on_gone` is called while it is absent.

        Close the returned watch when it is no longer needed.
        """
        followed = self._followed.get(service)
        if followed is None:
            followed = self._followed[service] = _Followed(service)
        watch = Watch(
            service,
            None if paths is None else frozenset(paths),
            on_values,
            on_gone,
            self._unwatch,
        )
        async with followed.lock:
            followed.watches.append(watch)
            if not followed.started:
                followed.started = True
                # Sent together: the bus answers them in order, but need not be waited
                # for one by one (on a start, every watched service costs these trips).
                await asyncio.gather(*(self._dbus("AddMatch", "s", [r]) for r in _matches(service)))
                self._set_owner(followed, await self.owner(service))
                if followed.owner:
                    await self._scan(followed)
                    return watch
        if not followed.owner:
            on_gone()
        elif current := watch.wants(followed.values):
            on_values(current)
        return watch

    def _unwatch(self, watch: Watch) -> None:
        followed = self._followed.get(watch.service)
        if followed is None or watch not in followed.watches:
            return
        followed.watches.remove(watch)
        if followed.watches:
            return
        del self._followed[watch.service]
        self._set_owner(followed, "")
        if followed.started:
            self._remove_matches(watch.service)

    def _remove_matches(self, service: str) -> None:
        """Sent without waiting for replies: the bus handles a connection's messages in
        order, so the rules are gone before anything this client sends afterwards."""
        if not self.bus.connected:
            return
        for rule in _matches(service):
            sent = self.bus.send(
                Message(
                    destination=DBUS,
                    path=DBUS_PATH,
                    interface=DBUS,
                    member="RemoveMatch",
                    signature="s",
                    body=[rule],
                    flags=MessageFlag.NO_REPLY_EXPECTED,
                )
            )
            sent.add_done_callback(_quiet)

    def _set_owner(self, followed: _Followed, owner: str) -> None:
        if followed.owner:
            same = self._by_owner.get(followed.owner, [])
            if followed in same:
                same.remove(followed)
            if not same:
                self._by_owner.pop(followed.owner, None)
        followed.owner = owner
        if owner:
            self._by_owner.setdefault(owner, []).append(followed)

    async def _scan(self, followed: _Followed) -> None:
        """One GetItems for every watch of the service; each gets what it wants."""
        owner = followed.owner
        changed: set[str] = set()
        followed.changed_during_scan = changed
        try:
            values = await self.get_items(followed.name)
        except DBusError as err:
            log.warning("cannot scan %s: %s", followed.name, err)
            return
        finally:
            followed.changed_during_scan = None
        if followed.owner != owner or not followed.watches:
            return  # it left (or was unwatched) while the scan was under way
        log.info("%s is on the bus (%d paths)", followed.name, len(values))
        values.update((p, followed.values[p]) for p in changed if p in followed.values)
        followed.values = {}
        followed.update(values)

    async def _appeared(self, followed: _Followed) -> None:
        async with followed.lock:
            await self._scan(followed)

    def _signal(self, msg: Message) -> bool | None:
        if msg.message_type != MessageType.SIGNAL:
            return None
        if msg.member == "NameOwnerChanged" and msg.interface == DBUS:
            name, _, new_owner = msg.body
            followed = self._followed.get(name)
            if followed is None or not followed.started:
                return None
            self._set_owner(followed, new_owner)
            if new_owner:
                self._tasks.spawn(self._appeared(followed), name=f"scan-{name}")
            else:
                log.warning("%s left the bus", name)
                followed.values = {}
                for watch in list(followed.watches):
                    watch.on_gone()
            return None
        if msg.interface != BUSITEM or msg.sender not in self._by_owner:
            return None
        if msg.member == "ItemsChanged":
            changes = {p: unwrap(e.get("Value")) for p, e in msg.body[0].items()}
        elif msg.member == "PropertiesChanged" and "Value" in msg.body[0]:
            changes = {str(msg.path): unwrap(msg.body[0]["Value"])}
        else:
            return None
        for followed in list(self._by_owner.get(msg.sender, ())):
            followed.update(changes)
        return None


def _quiet(sent: asyncio.Future[None]) -> None:
    """A message that could not be sent on a closing connection is no news."""
    if not sent.cancelled():
        sent.exception()


@asynccontextmanager
async def open_client(address: str | None = None) -> AsyncIterator[BusClient]:
    """A client on its own connection to `address` (the system bus by default)."""
    client = BusClient(await connect(address))
    try:
        yield client
    finally:
        await client.aclose()
