"""The appliance on a private bus with a simulated GX, as a Victron user drives it."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from dbus_fast import Message, Variant
from dbus_fast.errors import DBusError

from hems_rules.app import App, AppOptions
from hems_rules.dbus.client import BusClient
from hems_rules.dbus.connection import connect
from hems_rules.dbus.service import DbusError
from hems_rules.dbus.settings import Setting, SettingsClient
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.history.store import HistoryStore
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.rules import RuleSet, ShellyEndpoint
from hems_rules.ruleset.watch import RulesWatcher
from hems_rules.sinks.relays import Relays
from tests.bus import DbusDaemon, all_match_rules
from tests.conftest import wait_until

SWITCH = "com.victronenergy.switch.hems"
SETTINGS = "com.victronenergy.settings"

RULES = """\
site: {{phases: 1, battery_reservation: "1000", loop_interval: 0.3s,
       web: {{enabled: false}}, history: {{enabled: false}}}}
consumers:
  - {{id: pump, shelly: {{host: pump.invalid, port: {pump}}}, power: 300, priority: 5,
     class: primary}}
  - {{id: heater, shelly: {{host: heater.invalid, port: {heater}}}, power: 1000, priority: 20,
     vrm: true}}
"""

SUNNY = {
    "/Ac/PvOnGrid/L1/Power": 3500.0,
    "/Ac/Consumption/L1/Power": 500.0,
    "/Dc/Pv/Power": 0.0,
    "/Dc/Battery/Soc": 60.0,
    "/Dc/Battery/Power": 1200.0,
    "/Dc/Battery/Voltage": 52.0,
}


class ScannedSettings(SimulatedSettings):
    """The simulated localsettings, counting the GetItems scans it answers."""

    scans = 0

    def handle_custom(self, msg: Message) -> Message | None:
        if msg.member == "GetItems":
            self.scans += 1
        return super().handle_custom(msg)


@dataclass
class Rig:
    daemon: DbusDaemon
    system: SimulatedSystem
    settings: ScannedSettings
    pump: EmulatedShelly
    heater: EmulatedShelly
    app: App
    client: BusClient
    stop: asyncio.Event
    task: asyncio.Task[int]
    systems: list[SimulatedSystem]

    async def value(self, service: str, path: str) -> object:
        (variant,) = await self.client.call(service, path, "GetValue")
        assert isinstance(variant, Variant)
        return variant.value

    def state(self, consumer: str) -> str:
        loop = self.app.loop
        plan = loop.controller.plan if loop else None
        return plan.decision(consumer).state if plan else "none"


@pytest.fixture
async def rig(dbus_daemon: DbusDaemon, tmp_path: Path) -> AsyncIterator[Rig]:
    settings = ScannedSettings(dbus_daemon.address)
    system = SimulatedSystem(dbus_daemon.address)
    system.update(SUNNY)
    await settings.register()
    await system.register()
    async with EmulatedShelly(loads=[300.0]) as pump, EmulatedShelly() as heater:
        (tmp_path / "rules.yaml").write_text(RULES.format(pump=pump.port, heater=heater.port))

        def loopback(endpoint: ShellyEndpoint) -> tuple[str, int]:
            assert endpoint.port in (pump.port, heater.port)
            return "127.0.0.1", endpoint.port

        options = AppOptions(
            rules_dir=tmp_path,
            bus_address=dbus_daemon.address,
            shelly_address=loopback,
            poll_interval=0.2,
            day_state=tmp_path / "day-state.json",
        )
        app = App(options, load_rules(tmp_path))
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        rig_system = [system]

        async def meter() -> None:
            # What the GX's meter reads: the house plus what the relays draw. Like a GX's,
            # it shows a switch only after hems-rules has read the relay back.
            loads = {"pump": pump.switches[0].load, "heater": heater.switches[0].load}
            while True:
                facts = app.inputs.devices
                drawn = sum(w for c, w in loads.items() if c in facts and facts[c].on)
                if rig_system[0].bus is not None:
                    rig_system[0].set("/Ac/Consumption/L1/Power", 500.0 + drawn)
                await asyncio.sleep(0.05)

        metering = asyncio.create_task(meter())
        await asyncio.wait_for(app.ready.wait(), 10)
        bus = await connect(dbus_daemon.address)
        client = BusClient(bus)
        rig = Rig(dbus_daemon, system, settings, pump, heater, app, client, stop, task, rig_system)
        yield rig
        metering.cancel()
        stop.set()
        await asyncio.wait_for(task, 10)
        system = rig.system
        bus.disconnect()
    await system.close()
    await settings.close()


async def test_mode_set_with_dbus_send_starts_control(rig: Rig) -> None:
    assert rig.state("heater") == "off" or rig.app.inputs.settings.mode == 0
    out = await rig.daemon.send(SETTINGS, "/Settings/HEMS/Mode", "SetValue", "variant:int32:1")
    assert "int32 0" in out
    await wait_until(lambda: rig.heater.switches[0].output and rig.pump.switches[0].output)
    await wait_until(lambda: rig.state("heater") == "on")
    assert await rig.value(SWITCH, "/Hems/Active") == 1
    await wait_until(lambda: rig.app.inputs.devices["heater"].on)
    assert await rig.value(SWITCH, "/Hems/BatteryReservation") == 1000.0
    names = {await rig.value(SWITCH, f"/Devices/{n}/Name") for n in (0, 1)}
    assert names == {"Pump", "Heater"}


async def test_auto_written_as_flashmq_does_releases_and_persists(rig: Rig) -> None:
    await rig.client.set_value(SETTINGS, "/Settings/HEMS/Mode", Variant("i", 1))
    await wait_until(lambda: rig.heater.switches[0].output, what="heater on")
    number = rig.app.numbers.numbers["heater"]
    path = f"/Devices/{number}/S2/Auto"
    assert await rig.client.set_value(SWITCH, path, Variant("b", False)) == 0  # JSON false
    await wait_until(lambda: not rig.heater.switches[0].output, what="released")
    await wait_until(lambda: rig.settings["/Settings/HEMS/Auto/heater"] == 0, what="persisted")
    assert await rig.client.set_value(SWITCH, path, Variant("i", 3)) != 0
    assert await rig.client.set_value(SWITCH, path, Variant("i", 1)) == 0  # JSON 1
    await wait_until(lambda: rig.heater.switches[0].output, what="back under control")


async def test_a_hostile_equation_never_runs_and_fails_closed(rig: Rig, tmp_path: Path) -> None:
    await rig.client.set_value(SETTINGS, "/Settings/HEMS/Mode", Variant("i", 1))
    await wait_until(lambda: rig.heater.switches[0].output, what="heater on")
    marker = tmp_path / "pwned"
    hostile = f"__import__('os').system('touch {marker}')"
    out = await rig.daemon.send(
        SETTINGS,
        "/Settings/HEMS/BatteryReservationEquation",
        "SetValue",
        f"variant:string:{hostile}",
    )
    assert "int32 0" in out
    await wait_until(lambda: not rig.heater.switches[0].output, what="secondary stopped")
    assert rig.pump.switches[0].output, "a primary ignores the reservation"
    assert await rig.value(SWITCH, "/Hems/BatteryReservationState") == "ERROR"
    error = await rig.value(SWITCH, "/Hems/BatteryReservationError")
    assert isinstance(error, str) and "only the functions" in error
    assert not marker.exists()
    await rig.client.set_value(
        SETTINGS, "/Settings/HEMS/BatteryReservationEquation", Variant("s", "")
    )
    await wait_until(lambda: rig.heater.switches[0].output, what="recovered")


async def test_the_system_service_vanishing_stops_then_returns(rig: Rig) -> None:
    await rig.client.set_value(SETTINGS, "/Settings/HEMS/Mode", Variant("i", 1))
    await wait_until(lambda: rig.heater.switches[0].output, what="heater on")
    await rig.system.close()
    await wait_until(lambda: not rig.heater.switches[0].output, what="stopped: surplus unknown")
    assert "com.victronenergy.system is gone" in (
        rig.app.loop.controller.plan.decision("heater").reason  # type: ignore[union-attr]
    )
    rig.system = SimulatedSystem(rig.daemon.address)
    rig.system.update(SUNNY)
    await rig.system.register()
    rig.systems[0] = rig.system
    # The switch-offs were sent with no consumption to measure them against: when the
    # meter already showed the loads before the service went, they settle only when
    # `settle` (5 s) has passed since they were sent (DESIGN §5.10).
    await wait_until(lambda: rig.heater.switches[0].output, timeout=8.0, what="back on")


async def test_inverter_power_override_and_fake_bms(rig: Rig) -> None:
    await rig.client.set_value(SETTINGS, "/Settings/HEMS/Mode", Variant("i", 1))
    rig.system.update({"/Ac/PvOnGrid/L1/Power": 0.0, "/Dc/Pv/Power": 4000.0})
    await wait_until(lambda: rig.heater.switches[0].output, what="heater on, fed by DC PV")
    out = await rig.daemon.send(
        SETTINGS, "/Settings/HEMS/ContinuousInverterPower", "SetValue", "variant:double:900"
    )
    assert "int32 0" in out
    await wait_until(lambda: not rig.heater.switches[0].output, what="shed by the limit")
    # Until the meter shows the heater gone, the limit can shed the pump too (§5.10).
    await wait_until(lambda: rig.pump.switches[0].output, what="the pump on within the limit")
    reservation = "com.victronenergy.battery.hems_reservation"
    name = await rig.value(reservation, "/CustomName")
    assert name == "HEMS reservation 1000 W (OK)"
    assert await rig.value(reservation, "/Soc") == 100.0  # 1200 W charging >= 1000 W reserved
    for path, written in (("/Soc", 5.0), ("/Dc/0/Power", 5.0), ("/CustomName", "mine")):
        refused = await rig.client.set_value(
            reservation, path, Variant("s" if path == "/CustomName" else "d", written)
        )
        assert refused != 0, f"{path}: display only, a write is refused, not taken and undone"
    assert await rig.value(reservation, "/Soc") == 100.0
    items = await rig.client.get_items(reservation)
    assert not any(p.startswith("/Info/") for p in items), "never a DVCC charge-control path"
    heater_bms = await rig.client.get_items("com.victronenergy.battery.hems_heater")
    assert heater_bms["/DeviceInstance"] != items["/DeviceInstance"]
    assert await rig.value(SWITCH, "/DeviceInstance") == 815


async def test_a_switch_the_shelly_lacks_is_a_configuration_error(rig: Rig, tmp_path: Path) -> None:
    """Defect 4: said on /Hems/ConfigError and in the Reason, gone once fixed."""
    rules = tmp_path / "rules.yaml"
    good = rules.read_text()
    heater = f"port: {rig.heater.port}}}"
    rules.write_text(good.replace(heater, f"port: {rig.heater.port}, switch: 3}}"))
    number = rig.app.numbers.numbers["heater"]

    async def settles(path: str, done: Callable[[object], bool]) -> object:
        for _ in range(500):
            value = await rig.value(SWITCH, path)
            if done(value):
                return value
            await asyncio.sleep(0.01)
        raise AssertionError(f"{path} is {value!r}")

    error = str(await settles("/Hems/ConfigError", bool))
    assert error.startswith("heater: 127.0.0.1:") and "Switch.GetStatus" in error
    reason = f"/Devices/{number}/Reason"
    await settles(reason, lambda v: v == "unavailable: the Shelly has no switch 3")
    rules.write_text(good)
    await settles("/Hems/ConfigError", lambda v: v == "")
    await settles(reason, lambda v: not str(v).startswith("unavailable"))


async def test_shutdown_releases_controlled_relays_and_names(rig: Rig) -> None:
    await rig.client.set_value(SETTINGS, "/Settings/HEMS/Mode", Variant("i", 1))
    await wait_until(lambda: rig.heater.switches[0].output and rig.pump.switches[0].output)
    rig.stop.set()
    await asyncio.wait_for(rig.task, 10)
    assert not rig.heater.switches[0].output and not rig.pump.switches[0].output
    assert not await rig.client.owner(SWITCH)


async def test_auto_values_survive_a_restart(rig: Rig) -> None:
    number = rig.app.numbers.numbers["heater"]
    path = f"/Devices/{number}/S2/Auto"
    assert await rig.client.set_value(SWITCH, path, Variant("i", 0)) == 0
    await wait_until(lambda: rig.settings["/Settings/HEMS/Auto/heater"] == 0, what="persisted")
    rig.stop.set()
    await asyncio.wait_for(rig.task, 10)
    async with restarted(rig) as again:
        assert again.inputs.auto["heater"] == 0
        assert await rig.value(SWITCH, path) == 0


async def test_todays_runtime_survives_a_restart(rig: Rig) -> None:
    await rig.client.set_value(SETTINGS, "/Settings/HEMS/Mode", Variant("i", 1))

    def runtime(app: App) -> float:
        plan = app.loop.controller.plan if app.loop else None
        return plan.decision("heater").runtime if plan else 0.0

    await wait_until(lambda: runtime(rig.app) >= 1.0, what="a second of runtime")
    rig.stop.set()
    await asyncio.wait_for(rig.task, 10)
    ran = runtime(rig.app)
    async with restarted(rig) as again:
        await wait_until(lambda: runtime(again) > 0, what="a first cycle after the restart")
        # Kept to a tenth of a second.
        assert runtime(again) >= ran - 0.1, "today's runtime goes on from where it was"


@asynccontextmanager
async def restarted(rig: Rig) -> AsyncIterator[App]:
    """The appliance started again on the rig's bus and settings (after its own stopped)."""
    again = App(rig.app.options, rig.app.rules)
    stop = asyncio.Event()
    task = asyncio.create_task(again.run(stop))
    await asyncio.wait_for(again.ready.wait(), 10)
    try:
        yield again
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_simulated_settings_follow_localsettings(dbus_daemon: DbusDaemon) -> None:
    async with SimulatedSettings(dbus_daemon.address):
        bus = await connect(dbus_daemon.address)
        settings = SettingsClient(BusClient(bus))
        await settings.wait(5)
        first = "/Settings/Devices/a/ClassAndVrmInstance"
        second = "/Settings/Devices/b/ClassAndVrmInstance"
        values = await settings.add(
            [
                Setting(first, Variant("s", "battery:200")),
                Setting(second, Variant("s", "battery:200")),
            ]
        )
        assert values == {first: "battery:200", second: "battery:201"}
        mode = Setting("/Settings/X/Mode", Variant("i", 0), Variant("i", 0), Variant("i", 1))
        assert await settings.add([mode]) == {mode.path: 0}
        assert await settings.set(mode.path, Variant("i", 1))
        assert not await settings.set(mode.path, Variant("i", 5))  # out of range: -1
        assert not await settings.set(mode.path, Variant("s", "x"))  # wrong type: -1
        assert await settings.add([mode]) == {mode.path: 1}  # an existing value is kept
        with pytest.raises(DbusError, match="error -5"):
            await settings.add([Setting(mode.path, Variant("s", "text"))])
        with pytest.raises(DbusError, match="error -9"):
            await settings.add([Setting("/Elsewhere/Y", Variant("i", 0))])
        bus.disconnect()


async def test_run_with_broken_rules_runs_nothing_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("consumers:\n  - {id: x, power: 1}\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hems_rules.cli", "run", "--rules", str(tmp_path),
        "--day-state", str(tmp_path / "day-state.json"),
        "--bus", "unix:path=/nonexistent", "--log-dir", str(tmp_path / "log"),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert "rules.yaml:2:5: consumers[0]: needs exactly one relay: shelly: or dbus:" in err.decode()
    assert "nothing runs" in (tmp_path / "log" / "info.log").read_text()


async def test_an_instance_changed_on_the_gx_moves_the_service(rig: Rig) -> None:
    path = "/Settings/Devices/hems_switch/ClassAndVrmInstance"
    assert await rig.client.set_value(SETTINGS, path, Variant("s", "switch:816")) == 0
    await wait_until(lambda: rig.app.loop is not None)

    async def moved() -> bool:
        try:
            return await rig.value(SWITCH, "/DeviceInstance") == 816
        except DBusError:  # between releasing the name and requesting it again
            return False

    for _ in range(100):
        if await moved():
            break
        await asyncio.sleep(0.05)
    assert await moved()


async def test_hems_rules_run_stops_on_sigterm_and_releases(
    dbus_daemon: DbusDaemon, tmp_path: Path
) -> None:
    async with (
        SimulatedSettings(dbus_daemon.address) as settings,
        SimulatedSystem(dbus_daemon.address) as system,
        EmulatedShelly() as device,
    ):
        system.update(SUNNY)
        history = tmp_path / "history"
        (tmp_path / "rules.yaml").write_text(
            "site: {phases: 1, battery_reservation: 0,\n"
            f"  history: {{path: '{history}'}}, web: {{port: 0, bind: 127.0.0.1}}}}\n"
            "consumers:\n"
            f"  - {{id: h, shelly: {{host: 127.0.0.1, port: {device.port}}}, power: 1000}}\n"
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hems_rules.cli", "run", "--rules", str(tmp_path),
            "--day-state", str(tmp_path / "day-state.json"),
            "--bus", dbus_daemon.address, "--log-dir", str(tmp_path / "log"), "--poll", "0.2s",
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        bus = await connect(dbus_daemon.address)
        client = BusClient(bus)
        try:
            await wait_until(lambda: "/Settings/HEMS/Mode" in settings.items, timeout=20)
            settings.set("/Settings/HEMS/Mode", 1)
            info = tmp_path / "log" / "info.log"
            await wait_until(
                lambda: device.switches[0].output,
                timeout=10,
                what=lambda: (
                    f"relay on; the log says:\n{info.read_text() if info.exists() else ''}"
                ),
            )
            log = info.read_text()
            page = re.search(r"status page on (http://127.0.0.1:\d+/)", log)
            assert page, log
            async with (
                aiohttp.ClientSession() as http,
                http.get(page[1] + "api/state") as response,
            ):
                state = await response.json()
            assert [c["id"] for c in state["consumers"]] == ["h"]
            process.terminate()
            assert await asyncio.wait_for(process.wait(), 15) == 0
            assert not device.switches[0].output, "released on SIGTERM"
            assert not await client.owner(SWITCH)
            assert "releasing h" in (tmp_path / "log" / "info.log").read_text()
            # The last batch was written on the way out.
            store = HistoryStore(history)
            store.open(create=False)
            assert len(store.days()) == 1
            store.close()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            bus.disconnect()


async def test_sigterm_while_waiting_for_localsettings_ends_run(
    dbus_daemon: DbusDaemon, tmp_path: Path
) -> None:
    """`svc -d` must work at any time, also while start-up waits for a late localsettings."""
    (tmp_path / "rules.yaml").write_text("site: {phases: 1}\nconsumers: []\n")
    log = tmp_path / "log" / "info.log"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hems_rules.cli", "run", "--rules", str(tmp_path),
        "--day-state", str(tmp_path / "day-state.json"),
        "--bus", dbus_daemon.address, "--log-dir", str(tmp_path / "log"),
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_until(
            lambda: log.exists() and "waiting for com.victronenergy.settings" in log.read_text(),
            timeout=20,
            what="start-up waiting for localsettings",
        )
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert "stopped during start-up" in log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_cyclic_save_shows_on_rules_error_and_the_next_save_is_used(
    rig: Rig, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    good = rules.read_text()
    rules.write_text("&a [*a, *a]\n")

    async def shown() -> str:
        value = await rig.value(SWITCH, "/Hems/RulesError")
        assert isinstance(value, str)
        return value

    for _ in range(100):
        if "refers to a value that contains it" in await shown():
            break
        await asyncio.sleep(0.05)
    assert "rules.yaml:1:5: YAML error: alias *a refers to a value" in await shown()
    rules.write_text(good.replace("priority: 20", "priority: 30"))
    loop = rig.app.loop
    assert loop is not None
    await wait_until(
        lambda: loop.controller.rules.consumer("heater").priority == 30, what="the next save"
    )
    assert await shown() == ""


async def test_an_invalid_auto_setting_is_not_read_as_auto_on(rig: Rig) -> None:
    rig.stop.set()
    await asyncio.wait_for(rig.task, 10)
    rig.settings.set("/Settings/HEMS/Auto/heater", None)  # a broken settings file: []
    async with restarted(rig) as again:
        assert again.inputs.auto["heater"] == 0
        number = again.numbers.numbers["heater"]
        assert await rig.value(SWITCH, f"/Devices/{number}/S2/Auto") == 0


async def test_settings_are_scanned_once_and_reloads_add_no_watches(
    rig: Rig, tmp_path: Path
) -> None:
    assert rig.settings.scans == 1, "one GetItems of localsettings for every setting followed"
    assert rig.app.watcher is not None
    rules = (tmp_path / "rules.yaml").read_text()
    before = await all_match_rules(rig.client)
    for n in range(6):  # the heater's VRM battery, and its instance setting, come and go
        (tmp_path / "rules.yaml").write_text(rules if n % 2 else rules.replace("vrm: true", ""))
        assert await rig.app.watcher.reload()
    heater_battery = "com.victronenergy.battery.hems_heater"
    for _ in range(500):  # the VRM battery view follows a reload in a task of its own
        if await rig.client.owner(heater_battery):
            break
        await asyncio.sleep(0.01)
    assert await all_match_rules(rig.client) == before
    # localsettings restarting: every setting followed comes back with one scan.
    rig.settings.scans = 0
    await rig.settings.close()
    await rig.settings.register()
    await wait_until(lambda: rig.settings.scans >= 1, what="the rescan")
    await rig.client.owner(SETTINGS)  # the app has seen it come back too
    assert (await rig.client.call(SETTINGS, "/", "GetText"))[0]  # after any scan it started
    assert rig.settings.scans == 1


async def test_a_reload_as_run_stops_starts_nothing_new(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGHUP (`svc -h`) as run stopped reloaded the rules into components already
    closed: an HTTP variable the edit added was polled by a task that nothing ended
    (asyncio.run cancels such a task once at exit; one that lost that cancellation, as
    aiohttp 3.9 can, hung the exit for good)."""
    rules = tmp_path / "rules.yaml"
    url = f"http://127.0.0.1:{rig.pump.port}/rpc/Switch.GetStatus?id=0"
    rules.write_text(
        rules.read_text()
        + f"variables:\n  pump_power: {{http: {{url: '{url}', json: apower, every: 1s}}}}\n"
    )
    releasing = asyncio.Event()

    async def load_during_the_release(watcher: RulesWatcher) -> RuleSet:
        await releasing.wait()
        return load_rules(watcher.directory)

    release = Relays.release

    async def release_after_the_reload(relays: Relays, ids: Iterable[str]) -> None:
        releasing.set()
        for _ in range(3):  # the reload, if any, goes first
            await asyncio.sleep(0)
        await release(relays, ids)

    monkeypatch.setattr(RulesWatcher, "_load", load_during_the_release)
    monkeypatch.setattr(Relays, "release", release_after_the_reload)
    rig.stop.set()
    rig.app.reload()  # SIGHUP, as the SIGTERM's stop begins
    assert await asyncio.wait_for(rig.task, 10) == 0
    ours = [t for t in asyncio.all_tasks() if "hems_rules" in repr(t.get_coro())]
    assert ours == [], "tasks left running"
    assert rig.app.watcher is not None and rig.app.watcher.reloads == 0
