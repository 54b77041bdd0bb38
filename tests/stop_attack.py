"""Signals at unlucky moments: `hems-rules run` must always stop promptly and cleanly.

    python -m tests.stop_attack [--tries 100] [--seed 1] [--only MOMENT]

On a GX, `svc -d` sends SIGTERM once and never kills: a `run` that does not exit keeps
the relays as they are and cannot be restarted. Each try starts `run` as a process on
a private bus with the simulated GX, three emulated Shellies (one also polled as an
HTTP variable), a mosquitto (an MQTT variable) and the history and page, then signals
it at a random point of one moment (below). Checked every try: it exits within
`PROMPT` seconds with 0; every relay it switched is off again (but the `keep` one);
no process of its session is left; its bus name is gone. A try that hangs gets
SIGUSR2, which makes `run` print every asyncio task's coroutine chain to its log.

Run it with the interpreter to test (the GX stack: .venv-gx/bin/python with PYTHONPATH
as tests/gx_stack.sh sets it). Not part of `make test`: a randomized kill loop finds
windows, a unit test then pins each one down by construction.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from hems_rules.dbus.client import BusClient
from hems_rules.dbus.connection import connect
from hems_rules.demo.broker import Mosquitto
from hems_rules.demo.bus import PrivateBus
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly, EmulatedSwitch
from tests.processes import processes

SWITCH = "com.victronenergy.switch.hems"
SLOW = 5.0  # s: a stop this slow shows its log
PROMPT = 10.0  # s from the signal to the exit; a release to a hung Shelly takes its 4 s
SUNNY = {
    "/Ac/PvOnGrid/L1/Power": 6000.0,
    "/Ac/Consumption/L1/Power": 300.0,
    "/Dc/Pv/Power": 0.0,
    "/Dc/Battery/Soc": 60.0,
    "/Dc/Battery/Power": 0.0,
    "/Dc/Battery/Voltage": 52.0,
}
DARK = {**SUNNY, "/Ac/PvOnGrid/L1/Power": 0.0}
RULES = """\
site:
  phases: 1
  loop_interval: 1s
  battery_reservation: 0
  mqtt: {{host: 127.0.0.1, port: {mqtt}}}
  history: {{path: "{history}"}}
  web: {{port: 0, bind: 127.0.0.1, control: true, password: attack-pw}}
variables:
  tank: {{mqtt: {{topic: attack/tank, json: value}}}}
  pump_power: {{http: {{url: "http://127.0.0.1:{p0}/rpc/Switch.GetStatus?id=0",
               json: apower, every: 1s}}}}
consumers:
  - {{id: pump, shelly: {{host: 127.0.0.1, port: {p0}}}, power: 600, priority: {prio}}}
  - {{id: rod, shelly: {{host: 127.0.0.1, port: {p1}}}, power: 1500, priority: 20,
     auto_when: "tank < 80"}}
  - {{id: kept, shelly: {{host: 127.0.0.1, port: {p2}}}, power: 1000, priority: 30,
     on_release: keep}}
"""
KEPT = 2  # the device of the `keep` consumer
# Run as `python -c DUMPER run ...`: SIGUSR2 prints every task's coroutine chain.
DUMPER = """
import asyncio, signal, sys

def chain(coro):
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            yield f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)

def dump(signum, frame):
    for task in asyncio.all_tasks():
        print("TASK", task.get_name(), "cancelling", task.cancelling(), file=sys.stderr)
        for line in chain(task.get_coro()):
            print("   ", line, file=sys.stderr)
    sys.stderr.flush()

# A plain handler: run's own modules load as they do without it, in the same order.
signal.signal(signal.SIGUSR2, dump)
from hems_rules.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Attack:
    def __init__(self, directory: Path, seed: int) -> None:
        self.directory = directory
        self.random = random.Random(seed)
        self.tries: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.stop_times: list[float] = []
        self.set_seen: asyncio.Event | None = None
        self.stalled: asyncio.StreamWriter | None = None
        self.frozen: subprocess.Popen[bytes] | None = None

    async def run(self, tries: int, only: str | None) -> int:
        with PrivateBus() as bus:
            self.address = bus.address
            self.broker = Mosquitto(self.directory)
            self.broker.start()
            try:
                await self._run(tries, only)
            finally:
                self.broker.stop()
        return self._report()

    async def _run(self, tries: int, only: str | None) -> None:
        self.settings = SimulatedSettings(self.address)
        self.system = SimulatedSystem(self.address)
        await self.settings.register()
        self.system.update(SUNNY)
        await self.system.register()
        self.devices = [EmulatedShelly(loads=[w]) for w in (600.0, 1500.0, 1000.0)]
        for device in self.devices:
            await device.start()
            self._watch_sets(device)
        async with aiomqtt.Client("127.0.0.1", self.broker.port) as mqtt:
            await mqtt.publish("attack/tank", '{"value": 50}', retain=True)
        self.client = BusClient(await connect(self.address))
        moments: dict[str, Callable[[], Awaitable[None]]] = {
            "startup": self._startup,
            "startup-hung-shelly": self._startup_hung_shelly,
            "steady": self._steady,
            "steady-hung-shelly": self._steady_hung_shelly,
            "reload": self._reload,
            "after-switch-set": self._after_switch_set,
            "sighup-then-stop": self._sighup_then_stop,
            "stop-then-sighup": self._stop_then_sighup,
            "page-streaming": self._page_streaming,
            "page-slow-client": self._page_slow_client,
            "broker-hung": self._broker_hung,
        }
        names = [only] if only else list(moments)
        try:
            for n in range(tries):
                moment = names[n % len(names)]
                self.tries[moment] += 1
                await self._try(n, moment, moments[moment])
        finally:
            self.client.bus.disconnect()
            for device in self.devices:
                await device.stop()
            await self.system.close()
            await self.settings.close()

    def _watch_sets(self, device: EmulatedShelly) -> None:
        """Tell `set_seen` whenever the device's relay is switched (Switch.Set)."""
        original = device._set

        def watched(switch: EmulatedSwitch, on: bool, toggle_after: Any) -> None:
            original(switch, on, toggle_after)
            if self.set_seen is not None:
                self.set_seen.set()

        device._set = watched  # type: ignore[method-assign]

    # -- one try ---------------------------------------------------------------------

    async def _try(self, n: int, moment: str, attack: Callable[[], Awaitable[None]]) -> None:
        for device in self.devices:
            device.fault = None
            device.switches[0].output = False
        self.system.update(SUNNY)
        here = self.directory / f"try{n}"
        rules = here / "rules"
        rules.mkdir(parents=True)
        self.rules = rules / "rules.yaml"
        self._write_rules(prio=10)
        self.log_path = here / "run.log"
        self.stop_signal = self.random.choice([signal.SIGTERM, signal.SIGINT])
        self.signalled_at: float | None = None
        with open(self.log_path, "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", DUMPER, "run", "--rules", str(rules),
                "--bus", self.address, "--poll", "0.3", "--log-dir", str(here / "logs"),
                "--day-state", str(here / "day-state.json"),
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        self.started = time.monotonic()
        try:
            await attack()
            if self.signalled_at is None:
                self._signal(self.stop_signal)
            await self._check(n, moment)
        finally:
            if self.frozen is not None:
                self.frozen.send_signal(signal.SIGCONT)
                self.frozen = None
            if self.stalled is not None:
                self.stalled.close()
                self.stalled = None
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            self._kill_session()

    def _write_rules(self, prio: int) -> None:
        ports = {f"p{i}": d.port for i, d in enumerate(self.devices)}
        history = self.rules.parent.parent / "history"
        self.rules.write_text(
            RULES.format(mqtt=self.broker.port, history=history, prio=prio, **ports)
        )

    def _signal(self, sig: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        if sig != signal.SIGHUP and self.signalled_at is None:
            self.signalled_at = time.monotonic()
            self.on_at_signal = [i for i, d in enumerate(self.devices) if d.switches[0].output]

    async def _check(self, n: int, moment: str) -> None:
        what = f"try {n} ({moment}, {signal.Signals(self.stop_signal).name})"
        assert self.signalled_at is not None
        try:
            code = await asyncio.wait_for(self.process.wait(), PROMPT)
        except TimeoutError:
            self.process.send_signal(signal.SIGUSR2)
            await asyncio.sleep(1.0)
            self._fail(
                f"{what}: still running {PROMPT:g} s after the signal, sent"
                f" {self.signalled_at - self.started:.2f} s after the start",
                dump=True,
            )
            return
        took = time.monotonic() - self.signalled_at
        self.stop_times.append(took)
        if code != 0:
            self._fail(f"{what}: exit code {code}", dump=True)
        on = [i for i, d in enumerate(self.devices) if i != KEPT and d.switches[0].output]
        hung = {i for i, d in enumerate(self.devices) if d.fault == "timeout"}
        if set(on) - hung:
            self._fail(f"{what}: relays {on} left on", dump=True)
        left = self._session_processes()
        if left:
            self._fail(f"{what}: processes left behind: {left}")
        if await self.client.owner(SWITCH):
            self._fail(f"{what}: {SWITCH} still on the bus")
        print(
            f"stop-attack: {what} exited {code} in {took:.2f} s"
            f" (signalled {self.signalled_at - self.started:.2f} s after the start,"
            f" relays {self.on_at_signal} were on)",
            flush=True,
        )
        if took > SLOW:
            print(self.log_path.read_text(errors="replace")[-3000:], flush=True)

    def _fail(self, what: str, *, dump: bool = False) -> None:
        self.failures.append(what)
        print(f"stop-attack: FAILED {what}", flush=True)
        if dump:
            print(self.log_path.read_text(errors="replace")[-6000:], flush=True)

    def _session_processes(self) -> list[str]:
        # run was started in a session of its own: its pid is the session's id.
        return [
            f"{p.pid} {p.command}"
            for p in processes()
            if p.session == self.process.pid and p.state != "Z"
        ]

    def _kill_session(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    # -- moments ---------------------------------------------------------------------

    async def _up(self) -> None:
        """Until the switch service is on the bus and Mode is 1 (set once, it stays)."""
        deadline = time.monotonic() + 30
        while not await self.client.owner(SWITCH):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"run did not start:\n{self.log_path.read_text()}")
            await asyncio.sleep(0.02)
        if self.settings.items.get("/Settings/HEMS/Mode") is not None:
            self.settings.set("/Settings/HEMS/Mode", 1)

    async def _some_relay_on(self, timeout: float = 8.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(d.switches[0].output for d in self.devices):
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)

    async def _later(self, low: float, high: float) -> None:
        await asyncio.sleep(self.random.uniform(low, high))

    async def _startup(self) -> None:
        await self._later(0.0, 3.0)  # imports, localsettings, first decision, sources

    async def _startup_hung_shelly(self) -> None:
        self.devices[self.random.randrange(len(self.devices))].fault = "timeout"
        await self._later(0.0, 6.0)  # past its 4 s RPC timeout

    async def _steady(self) -> None:
        await self._up()
        await self._some_relay_on()
        await self._later(0.0, 2.0)

    async def _steady_hung_shelly(self) -> None:
        await self._up()
        await self._some_relay_on()
        self.devices[self.random.randrange(len(self.devices))].fault = "timeout"
        await self._later(3.0, 5.5)  # around its RPC timeout

    async def _reload(self) -> None:
        await self._up()
        await self._some_relay_on()
        if self.random.random() < 0.5:
            self._write_rules(prio=self.random.choice([5, 40]))  # the watcher sees it
            await self._later(0.5, 2.0)
        else:
            self._signal(signal.SIGHUP)
            await self._later(0.0, 0.3)

    async def _after_switch_set(self) -> None:
        await self._up()
        await self._some_relay_on()
        self.set_seen = asyncio.Event()
        self.system.update(DARK if self.random.random() < 0.5 else SUNNY)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.set_seen.wait()
        self.set_seen = None
        await self._later(0.0, 0.05)

    async def _sighup_then_stop(self) -> None:
        await self._up()
        for _ in range(self.random.randrange(1, 5)):
            self._signal(signal.SIGHUP)
            await self._later(0.0, 0.2)
        if self.process.returncode is not None:
            self._fail(f"SIGHUP ended run with {self.process.returncode}", dump=True)

    async def _stop_then_sighup(self) -> None:
        await self._up()
        await self._some_relay_on()
        self._signal(self.stop_signal)
        await self._later(0.0, 0.3)
        self._signal(signal.SIGHUP)  # a reload while it shuts down
        await asyncio.sleep(0.5)

    async def _broker_hung(self) -> None:
        """The broker accepts connections but answers nothing (SIGSTOP, until the check
        is over): MQTT connects and subscribes that never finish, or a session gone mute."""
        assert self.broker.process is not None
        self.broker.process.send_signal(signal.SIGSTOP)
        self.frozen = self.broker.process
        await self._later(0.0, 6.0)

    async def _page_port(self) -> int | None:
        await self._up()
        await self._some_relay_on()
        text = self.log_path.read_text(errors="replace")
        marker = "status page on http://127.0.0.1:"
        if marker not in text:
            return None
        return int(text.split(marker, 1)[1].split("/", 1)[0])

    async def _page_slow_client(self) -> None:
        """A client that sends a control request's headers and then stalls (a phone
        that lost its Wi-Fi, or someone on the LAN who means it)."""
        port = await self._page_port()
        if port is None:
            return
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/auto HTTP/1.1\r\nHost: 127.0.0.1\r\nX-HEMS-Request: 1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        self.stalled = writer  # open until the check is over
        await self._later(0.1, 0.5)

    async def _page_streaming(self) -> None:
        port = await self._page_port()
        if port is None:
            return
        async with aiohttp.ClientSession() as http:
            streams = [asyncio.ensure_future(self._stream(http, port)) for _ in range(2)]
            await self._later(0.2, 1.5)
            self._signal(self.stop_signal)
            await asyncio.wait(streams, timeout=PROMPT)
            for stream in streams:
                stream.cancel()

    async def _stream(self, http: aiohttp.ClientSession, port: int) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"http://127.0.0.1:{port}/api/live") as response:
                async for _ in response.content:
                    pass

    def _report(self) -> int:
        times = sorted(self.stop_times)
        print(f"stop-attack: Python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}")
        print(f"stop-attack: tries {dict(self.tries)}, {len(self.failures)} failed")
        if times:
            print(
                f"stop-attack: signal to exit median {times[len(times) // 2]:.2f} s, "
                f"max {times[-1]:.2f} s"
            )
        return 1 if self.failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="one moment only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hems-stop-") as directory:
        return asyncio.run(Attack(Path(directory), args.seed).run(args.tries, args.only))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
