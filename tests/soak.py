"""A fault soak: `hems-rules run` as a process, attacked for a while, watched throughout.

    python -m tests.soak [--duration 60s] [--seed 1]       (make soak SOAK=10m)

The process runs as the installer runs it on a GX, under softlimit's limits (prlimit
when daemontools is not installed), on a private bus with a simulated GX, four emulated
Shellies, a mosquitto and a meter that lags 1.5 s behind the relays. A cloudy day,
twenty times faster than real time, drives PV, house load, SOC and the tank (over MQTT).

Faults, one at a time (so that each can be matched with its log lines): a Shelly that
goes away (power cut), hangs, answers garbage, or refuses the password; the broker
restarting; com.victronenergy.system vanishing; a reservation equation that fails.
Meanwhile, in parallel: rule edits good and bad, Auto and Mode toggles, and D-Bus writes
of the wrong type.

Checked all along: the inverter limit (no managed load left on a phase over the limit
for longer than the engine needs to see it and shed); no secondary running while the
reservation fails (beyond min_on and that same reaction time); the process alive.
Checked at the end: no task failed, restarted or ended; RSS and open fds flat; every
fault logged once and its recovery once; SIGTERM ends it with 0 and every relay off.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from dbus_fast import Variant

from hems_rules.core.inputs import SystemValue
from hems_rules.dbus.client import BusClient
from hems_rules.dbus.connection import connect
from hems_rules.demo.broker import Mosquitto
from hems_rules.demo.bus import PrivateBus
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly
from hems_rules.ruleset import load_rules
from hems_rules.ruleset.durations import parse_duration
from hems_rules.ruleset.rules import PHASES, RuleSet
from hems_rules.simulate.day import Cloud, SolarDay
from hems_rules.simulate.meter import LaggingMeter

SWITCH = "com.victronenergy.switch.hems"
SETTINGS = "com.victronenergy.settings"
# The installer's service/run: softlimit -d 100000000 -s 1000000 -a 100000000 python3 -OO ...
LIMITS = ("-d", "100000000", "-s", "1000000", "-a", "100000000")
PYTHON_OPTIONS = ("-OO", "-X", "no_debug_ranges", "-u")
SPEED = 20.0  # simulated seconds per second, for the day only (rules' timers are real)
LAG = 1.5  # s the meter is behind the relays
# How long the engine may take to see a change and act: a loop interval, the meter's
# lag, a relay poll and its command, and a margin for a loaded machine.
REACT = 1.0 + LAG + 0.5 + 2.5
CIP = 1500.0
PASSWORD = "pw"

RULES = """\
site:
  phases: 3
  loop_interval: 1s
  battery_reservation: "{reservation}"
  continuous_inverter_power: {cip:g}
  mqtt: {{host: 127.0.0.1, port: {mqtt}}}
  history: {{path: "{history}"}}
  web: {{port: 0, bind: 127.0.0.1}}
variables:
  tank_temp: {{mqtt: {{topic: soak/tank, json: value, stale_after: 30s}}}}
consumers:
  - {{id: pump, name: Pool pump, shelly: {{host: 127.0.0.1, port: {p0}, password: {pw}}},
     power: 600, phase: L1, priority: 10, class: primary, min_on: 4s, min_off: 3s}}
  - {{id: rod_l1, name: Rod L1, shelly: {{host: 127.0.0.1, port: {p1}, password: {pw}}},
     power: 1500, phase: L1, priority: 20, min_on: 1s, min_off: 2s,
     auto_when: "tank_temp < 75"}}
  - {{id: rod_l2, name: Rod L2, shelly: {{host: 127.0.0.1, port: {p2}, password: {pw}}},
     power: 1500, phase: L2, priority: 30, min_on: 1s, min_off: 2s,
     auto_when: "tank_temp < 75"}}
  - {{id: heater, name: Heater 3P, shelly: {{host: 127.0.0.1, port: {p3}, password: {pw}}},
     power: 3000, phase: 3P, priority: 40, min_on: 1s, min_off: 2s}}
"""
GOOD_RESERVATIONS = ("3000 - SOC * 30 if SOC < 95 else 0", "2500 - SOC * 25 if SOC < 95 else 0")
BAD_RULES = "site: {phases: 3\n"  # a save half done
FAILING_EQUATIONS = ("1/0", "SOC / (SOC - SOC)", "abs")

# What the process logs for each fault and its recovery (health.py, client.py, watch.py).
UNAVAILABLE = r"{name} unavailable: "
CONFIG_FAULT = r"{name}: configuration fault, the user must act: "
AVAILABLE = r"{name} available again"
TROUBLE = re.compile(
    r"Traceback|task .* failed| failed$|restarting |ended although|stopping because|CRITICAL"
)


def _limit_command() -> list[str]:
    if shutil.which("softlimit"):
        return ["softlimit", *LIMITS]
    # daemontools is not installed: the same limits with util-linux's prlimit.
    return ["prlimit", "--data=100000000", "--stack=1000000", "--as=100000000"]


@dataclass
class Tally:
    """What was done, and the failures seen."""

    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    actions: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    expected: collections.Counter[str] = field(default_factory=collections.Counter)

    def fail(self, what: str) -> None:
        if what not in self.failures:
            self.failures.append(what)
            print(f"soak: FAILED {what}", flush=True)


class World:
    """The GX's readings as the day makes them, with a meter that lags behind the relays."""

    def __init__(
        self, rules: RuleSet, system: SimulatedSystem, shellies: dict[str, EmulatedShelly]
    ):
        self.rules = rules
        self.system = system
        self.shellies = shellies
        self.present = True  # com.victronenergy.system on the bus
        self.base: dict[str, float] = {}
        self.tank: float | None = None
        self._meter = LaggingMeter(LAG)

    def drawn(self, consumer_id: str) -> float:
        device = self.shellies[consumer_id]
        switch = device.switches[0]
        return switch.load if switch.output else 0.0

    def draws(self) -> Mapping[str, float]:
        return {c.id: self.drawn(c.id) for c in self.rules.consumers}

    def per_phase(self, only: Callable[[str], bool] = lambda _: True) -> dict[str, float]:
        loads: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        for consumer in self.rules.consumers:
            if only(consumer.id):
                for phase, watts in consumer.shares(self.drawn(consumer.id)):
                    loads[phase] += watts
        return loads

    def update_system(self, values: Mapping[str, SystemValue] | None) -> None:
        self.base.update({k: float(v) for k, v in (values or {}).items() if v is not None})
        now = time.monotonic()
        lagged = dict.fromkeys(PHASES, 0.0)
        for consumer in self.rules.consumers:
            self._meter.record(consumer.id, self.drawn(consumer.id), now)
            for phase, watts in consumer.shares(self._meter.shown(consumer.id, now)):
                lagged[phase] += watts
        metered = dict(self.base)
        for phase in PHASES:
            metered[f"/Ac/Consumption/{phase}/Power"] = round(
                self.base[f"/Ac/Consumption/{phase}/Power"] + lagged[phase], 1
            )
        if self.present:
            self.system.update(metered)

    def set_variable(self, name: str, value: float | None, t: float) -> None:
        if name == "tank_temp":
            self.tank = value


class Soak:
    def __init__(self, duration: float, seed: int, directory: Path) -> None:
        self.duration = duration
        self.random = random.Random(seed)
        self.directory = directory
        self.tally = Tally()
        self.excluded: dict[str, float] = {}  # consumer -> until when its relay is not ours
        self.reservation_fails_since: float | None = None
        self.samples: list[tuple[float, int, int]] = []  # (t, RSS kB, fds)
        self.ending = False  # no new fault or poke; those under way finish
        self.overloads = 0  # times a phase went over the limit with managed loads on it
        self.reservation_failures = 0

    # -- set-up ------------------------------------------------------------------------

    async def run(self) -> int:
        with PrivateBus() as bus:
            self.broker = Mosquitto(self.directory)
            self.broker.start()
            try:
                return await self._run(bus.address)
            finally:
                self.broker.stop()

    def rules_text(self, reservation: str) -> str:
        ports = {f"p{i}": self.devices[i].port for i in range(4)}
        return RULES.format(
            reservation=reservation,
            cip=CIP,
            mqtt=self.broker.port,
            pw=PASSWORD,
            history=self.directory / "history",  # the history and the page soak along
            **ports,
        )

    async def _run(self, address: str) -> int:
        self.address = address
        self.settings = SimulatedSettings(address)
        self.system = SimulatedSystem(address)
        await self.settings.register()
        loads = (600.0, 1500.0, 1500.0, 3000.0)  # what each consumer draws when on
        self.devices = [EmulatedShelly(loads=[w], password=PASSWORD) for w in loads]
        for device in self.devices:
            await device.start()
        self.rules_dir = self.directory / "rules"
        self.rules_dir.mkdir()
        self.rules_file = self.rules_dir / "rules.yaml"
        self.rules_file.write_text(self.rules_text(GOOD_RESERVATIONS[0]))
        rules = load_rules(self.rules_dir)
        ids = [c.id for c in rules.consumers]
        self.shellies = dict(zip(ids, self.devices, strict=True))
        self.secondaries = [c.id for c in rules.consumers if not c.primary]
        self.world = World(rules, self.system, self.shellies)
        self.day = SolarDay(
            start_h=10.0, ac_pv_peak=3000, dc_pv_peak=9000, soc=60.0, tank_temp=60.0,
            tank_heaters=("rod_l1", "rod_l2"), seed=self.random.randrange(1000),
        )  # fmt: skip
        for n in range(40):  # a cloudy day: a cloud every few simulated minutes
            self.day.clouds += (Cloud(9 * 3600 + n * 400, self.random.uniform(60, 300), 0.7),)
        self.day.apply(0.0, self.world)
        await self.system.register()
        log_path = self.directory / "run.log"
        with open(log_path, "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *_limit_command(),
                sys.executable, *PYTHON_OPTIONS, "-m", "hems_rules.cli", "run",
                "--rules", str(self.rules_dir),
                "--bus", address, "--poll", "0.5", "--log-dir", str(self.directory / "logs"),
                "--day-state", str(self.directory / "day-state.json"),
                stdout=log, stderr=log,
            )  # fmt: skip
            try:
                await self._soak(log_path)
            finally:
                if self.process.returncode is None:
                    self.process.kill()
                    await self.process.wait()
                for device in self.devices:
                    await device.stop()
                await self.system.close()
                await self.settings.close()
        self._check_log(log_path.read_text(errors="replace"))
        return self._report()

    async def _soak(self, log_path: Path) -> None:
        self.client = BusClient(await connect(self.address))
        deadline = time.monotonic() + 30
        while not await self.client.owner(SWITCH):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"run did not start:\n{log_path.read_text()}")
            await asyncio.sleep(0.1)
        self.numbers = {}
        items = await self.client.get_items(SWITCH)
        for path, value in items.items():
            if path.endswith("/Name"):
                name = {c.name: c.id for c in self.world.rules.consumers}[str(value)]
                self.numbers[name] = int(path.split("/")[2])
        self.settings.set("/Settings/HEMS/Mode", 1)
        self.started = time.monotonic()
        print(f"soak: started at {time.strftime('%H:%M:%S')}", flush=True)
        workers = [
            asyncio.create_task(self._drive_day()),
            asyncio.create_task(self._publish_tank()),
            asyncio.create_task(self._watch()),
            asyncio.create_task(self._sample()),
        ]
        attacks = [asyncio.create_task(self._faults()), asyncio.create_task(self._pokes())]
        try:
            done, _ = await asyncio.wait(
                workers + attacks, timeout=self.duration, return_when=asyncio.FIRST_EXCEPTION
            )
            self.ending = True
            if not done:
                done, _ = await asyncio.wait(attacks, timeout=30)
            for task in done:
                task.result()  # a bug in the soak itself
        finally:
            for task in workers + attacks:
                task.cancel()
            await asyncio.gather(*workers, *attacks, return_exceptions=True)
        self.samples.append(self._measure())
        await self._restore()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.tally.fail("SIGTERM did not end the process within 30 s")
            return
        if code != 0:
            self.tally.fail(f"the process exited with {code} after SIGTERM")
        left_on = [i for i, d in self.shellies.items() if d.switches[0].output]
        if left_on:
            self.tally.fail(f"relays left on after SIGTERM: {left_on}")
        self.client.bus.disconnect()

    # -- the world -----------------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.started

    async def _drive_day(self) -> None:
        while True:
            self.day.apply(self.now() * SPEED, self.world)
            await asyncio.sleep(0.25)

    async def _publish_tank(self) -> None:
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.broker.port) as client:
                    while True:
                        if self.world.tank is not None:
                            payload = json.dumps({"value": round(self.world.tank, 2)})
                            await client.publish("soak/tank", payload, retain=True)
                        await asyncio.sleep(0.5)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)  # the broker restarts; so does this publisher

    # -- continuous checks ----------------------------------------------------------------

    def controllable(self, consumer_id: str) -> bool:
        return self.excluded.get(consumer_id, 0.0) < time.monotonic()

    async def _watch(self) -> None:
        over_since: dict[str, float] = {}
        told: set[str] = set()
        while True:
            now = time.monotonic()
            if self.process.returncode is not None:
                self.tally.fail(f"the process died with {self.process.returncode}")
                raise RuntimeError("the process died")
            # The inverter limit: a phase over CIP + its PV may not keep a managed load.
            managed = self.world.per_phase(self.controllable)
            everything = self.world.per_phase()
            base = self.world.base
            for phase in PHASES:
                limit = CIP + base.get(f"/Ac/PvOnGrid/{phase}/Power", 0.0)
                used = base.get(f"/Ac/Consumption/{phase}/Power", 0.0) + everything[phase]
                if used > limit and managed[phase] > 0 and self.world.present:
                    if phase not in over_since:
                        self.overloads += 1
                    since = over_since.setdefault(phase, now)
                    if now - since > REACT and phase not in told:
                        told.add(phase)
                        self.tally.fail(
                            f"{phase}: {used:.0f} W over the {limit:.0f} W limit for "
                            f"{now - since:.1f} s with {managed[phase]:.0f} W of managed loads "
                            f"({', '.join(self._running())} on) at {self.now():.1f} s"
                        )
                else:
                    over_since.pop(phase, None)
                    told.discard(phase)
            # No secondary while the reservation fails (min_on 1 s, then the reaction).
            fails = self.reservation_fails_since
            if fails is not None and now - fails > REACT + 1.0:
                running = [
                    i
                    for i in self.secondaries
                    if self.controllable(i) and self.shellies[i].switches[0].output
                ]
                if running:
                    self.tally.fail(f"secondaries {running} ran while the reservation failed")
                    self.reservation_fails_since = None  # told once
            await asyncio.sleep(0.1)

    def _running(self) -> list[str]:
        return [i for i, d in self.shellies.items() if d.switches[0].output]

    def _measure(self) -> tuple[float, int, int]:
        pid = self.process.pid
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return self.now(), rss, len(os.listdir(f"/proc/{pid}/fd"))

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            self.samples.append(self._measure())

    # -- faults, one at a time ------------------------------------------------------------

    async def _faults(self) -> None:
        await asyncio.sleep(5.0)  # let it settle first
        kinds = ["away", "hang", "garbage", "password", "broker", "system", "equation"]
        while not self.ending:
            kind = self.random.choice(kinds)
            self.tally.faults[kind] += 1
            if kind in ("away", "hang", "garbage", "password"):
                consumer_id = self.random.choice(list(self.shellies))
                await self._device_fault(kind, consumer_id)
            elif kind == "broker":
                self.broker.stop()
                await asyncio.sleep(self.random.uniform(2, 5))
                self.broker.start()
                self.tally.expected["broker"] += 1
            elif kind == "system":
                self.world.present = False
                self.reservation_fails_since = time.monotonic()
                self.reservation_failures += 1
                await self.system.close()
                await asyncio.sleep(self.random.uniform(9, 12))  # past the reaction time
                self.world.present = True
                self.day.apply(self.now() * SPEED, self.world)
                await self.system.register()
                self.reservation_fails_since = None
                self.tally.expected["system"] += 1
            else:
                equation = self.random.choice(FAILING_EQUATIONS)
                self.settings.set("/Settings/HEMS/BatteryReservationEquation", equation)
                self.reservation_fails_since = time.monotonic()
                self.reservation_failures += 1
                await asyncio.sleep(self.random.uniform(9, 12))  # past the reaction time
                self.settings.set("/Settings/HEMS/BatteryReservationEquation", "")
                self.reservation_fails_since = None
            await asyncio.sleep(self.random.uniform(3, 5))  # recovered, and seen to be

    async def _device_fault(self, kind: str, consumer_id: str) -> None:
        device = self.shellies[consumer_id]
        port = device.port
        if kind == "away":
            device.power_cut()
            await device.stop()
            await asyncio.sleep(self.random.uniform(2, 5))
            await device.start()
            assert device.port == port
        else:
            # The relay keeps whatever state it had, out of the engine's reach meanwhile.
            self.excluded[consumer_id] = float("inf")
            if kind == "hang":
                device.fault = "timeout"
                await asyncio.sleep(self.random.uniform(9, 12))  # past the 4 s RPC timeout
                device.fault = None
            elif kind == "garbage":
                device.fault = "garbage"
                await asyncio.sleep(self.random.uniform(2, 5))
                device.fault = None
            else:
                device.password = "changed on the device"
                await asyncio.sleep(self.random.uniform(2, 5))
                device.password = PASSWORD
            self.excluded[consumer_id] = time.monotonic() + REACT + 4.0  # min_on of the pump
        self.tally.expected[f"{'config' if kind == 'password' else 'device'}:{consumer_id}"] += 1

    # -- pokes, in parallel -------------------------------------------------------------

    async def _pokes(self) -> None:
        await asyncio.sleep(3.0)
        kinds = ["good rules", "bad rules", "auto", "mode", "wrong types"]
        while not self.ending:
            kind = self.random.choice(kinds)
            self.tally.actions[kind] += 1
            if kind == "good rules":
                text = self.rules_text(self.random.choice(GOOD_RESERVATIONS))
                self.rules_file.write_text(text)
            elif kind == "bad rules":
                good = self.rules_file.read_text()
                self.rules_file.write_text(BAD_RULES)
                await asyncio.sleep(self.random.uniform(1.5, 3))
                self.rules_file.write_text(good)
                self.tally.expected["bad rules"] += 1
            elif kind == "auto":
                number = self.numbers[self.random.choice(list(self.numbers))]
                path = f"/Devices/{number}/S2/Auto"
                await self._write(path, Variant("i", 0), accepted=True)
                await asyncio.sleep(self.random.uniform(1, 3))
                await self._write(path, Variant("i", 1), accepted=True)
            elif kind == "mode":
                self.settings.set("/Settings/HEMS/Mode", 0)
                await asyncio.sleep(self.random.uniform(1, 3))
                self.settings.set("/Settings/HEMS/Mode", 1)
            else:
                number = self.numbers[self.random.choice(list(self.numbers))]
                for path, value in [
                    (f"/Devices/{number}/S2/Auto", Variant("s", "on")),
                    (f"/Devices/{number}/S2/Auto", Variant("ad", [1.0])),
                    (f"/Devices/{number}/S2/Auto", Variant("i", 7)),
                    (f"/Devices/{number}/Name", Variant("s", "renamed")),
                    ("/Hems/Active", Variant("i", 0)),
                    ("/Hems/RulesError", Variant("(is)", [1, "x"])),
                ]:
                    await self._write(path, value, accepted=False)
            await asyncio.sleep(self.random.uniform(2, 4))

    async def _write(self, path: str, value: Variant, *, accepted: bool) -> None:
        result = await self.client.set_value(SWITCH, path, value)
        if (result == 0) != accepted:
            self.tally.fail(f"SetValue {path} {value.signature} {value.value!r} answered {result}")

    async def _restore(self) -> None:
        """Everything back as configured, so that the end sees every recovery."""
        self.settings.set("/Settings/HEMS/BatteryReservationEquation", "")
        self.settings.set("/Settings/HEMS/Mode", 1)
        if not self.world.present:
            self.world.present = True
            await self.system.register()
        for device in self.devices:
            device.fault, device.password = None, PASSWORD
            if not device.running:
                await device.start()
        if self.broker.process is None:
            self.broker.start()
        self.rules_file.write_text(self.rules_text(GOOD_RESERVATIONS[0]))
        await asyncio.sleep(REACT + 2)

    # -- the log -------------------------------------------------------------------------

    def _check_log(self, text: str) -> None:
        lines = text.splitlines()
        for line in lines:
            if TROUBLE.search(line):
                self.tally.fail(f"the log says: {line}")

        def count(pattern: str) -> int:
            return sum(1 for line in lines if re.search(pattern, line))

        expected = self.tally.expected
        for consumer_id in self.shellies:
            name = f"relays: {consumer_id}"  # the relay worker's lines, not the engine's
            faults = expected[f"device:{consumer_id}"]
            wrong = expected[f"config:{consumer_id}"]
            got = (
                count(UNAVAILABLE.format(name=name)),
                count(CONFIG_FAULT.format(name=name)),
                count(AVAILABLE.format(name=name)),
            )
            if got != (faults, wrong, faults + wrong):
                self.tally.fail(
                    f"{consumer_id}: {faults} outages and {wrong} refused passwords were logged "
                    f"as {got[0]} unavailable, {got[1]} configuration faults and {got[2]} back"
                )
        broker = re.escape(f"MQTT broker 127.0.0.1:{self.broker.port}")
        system = r"com\.victronenergy\.system"
        for what, down, up, ups_at_start in [
            ("broker", UNAVAILABLE.format(name=broker), AVAILABLE.format(name=broker), 0),
            ("system", rf"{system} left the bus", rf"{system} is on the bus", 1),
            ("bad rules", "rules not reloaded", r"rules reloaded \(errors fixed\)", 0),
        ]:
            times = expected[what]
            logged = (count(down), count(up) - ups_at_start)
            if logged != (times, times):
                self.tally.fail(f"{times}x {what} were logged as {logged[0]} down, {logged[1]} up")

    def _report(self) -> int:
        tally = self.tally
        first = next((s for s in self.samples if s[0] >= min(20.0, self.duration / 3)), None)
        last = self.samples[-1] if self.samples else None
        if first and last:
            rss_growth, fd_growth = last[1] - first[1], last[2] - first[2]
            # Flat: a little allocator and connection-pool noise, no growth per fault.
            if rss_growth > max(8000, first[1] // 10):
                tally.fail(f"RSS grew from {first[1]} kB to {last[1]} kB")
            if fd_growth > 8:
                tally.fail(f"open fds grew from {first[2]} to {last[2]}")
        print(f"soak: ran {self.duration:g} s of run under {' '.join(_limit_command())}")
        print(f"soak: faults {dict(sorted(tally.faults.items()))}")
        print(f"soak: pokes {dict(sorted(tally.actions.items()))}")
        print(
            f"soak: a phase went over the inverter limit with managed loads on {self.overloads} "
            f"times (shed in time); the reservation failed {self.reservation_failures} times"
        )
        if first and last:
            print(
                f"soak: RSS {first[1]} kB at {first[0]:.0f} s, {last[1]} kB at {last[0]:.0f} s; "
                f"open fds {first[2]} -> {last[2]}; peak RSS {max(s[1] for s in self.samples)} kB"
            )
        checks = 8  # limit, reservation, alive, log, per-fault logs, RSS, fds, SIGTERM
        failed = min(checks, len(tally.failures))
        print(f"soak: {checks - failed} passed, {failed} failed")
        return 1 if tally.failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=parse_duration, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the rules and logs in this directory")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True)
            directory = str(args.keep)
        else:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="hems-soak-"))
        soak = Soak(args.duration, args.seed, Path(directory))
        try:
            return asyncio.run(soak.run())
        finally:
            log = Path(directory) / "run.log"
            if soak.tally.failures and log.exists():
                print("soak: the log of run follows", file=sys.stderr)
                print(log.read_text(errors="replace")[-20000:], file=sys.stderr)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
