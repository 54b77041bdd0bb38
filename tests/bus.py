"""The private bus for tests, and dbus-send as a user would run it."""

from __future__ import annotations

import asyncio

from hems_rules.dbus.client import BusClient
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


STATS = "org.freedesktop.DBus.Debug.Stats"


async def match_rules(client: BusClient, connection: str | None = None) -> int:
    """The match rules dbus-daemon holds for a connection (this client's by default)."""
    (stats,) = await client.call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "GetConnectionStats",
        signature="s",
        body=[connection or client.bus.unique_name],
        interface=STATS,
    )
    assert isinstance(stats, dict)
    return int(stats["MatchRules"].value)


async def all_match_rules(client: BusClient) -> int:
    """The match rules dbus-daemon holds for every connection together."""
    (rules,) = await client.call(
        "org.freedesktop.DBus", "/org/freedesktop/DBus", "GetAllMatchRules", interface=STATS
    )
    assert isinstance(rules, dict)
    return sum(len(r) for r in rules.values())
