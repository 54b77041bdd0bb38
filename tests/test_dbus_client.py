"""The bus client: one scan and one set of match rules per service, however many watches."""

from __future__ import annotations

import logging

import pytest
from dbus_fast import Message, Variant

from hems_rules.dbus.client import BusClient, Values
from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import BUSITEM, BusService
from hems_rules.dbus.settings import SETTINGS, SettingsClient
from tests.bus import DbusDaemon, match_rules
from tests.conftest import wait_until


async def test_watches_of_one_service_share_one_scan(dbus_daemon: DbusDaemon) -> None:
    async with BusService("com.victronenergy.settings", dbus_daemon.address) as settings:
        for n in range(50):
            settings.add(f"/Settings/Other/{n}", n)
        settings.add("/Settings/HEMS/Mode", 1)
        settings.add("/Settings/CGwacs/Hub4Mode", 3)
        client = BusClient(await connect(dbus_daemon.address))
        mode: list[Values] = []
        hub4: list[Values] = []
        everything: list[Values] = []
        await client.watch(settings.name, mode.append, lambda: None, paths=["/Settings/HEMS/Mode"])
        await client.watch(
            settings.name, hub4.append, lambda: None, paths=["/Settings/CGwacs/Hub4Mode"]
        )
        await client.watch(settings.name, everything.append, lambda: None)
        assert client.scans == 1
        assert mode == [{"/Settings/HEMS/Mode": 1}]
        assert hub4 == [{"/Settings/CGwacs/Hub4Mode": 3}]
        assert len(everything[0]) == 52
        settings.set("/Settings/CGwacs/Hub4Mode", 1)
        await wait_until(lambda: len(everything) == 2, what="the change")
        assert hub4[-1] == {"/Settings/CGwacs/Hub4Mode": 1} and len(mode) == 1
        assert await match_rules(client) == 3, "one set of rules for the service"
        client.bus.disconnect()


async def test_closed_watches_stay_quiet_and_leave_no_match_rules(
    dbus_daemon: DbusDaemon,
) -> None:
    async with BusService("com.victronenergy.switch.t5", dbus_daemon.address) as service:
        service.add("/State", 0)
        client = BusClient(await connect(dbus_daemon.address))
        for _ in range(30):  # as reloads and BMS changes do
            watch = await client.watch(service.name, lambda v: None, lambda: None)
            watch.close()
        kept: list[Values] = []
        closed: list[Values] = []
        await client.watch(service.name, kept.append, lambda: None)
        (await client.watch(service.name, closed.append, lambda: None)).close()
        service.set("/State", 1)
        await wait_until(lambda: kept[-1] == {"/State": 1}, what="the change")
        assert closed == [{"/State": 0}], "no callback after close"
        assert client.scans == 31, "each first watch scans; the second shares its scan"
        assert await match_rules(client) == 3
        client.bus.disconnect()


async def test_settings_that_leave_are_logged_once_however_many_follow_them(
    dbus_daemon: DbusDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with BusService(SETTINGS, dbus_daemon.address) as settings:
        settings.add("/Settings/HEMS/Mode", 1)
        settings.add("/Settings/Devices/hems_switch/ClassAndVrmInstance", "switch:815")
        client = BusClient(await connect(dbus_daemon.address))
        follower = SettingsClient(client)
        for path in settings.items:
            await follower.follow([path], lambda values: None)
    await wait_until(lambda: "left" in caplog.text, what="the settings leaving")
    left = [r for r in caplog.records if SETTINGS in r.getMessage() and "left" in r.getMessage()]
    assert len(left) == 1, [r.getMessage() for r in left]
    client.bus.disconnect()


async def test_a_change_read_with_the_scan_reply_is_not_undone_by_the_reply(
    dbus_daemon: DbusDaemon,
) -> None:
    """A service answers GetItems with Mode 0 and changes it to 1 at once: the reply and
    the ItemsChanged reach the client in one read, and the signal is handled before the
    scan resumes. The newer value must stay, or a setting changed during start-up is lost
    until it changes again."""
    service = await connect(dbus_daemon.address)

    def answer(msg: Message) -> bool | None:
        if msg.member != "GetItems":
            return None
        service.send(Message.new_method_return(msg, "a{sa{sv}}", [_items(0)]))
        service.send(Message.new_signal("/", BUSITEM, "ItemsChanged", "a{sa{sv}}", [_items(1)]))
        return True

    service.add_message_handler(answer)
    await service.request_name("com.victronenergy.settings")
    client = BusClient(await connect(dbus_daemon.address))
    seen: list[Values] = []
    for _ in range(10):  # the race is certain only when both arrive in one read
        watch = await client.watch("com.victronenergy.settings", seen.append, lambda: None)
        await wait_until(lambda: {"/Mode": 1} in seen, what="the change")
        assert seen[-1] == {"/Mode": 1}, seen
        watch.close()
        seen.clear()
    client.bus.disconnect()
    service.disconnect()


def _items(mode: int) -> dict[str, dict[str, Variant]]:
    return {"/Mode": {"Value": Variant("i", mode), "Text": Variant("s", str(mode))}}
