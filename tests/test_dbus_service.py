"""The BusItem layer on a private dbus-daemon: what a Victron client sees."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from hems_rules.dbus.client import BusClient, Values
from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import BusService
from hems_rules.dbus.settings import SETTINGS, Setting, SettingsClient
from hems_rules.demo.gx import SETTINGS_INTERFACE, SimulatedSettings
from tests.bus import DbusDaemon
from tests.conftest import wait_until


async def test_values_texts_items_and_invalid(dbus_daemon: DbusDaemon) -> None:
    async with BusService("com.victronenergy.switch.t1", dbus_daemon.address) as service:
        service.add_mandatory("hems-rules", 815, "hems-rules", "HEMS")
        service.add("/Power", 1150.0, unit="W")
        service.add("/Missing", None, kind=float)
        out = await dbus_daemon.send("com.victronenergy.switch.t1", "/Power", "GetValue")
        assert "double 1150" in out
        assert "1150.0 W" in await dbus_daemon.send(
            "com.victronenergy.switch.t1", "/Power", "GetText"
        )
        assert "array [" in await dbus_daemon.send(
            "com.victronenergy.switch.t1", "/Missing", "GetValue"
        )
        bus = await connect(dbus_daemon.address)
        items = await BusClient(bus).get_items("com.victronenergy.switch.t1")
        assert items["/DeviceInstance"] == 815 and items["/Missing"] is None
        assert items["/Connected"] == 1
        bus.disconnect()


async def test_writes_are_coerced_refused_or_signalled(dbus_daemon: DbusDaemon) -> None:
    refused: list[object] = []

    def only_binary(path: str, value: object) -> bool:
        if value not in (0, 1):
            refused.append(value)
            return False
        return True

    async with BusService("com.victronenergy.switch.t2", dbus_daemon.address) as service:
        service.add("/Auto", 1, writable=True, on_set=only_binary)
        service.add("/Name", "x")
        bus = await connect(dbus_daemon.address)
        client = BusClient(bus)
        seen: list[Values] = []
        await client.watch("com.victronenergy.switch.t2", seen.append, lambda: None)
        svc = "com.victronenergy.switch.t2"
        assert await client.set_value(svc, "/Auto", Variant("b", False)) == 0  # flashmq: JSON false
        assert await client.set_value(svc, "/Auto", Variant("i", 1)) == 0  # flashmq: JSON 1
        assert await client.set_value(svc, "/Auto", Variant("i", 5)) == 2
        assert await client.set_value(svc, "/Auto", Variant("s", "on")) == 1
        assert await client.set_value(svc, "/Name", Variant("s", "y")) == 1
        await wait_until(lambda: {"/Auto": 1} in seen, what="the change signal")
        assert {"/Auto": 0} in seen and refused == [5]
        assert "int32 0" in await dbus_daemon.send(svc, "/Auto", "SetValue", "variant:int32:0")
        bus.disconnect()


async def test_a_burst_of_writes_keeps_the_connection(dbus_daemon: DbusDaemon) -> None:
    async with BusService("com.victronenergy.switch.t3", dbus_daemon.address) as service:
        for n in range(300):
            service.add(f"/Devices/{n}/Power", 0.0)
        bus = await connect(dbus_daemon.address)
        client = BusClient(bus)
        seen: list[Values] = []
        await client.watch("com.victronenergy.switch.t3", seen.append, lambda: None)
        for round_ in range(1, 11):
            for n in range(300):
                service.set(f"/Devices/{n}/Power", float(round_ * 1000 + n))
            await asyncio.sleep(0)  # one tick: one ItemsChanged of 300 paths
        assert service.bus is not None and service.bus.connected
        await wait_until(lambda: seen[-1].get("/Devices/299/Power") == 10299.0, what="last batch")
        calls = [
            client.set_value("com.victronenergy.switch.t3", "/Devices/0/Power", Variant("d", 1.0))
            for _ in range(2000)
        ]
        results = await asyncio.gather(*calls)
        assert set(results) == {1}  # not writable, and every answer arrived
        assert service.bus.connected
        bus.disconnect()


async def test_a_vanishing_service_is_noticed_and_its_return_rescanned(
    dbus_daemon: DbusDaemon,
) -> None:
    bus = await connect(dbus_daemon.address)
    client = BusClient(bus)
    seen: list[Values] = []
    gone: list[bool] = []
    await client.watch("com.victronenergy.system", seen.append, lambda: gone.append(True))
    assert gone == [True]
    system = BusService("com.victronenergy.system", dbus_daemon.address)
    system.add("/Dc/Battery/Soc", 55.0)
    await system.register()
    await wait_until(lambda: {"/Dc/Battery/Soc": 55.0} in seen, what="the scan")
    system.set("/Dc/Battery/Soc", 56.0)
    await wait_until(lambda: seen[-1] == {"/Dc/Battery/Soc": 56.0}, what="a change")
    await system.close()
    await wait_until(lambda: len(gone) == 2, what="the service leaving")
    bus.disconnect()


async def test_thousands_of_signals_without_a_pause_do_not_drop_the_connection(
    dbus_daemon: DbusDaemon,
) -> None:
    async with BusService("com.victronenergy.switch.t4", dbus_daemon.address) as service:
        service.add("/Power", 0.0)
        bus = await connect(dbus_daemon.address)
        client = BusClient(bus)
        seen: list[Values] = []
        await client.watch("com.victronenergy.switch.t4", seen.append, lambda: None)
        assert service.bus is not None
        payload = {"Value": Variant("d", 1.0), "Text": Variant("s", "x" * 2000)}
        for n in range(3000):
            service.bus.send(
                Message(
                    message_type=MessageType.SIGNAL,
                    path="/Power",
                    interface="com.victronenergy.BusItem",
                    member="PropertiesChanged",
                    signature="a{sv}",
                    body=[{**payload, "Value": Variant("d", float(n))}],
                )
            )
        await wait_until(lambda: bool(seen) and seen[-1] == {"/Power": 2999.0}, what="last signal")
        assert service.bus.connected
        bus.disconnect()


ODD_VARIANTS = [
    Variant("ai", [1, 2]),
    Variant("as", ["a"]),
    Variant("(ii)", [1, 2]),
    Variant("a{sv}", {"a": Variant("i", 1)}),
    Variant("v", Variant("i", 1)),
    Variant("o", "/x"),
    Variant("g", "i"),
    Variant("d", math.nan),
    Variant("d", math.inf),
    Variant("x", 2**62),
    Variant("t", 2**64 - 1),
]


async def call(
    bus: MessageBus,
    service: str,
    path: str,
    signature: str,
    body: list[Any],
    *,
    member: str = "SetValue",
    interface: str = "com.victronenergy.BusItem",
) -> Message:
    """A method call as a careless client may send it: any signature, any body."""
    message = Message(
        destination=service,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
    )
    reply = await bus.call(message)
    assert reply is not None
    return reply


async def test_setvalue_without_one_variant_is_an_error_not_a_traceback(
    dbus_daemon: DbusDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    svc = "com.victronenergy.switch.t5"
    async with BusService(svc, dbus_daemon.address) as service:
        service.add("/Auto", 1, writable=True)
        bus = await connect(dbus_daemon.address)
        for signature, body in (("", []), ("i", [0]), ("vv", [Variant("i", 0)] * 2), ("s", ["0"])):
            reply = await call(bus, svc, "/Auto", signature, body)
            assert reply.message_type == MessageType.ERROR, signature
            assert reply.error_name == "org.freedesktop.DBus.Error.InvalidArgs"
        assert service["/Auto"] == 1
        bus.disconnect()
    assert "Traceback" not in caplog.text and "IndexError" not in caplog.text


async def test_containers_and_odd_numbers_are_refused_by_every_kind_of_item(
    dbus_daemon: DbusDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    svc = "com.victronenergy.switch.t6"
    async with BusService(svc, dbus_daemon.address) as service:
        service.add("/Auto", 1, writable=True)
        service.add("/Limit", 1.5, writable=True)
        service.add("/Name", "x", writable=True)
        bus = await connect(dbus_daemon.address)
        client = BusClient(bus)
        for variant in ODD_VARIANTS:
            for path in ("/Auto", "/Limit", "/Name"):
                assert await client.set_value(svc, path, variant) == 1, (path, variant)
        assert (service["/Auto"], service["/Limit"], service["/Name"]) == (1, 1.5, "x")
        assert await client.set_value(svc, "/Limit", Variant("i", 3)) == 0
        assert await client.set_value(svc, "/Name", Variant("ai", [])) == 0  # invalid, as velib
        assert service["/Limit"] == 3.0 and service["/Name"] is None
        bus.disconnect()
    assert "Traceback" not in caplog.text


async def test_the_simulated_settings_refuse_what_localsettings_refuses(
    dbus_daemon: DbusDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    async with SimulatedSettings(dbus_daemon.address) as settings:
        bus = await connect(dbus_daemon.address)
        client = SettingsClient(BusClient(bus))
        await client.add(
            [
                Setting("/Settings/T/Mode", Variant("i", 0), Variant("i", 0), Variant("i", 1)),
                Setting("/Settings/T/Name", Variant("s", "")),
                Setting("/Settings/T/Power", Variant("d", -1.0)),
            ]
        )
        for variant in ODD_VARIANTS:
            for path in ("/Settings/T/Mode", "/Settings/T/Name", "/Settings/T/Power"):
                assert await client.client.set_value(SETTINGS, path, variant) == -1, variant
        for signature, body in (("", []), ("i", [1]), ("vv", [Variant("i", 1)] * 2)):
            reply = await call(bus, SETTINGS, "/Settings/T/Mode", signature, body)
            assert reply.message_type == MessageType.ERROR
        reply = await call(
            bus, SETTINGS, "/", "s", ["x"], member="AddSettings", interface=SETTINGS_INTERFACE
        )
        assert reply.message_type == MessageType.ERROR
        assert settings["/Settings/T/Name"] == "" and settings["/Settings/T/Mode"] == 0
        bus.disconnect()
    assert "Traceback" not in caplog.text
