"""The private bus for tests, and dbus-send as a user would run it."""

from __future__ import annotations

import asyncio

from hems_rules.demo.bus import PrivateBus

BUSITEM = "com.victronenergy.BusItem"


class DbusDaemon(PrivateBus):
    async def send(
        self, service: str, path: str, member: str, *args: str, interface: str = BUSITEM
    ) -> str:
        """dbus-send --print-reply, the way a user pokes a service from a shell."""
        process = await asyncio.create_subprocess_exec(
            "dbus-send",
            f"--bus={self.address}",
            "--print-reply",
            f"--dest={service}",
            path,
            f"{interface}.{member}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 10)
        return out.decode()
