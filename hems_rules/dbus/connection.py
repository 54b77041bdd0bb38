"""Connections to the bus, with the burst-write fix dbus-fast still needs.

dbus-fast's writer treats EAGAIN from a full socket buffer as fatal and drops the
connection (measured: a few hundred signals without an await in between). Mapping
BlockingIOError to "0 bytes written" lets its own partial-write path wait for the socket
to become writable instead. Applied per connection, so no library code is patched.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from dbus_fast import BusType
from dbus_fast.aio import MessageBus

log = logging.getLogger(__name__)


class _PatientSocket:
    """A socket whose send/sendmsg report a full buffer as nothing written yet."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: Any, *args: Any) -> int:
        try:
            return self._sock.send(data, *args)
        except BlockingIOError:
            return 0

    def sendmsg(self, *args: Any) -> int:
        try:
            return self._sock.sendmsg(*args)
        except BlockingIOError:
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


async def connect(address: str | None = None) -> MessageBus:
    """A connected MessageBus on `address`, or on the system bus."""
    bus = MessageBus(bus_address=address) if address else MessageBus(bus_type=BusType.SYSTEM)
    await bus.connect()
    writer = getattr(bus, "_writer", None)
    if writer is not None and isinstance(getattr(writer, "sock", None), socket.socket):
        writer.sock = _PatientSocket(writer.sock)
    else:
        log.warning("dbus-fast internals changed; burst writes may drop the connection")
    return bus
