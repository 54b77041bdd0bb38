"""Fuzz: D-Bus writes of every signature against every path of the running appliance.

The appliance runs on a private bus with a simulated GX and an emulated Shelly. Every
path of its switch service and VRM battery views, and every HEMS setting, is written
with variants of every D-Bus type (NaN, huge integers, arrays, structs, dicts, nested
variants) and with SetValue calls that carry no variant or several. Each write must be
answered in time: accepted (0), refused (non-zero) or an InvalidArgs error; never an
internal error, never a traceback, and every service still answers GetItems after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hems_rules.app import App, AppOptions
from hems_rules.dbus.connection import connect
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.ruleset import load_rules
from tests.bus import DbusDaemon

BUSITEM = "com.victronenergy.BusItem"
SETTINGS = "com.victronenergy.settings"
TIME_BOUND = 2.0

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
BASIC: dict[str, st.SearchStrategy[Any]] = {
    "b": st.booleans(),
    "y": st.integers(0, 255),
    "n": st.integers(-(2**15), 2**15 - 1),
    "q": st.integers(0, 2**16 - 1),
    "i": st.integers(-(2**31), 2**31 - 1),
    "u": st.integers(0, 2**32 - 1),
    "x": st.integers(-(2**63), 2**63 - 1),
    "t": st.integers(0, 2**64 - 1),
    "d": st.floats(),
    "s": text | st.sampled_from(["1", "0", "on", "1/0", "__import__('os')", "SOC * 50"]),
    "o": st.sampled_from(["/", "/a", "/Settings/HEMS/Mode"]),
    "g": st.sampled_from(["", "i", "a{sv}", "(ii)"]),
}
basic = st.sampled_from(sorted(BASIC)).flatmap(
    lambda sig: BASIC[sig].map(lambda value: Variant(sig, value))
)
arrays = st.sampled_from(sorted(BASIC)).flatmap(
    lambda sig: (st.binary(max_size=3) if sig == "y" else st.lists(BASIC[sig], max_size=3)).map(
        lambda values: Variant(f"a{sig}", values)
    )
)
structs = st.lists(basic, min_size=1, max_size=3).map(
    lambda parts: Variant(f"({''.join(p.signature for p in parts)})", [p.value for p in parts])
)
dicts = st.dictionaries(text, basic, max_size=3).map(lambda d: Variant("a{sv}", d))
nested = basic.map(lambda inner: Variant("v", inner))
# What a user or flashmq writes, so that writes are also accepted and acted on.
plausible = st.one_of(
    st.integers(-1, 2).map(lambda n: Variant("i", n)),
    st.booleans().map(lambda b: Variant("b", b)),
    st.floats(-5000, 5000).map(lambda f: Variant("d", f)),
    BASIC["s"].map(lambda s: Variant("s", s)),
)
variants = st.one_of(plausible, plausible, basic, arrays, structs, dicts, nested)
# SetValue as a careless client sends it: no argument, a bare value, two variants.
bodies = st.one_of(
    variants.map(lambda v: ("v", [v])),
    st.just(("", [])),
    st.integers(-5, 5).map(lambda n: ("i", [n])),
    text.map(lambda s: ("s", [s])),
    st.tuples(variants, variants).map(lambda vv: ("vv", list(vv))),
)

RULES = """\
site: {{phases: 1, battery_reservation: "1000", loop_interval: 0.3s,
       web: {{enabled: false}}, history: {{enabled: false}}}}
consumers:
  - {{id: heater, shelly: {{host: heater.invalid, port: {port}}}, power: 1000, vrm: true}}
"""


@dataclass
class Target:
    bus: MessageBus
    paths: dict[str, list[str]]  # everything there is to write to, by service
    app: App
    task: asyncio.Task[int]


@pytest.fixture
async def target(dbus_daemon: DbusDaemon, tmp_path: Path) -> AsyncIterator[Target]:
    async with (
        SimulatedSettings(dbus_daemon.address) as simulated,
        SimulatedSystem(dbus_daemon.address) as system,
        EmulatedShelly() as heater,
    ):
        system.update({"/Ac/PvOnGrid/L1/Power": 3000.0, "/Ac/Consumption/L1/Power": 500.0})
        (tmp_path / "rules.yaml").write_text(RULES.format(port=heater.port))
        options = AppOptions(
            rules_dir=tmp_path,
            bus_address=dbus_daemon.address,
            shelly_address=lambda _: ("127.0.0.1", heater.port),
            poll_interval=0.2,
        )
        app = App(options, load_rules(tmp_path))
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        await asyncio.wait_for(app.ready.wait(), 10)
        bus = await connect(dbus_daemon.address)
        services = [
            name
            for name in await names(bus)
            if name == "com.victronenergy.switch.hems" or "battery.hems" in name
        ]
        paths = {s: sorted(await items(bus, s)) for s in services}
        paths[SETTINGS] = sorted(p for p in simulated.items if p.startswith("/Settings/HEMS/"))
        assert len(paths) >= 4 and sum(map(len, paths.values())) > 50
        yield Target(bus, paths, app, task)
        bus.disconnect()
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0


async def names(bus: MessageBus) -> list[str]:
    reply = await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="ListNames",
        )
    )
    assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
    return list(reply.body[0])


async def items(bus: MessageBus, service: str) -> dict[str, Any]:
    reply = await bus.call(
        Message(destination=service, path="/", interface=BUSITEM, member="GetItems")
    )
    assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
    found: dict[str, Any] = reply.body[0]
    return found


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
async def test_every_write_is_answered_and_nothing_breaks(
    target: Target, caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    caplog.set_level(logging.WARNING)
    service = data.draw(st.sampled_from(sorted(target.paths)), label="service")
    path = data.draw(st.sampled_from(target.paths[service]), label="path")
    signature, body = data.draw(bodies, label="call")
    started = time.monotonic()
    reply = await asyncio.wait_for(
        target.bus.call(
            Message(
                destination=service,
                path=path,
                interface=BUSITEM,
                member="SetValue",
                signature=signature,
                body=body,
            )
        ),
        TIME_BOUND,
    )
    assert reply is not None
    if signature == "v":
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        assert reply.signature == "i" and reply.body[0] in (0, 1, 2, -1)
    else:
        assert reply.error_name == "org.freedesktop.DBus.Error.InvalidArgs", reply.body
    for name in target.paths:
        await items(target.bus, name)
    assert time.monotonic() - started < TIME_BOUND
    assert not target.task.done()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
