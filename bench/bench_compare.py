"""The same workloads on the code before the speed work and on this checkout, side by side.

Absolute times on a shared machine are noise; a ratio measured in the same run is not.
The base commit is checked out into a temporary git worktree (removed afterwards) and
each workload runs once per tree, in its own process, with PYTHONPATH naming the tree:

- decide() per cycle at 10, 100 and 1000 consumers (the best of 3 rounds), and a
  simulated 24 h day at 1 s (the faster of 2 runs) (bench/workload.py);
- reaction: a value of com.victronenergy.system changes on D-Bus and `hems-rules run`
  sends `Switch.Set` to an emulated Shelly, alternately on and off;
- `hems-rules run` with 10 consumers, configured as a user gets it by default (the
  status page, the history and the day state on): start to the first decision and to
  the first `Switch.Set`, then memory and CPU at a steady state (a system value changing every
  second without changing any decision). Memory as RSS, PSS (shared pages split among
  the processes that map them), USS (pages no other process maps) and anonymous memory
  (the Python heap, never shared): on a GX, the libraries of Python itself are shared
  with a dozen Venus services, the heap is not. `run` starts from byte code, as on a GX
  after its first start, whatever PYTHONDONTWRITEBYTECODE says here, with the
  interpreter options of the tree's installer (service/run). With `.venv-gx`
  (made by `make gx-stack`) the same again on the GX's Python 3.12, dbus-fast and
  aiohttp (figures `..._gx_<tree>`); an earlier tree also gets the packages its GX
  bundle had and this one's has no more (OLDER_BUNDLE).

The harness (private dbus-daemon, simulated GX, Shelly emulators) is this checkout's for
both trees. Prints `BENCH <figure>_<tree>=value unit` and `BENCH <figure>_ratio=new/base`.

Environment: BENCH_BASE (commit, default 69329bd), BENCH_REACTION_CHANGES (1000; the
base, with its fixed 100 ms debounce, gets BENCH_REACTION_BASE_CHANGES, 200),
BENCH_STEADY_SECONDS (20), BENCH_ONLY (comma-separated: decide,day,reaction,run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from common import consumers_yaml, report
from dbus_fast import Variant

from hems_rules.dbus.client import BusClient, Values
from hems_rules.dbus.connection import connect
from hems_rules.dbus.settings import Setting, SettingsClient
from hems_rules.demo.bus import PrivateBus
from hems_rules.demo.gx import SimulatedSettings, SimulatedSystem
from hems_rules.demo.shelly_emulator import EmulatedShelly

HERE = Path(__file__).parent
REPO = HERE.parent
BASE = os.environ.get("BENCH_BASE", "69329bd")
SWITCH = "com.victronenergy.switch.hems"
PV = "/Ac/PvOnGrid/L1/Power"
CONSUMPTION = "/Ac/Consumption/L1/Power"
SURPLUS = "/Hems/Surplus/L1"
SURPLUS_DC = "/Hems/Surplus/Dc"
OUTPUT_STATE = "/SwitchableOutput/0/State"  # the relay as it reports itself
MODE = "/Settings/HEMS/Mode"
HOUSE = 200.0
LOAD = 1000.0
QUIET = 4.0  # s without a switch before the steady state is measured
STARTS = 5  # start-ups per tree; the median counts
DAY_RUNS = 2  # simulated days per tree; the fastest counts

Trees = dict[str, Path]


@contextlib.contextmanager
def base_tree() -> Iterator[Path | None]:
    """The base commit in a temporary worktree of this repository (None: not available,
    say in a shallow clone; then only this checkout is measured)."""
    with tempfile.TemporaryDirectory(prefix="hems-bench-") as tmp:
        tree = Path(tmp) / "base"
        added = subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), BASE],
            check=False,
            capture_output=True,
            text=True,
        )
        if added.returncode != 0:
            print(f"BENCH base {BASE} not available: {added.stderr.strip()}", flush=True)
            yield None
            return
        try:
            yield tree
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


@dataclass(frozen=True)
class Stack:
    """An interpreter and the packages beside it: this venv, or the GX's."""

    name: str  # "" for this venv, else a suffix of the figures' names
    python: str
    path: tuple[str, ...] = ()
    older: tuple[str, ...] = ()  # after `path`, for the trees other than this one


# What the GX bundle held before this checkout and holds no more: earlier trees need it.
OLDER_BUNDLE = (
    "jsonschema>=4.18,<5",
    "jsonschema-specifications",
    "referencing",
    "attrs",
    "typing-extensions",
    "rpds-py",
    "watchdog>=4",
)


def older_lib(venv: Path) -> Path:
    """OLDER_BUNDLE for `venv`'s Python, installed beside its packages from PyPI once."""
    older = venv / "older-lib"
    if not older.exists():
        partial = venv / "older-lib.partial"  # renamed once complete: never half a lib
        python = venv / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade"]
        subprocess.run([*pip, "--target", str(partial), *OLDER_BUNDLE], check=True)
        partial.rename(older)
    return older


# This venv; an earlier tree also gets what it imported then (main() installs it).
DEV = Stack("", sys.executable, (), (str(Path(sys.prefix) / "older-lib"),))


def gx_stack() -> Stack | None:
    """The GX's Python and packages as `make gx-stack` sets them up, if it has; for an
    earlier tree also what its bundle had."""
    venv = REPO / ".venv-gx"
    if not (venv / "bin" / "python").exists():
        return None
    older = older_lib(venv)
    return Stack("_gx", str(venv / "bin" / "python"), (str(venv / "gx-lib"),), (str(older),))


def env_for(tree: Path, stack: Stack = DEV) -> dict[str, str]:
    # Byte code is written and read as on a GX: without it every start compiles.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    older = stack.older if tree != REPO else ()
    return {**env, "PYTHONPATH": os.pathsep.join((*stack.path, *older, str(tree)))}


def service_options(tree: Path) -> list[str]:
    """The interpreter options the tree's installer gives `run` on a GX (say -OO): `run`
    is measured as the service runs it."""
    installer = tree / "install" / "install.sh"
    found = re.search(r"python3 (.*?) ?-m hems_rules\.cli run", installer.read_text())
    return found[1].split() if found else []


def compile_tree(tree: Path, stack: Stack = DEV) -> None:
    """The tree's byte code, made before its first start is timed."""
    subprocess.run(
        [stack.python, *service_options(tree), "-m", "compileall", "-q", str(tree / "hems_rules")],
        env=env_for(tree, stack),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def compare(name: str, values: dict[str, float], unit: str) -> None:
    for tree, value in values.items():
        report(f"{name}_{tree}", value, unit)
    if values.get("base"):
        report(f"{name}_ratio", values["new"] / values["base"], "new/base")


# -- pure workloads, in a process per tree --------------------------------------------


def workload(tree: Path, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "workload.py"), *args],
        env=env_for(tree),
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    return result


def decide_figures(trees: Trees) -> None:
    for count, cycles in ((10, 2000), (100, 500), (1000, 100)):
        with tempfile.TemporaryDirectory() as tmp:
            rules = Path(tmp) / "rules.yaml"
            rules.write_text(consumers_yaml(count))
            results = {
                t: workload(tree, "decide", str(rules), str(cycles)) for t, tree in trees.items()
            }
        compare(
            f"decide_{count}_consumers",
            {t: r["seconds_per_cycle"] * 1e6 for t, r in results.items()},
            "us/cycle",
        )


def day_figures(trees: Trees) -> None:
    # The example rules of the base: a later tree must still read them.
    rules = str(trees.get("base", REPO) / "rules")
    # Each day DAY_RUNS times, alternately, each in a fresh process; the fastest counts
    # (as decide()'s best round does): a burst of load on the shared machine lengthens
    # one run, never shortens one.
    runs = [{t: workload(tree, "day", rules) for t, tree in trees.items()} for _ in range(DAY_RUNS)]
    results = runs[0]  # the decisions are the same in every run
    compare("day_24h_1s_wall", {t: min(r[t]["wall"] for r in runs) for t in trees}, "s")
    for t, r in results.items():
        report(f"day_24h_cycles_{t}", r["cycles"], "cycles")
        report(f"day_24h_cycles_not_run_{t}", r["skipped"], "cycles")
        report(f"day_24h_switch_ons_{t}", r["switch_ons"], "switch-ons")


# -- `hems-rules run` against a simulated GX ------------------------------------------


PLAIN_SITE = "{phases: 1, battery_reservation: 0}"


def default_site(tree: Path, directory: Path) -> str:
    """The site a user gets by default. The code before this work had no status page, no
    history and no day state; this one has all three on by default, and `run` is measured
    with them on: only the page's port (0, any free one, so that the bench never collides
    with another) and the history's directory (`directory`, a temporary one) differ from
    a GX's."""
    if not (tree / "hems_rules" / "web").exists():
        return PLAIN_SITE
    return PLAIN_SITE.replace("}", f", web: {{port: 0}}, history: {{path: '{directory}'}}}}")


def rules_text(ports: list[int], power: float, site: str = PLAIN_SITE) -> str:
    lines = [f"site: {site}", "consumers:"]
    lines += [
        f"  - {{id: c{i}, shelly: {{host: 127.0.0.1, port: {p}}}, power: {power:g}, priority: {i}}}"
        for i, p in enumerate(ports)
    ]
    return "\n".join(lines) + "\n"


class Published:
    """What the switch service of the process under test publishes, as it arrives."""

    def __init__(self) -> None:
        self.values: Values = {}
        self.first_decision: float | None = None
        self._changed = asyncio.Event()

    def update(self, values: Values) -> None:
        self.values.update(values)
        if self.first_decision is None and values.get("/Devices/0/State") is not None:
            self.first_decision = time.perf_counter()
        self._changed.set()

    async def until(self, condition: Callable[[Values], bool], timeout: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not condition(self.values):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            shown = {k: v for k, v in self.values.items() if k.startswith(("/Hems", "/Devices/0"))}
            raise TimeoutError(f"hems-rules published {shown}") from None


Rules = Callable[[Path], str]  # the rules text, given a private directory


@contextlib.asynccontextmanager
async def running(
    tree: Path, rules: Rules, address: str, stack: Stack = DEV
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`hems-rules run` with its rules, logs, history and day state in a temporary
    directory (not the GX's /data, which both trees and every run would share)."""
    with tempfile.TemporaryDirectory() as tmp:
        private = Path(tmp)
        (private / "rules").mkdir()
        (private / "rules" / "rules.yaml").write_text(rules(private))
        day_state = (
            ["--day-state", str(private / "day-state.json")]
            if "--day-state" in (tree / "hems_rules" / "cli.py").read_text()
            else []
        )
        process = await asyncio.create_subprocess_exec(
            stack.python,
            *service_options(tree),
            "-m",
            "hems_rules.cli",
            "run",
            "--rules",
            str(private / "rules"),
            "--bus",
            address,
            "--log-dir",
            str(private / "log"),
            *day_state,
            env=env_for(tree, stack),
            cwd=tree,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            yield process
        finally:
            process.terminate()
            await process.wait()


def consumers(ports: list[int], power: float, tree: Path, site: str | None = None) -> Rules:
    """Rules for one consumer per port: with `site`, else the default site."""

    def text(directory: Path) -> str:
        return rules_text(ports, power, site or default_site(tree, directory / "history"))

    return text


async def mode_on(client: BusClient) -> None:
    """/Settings/HEMS/Mode 1 before hems-rules starts, as a user leaves it."""
    settings = SettingsClient(client)
    await settings.add([Setting(MODE, Variant("i", 0), Variant("i", 0), Variant("i", 1))])
    assert await settings.set(MODE, Variant("i", 1))


def switch_sets(devices: list[EmulatedShelly]) -> list[float]:
    return sorted(
        t
        for d in devices
        for (method, _), t in zip(d.calls, d.call_times, strict=True)
        if method == "Switch.Set"
    )


async def arrived(devices: list[EmulatedShelly], count: int, timeout: float = 10.0) -> float:
    """The time the `count`-th Switch.Set arrived (the emulators record it to the µs)."""
    deadline = time.monotonic() + timeout
    while len(sets := switch_sets(devices)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Switch.Set number {count}")
        await asyncio.sleep(0.0005)
    return sets[count - 1]


async def reaction(tree: Path, changes: int) -> list[float]:
    """Seconds from a PV change on D-Bus to Switch.Set at the Shelly, on and off in turn.

    Between samples the GX's meter follows: once hems-rules has read the relay back
    (its published surplus counts the load, or no longer does), Consumption shows it.
    """

    def surplus(watts: float) -> Callable[[Values], bool]:
        # A phase's deficit is published as the DC pool's: count both.
        def reached(v: Values) -> bool:
            phase, pool = v.get(SURPLUS), v.get(SURPLUS_DC)
            if not isinstance(phase, float) or not isinstance(pool, float):
                return False
            return abs(phase + pool - watts) < 0.5

        return reached

    def read_back(on: bool) -> Callable[[Values], bool]:
        # While a switch settles, the surplus is reckoned as the meter will show it, so
        # the read-back is seen in the relay's own State (waiting for a surplus that only
        # the end of `settle` shows made each change 5 s); a tree without the switch
        # pane (and without settling) shows it in its surplus.
        counted = surplus(2500 if on else -500)

        def reported(v: Values) -> bool:
            return v[OUTPUT_STATE] == int(on) if OUTPUT_STATE in v else counted(v)

        return reported

    samples: list[float] = []
    with PrivateBus() as bus:
        async with (
            SimulatedSettings(bus.address),
            SimulatedSystem(bus.address) as system,
            EmulatedShelly(loads=[LOAD]) as device,
        ):
            system.update({PV: HOUSE + 500, CONSUMPTION: HOUSE})
            published = Published()
            client = BusClient(await connect(bus.address))
            await mode_on(client)
            await client.watch(SWITCH, published.update, lambda: None)
            async with running(tree, consumers([device.port], LOAD, tree), bus.address):
                await published.until(lambda v: v.get("/Devices/0/State") == 0, timeout=30)
                await published.until(surplus(500))
                for n in range(changes):
                    on = n % 2 == 0
                    sent = len(switch_sets([device]))
                    start = time.perf_counter()
                    # On: 1500 W over the house. Off: 500 W, the heater's 1000 W counted back.
                    system.set(PV, HOUSE + 1500 if on else HOUSE + 500)
                    samples.append(await arrived([device], sent + 1) - start)
                    # The read-back, then the meter, each seen by hems-rules.
                    await published.until(read_back(on))
                    system.set(CONSUMPTION, HOUSE + (LOAD if on else 0))
                    await published.until(surplus(1500 if on else 500))
            client.bus.disconnect()
    return samples


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid`, in ns resolution (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def memory(pid: int) -> dict[str, float]:
    """MiB: VmRSS and VmHWM (its peak), and from smaps_rollup PSS, USS and anonymous."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rollup = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    )

    def mib(fields: dict[str, str], key: str) -> float:
        return int(fields[key].split()[0]) / 1024

    return {
        **{k: mib(status, k) for k in ("VmRSS", "VmHWM")},
        "Pss": mib(rollup, "Pss"),
        "Uss": mib(rollup, "Private_Clean") + mib(rollup, "Private_Dirty"),
        "Anonymous": mib(rollup, "Anonymous"),
    }


async def startup(tree: Path, site: str | None = None, stack: Stack = DEV) -> tuple[float, float]:
    """Seconds from starting `hems-rules run` (10 consumers) to its first decision and to
    its first Switch.Set."""
    with PrivateBus() as bus:
        devices = [EmulatedShelly(loads=[100.0]) for _ in range(10)]
        async with SimulatedSettings(bus.address), SimulatedSystem(bus.address) as system:
            for d in devices:
                await d.start()
            system.update({PV: 650.0, CONSUMPTION: 200.0})
            published = Published()
            client = BusClient(await connect(bus.address))
            await mode_on(client)
            await client.watch(SWITCH, published.update, lambda: None)
            start = time.perf_counter()
            rules = consumers([d.port for d in devices], 100, tree, site)
            async with running(tree, rules, bus.address, stack):
                first_set = await arrived(devices, 1, timeout=30)
                await published.until(lambda v: published.first_decision is not None)
                assert published.first_decision is not None
                figures = (published.first_decision - start, first_set - start)
            client.bus.disconnect()
            for d in devices:
                await d.stop()
    return figures


Watch = Callable[[], contextlib.AbstractAsyncContextManager[object]]


async def footprint(
    tree: Path,
    steady: float,
    site: str | None = None,
    watch: Watch | None = None,
    stack: Stack = DEV,
) -> dict[str, float]:
    """`hems-rules run` with 10 consumers: RSS and CPU at a steady state (while `watch()`
    looks on, when given: bench_views keeps the status page open).

    The simulated GX publishes PV every second, wobbling by a watt or two as systemcalc
    does, and its meter shows what the relays draw within 10 ms (a meter that lags more
    makes the base, which does not wait for the meter, switch on and off for ever).
    Four of the ten fit the surplus; the steady state begins once no relay has switched
    for a while.
    """
    with PrivateBus() as bus:
        devices = [EmulatedShelly(loads=[100.0]) for _ in range(10)]

        async def meter() -> None:
            while True:
                drawn = sum(s.load for d in devices for s in d.switches if s.output)
                system.update({CONSUMPTION: 200.0 + drawn})
                await asyncio.sleep(0.01)

        async with (
            SimulatedSettings(bus.address),
            SimulatedSystem(bus.address) as system,
        ):
            for d in devices:
                await d.start()
            system.update({PV: 650.0, CONSUMPTION: 200.0})
            metering = asyncio.create_task(meter())
            client = BusClient(await connect(bus.address))
            await mode_on(client)
            rules = consumers([d.port for d in devices], 100, tree, site)
            async with (
                running(tree, rules, bus.address, stack) as p,
                contextlib.AsyncExitStack() as watching,
            ):
                await arrived(devices, 1, timeout=30)
                n, switched, quiet_since = 0, 0, time.monotonic()
                while time.monotonic() - quiet_since < QUIET:
                    if n > 60:
                        raise TimeoutError(f"{tree}: relays still switching after a minute")
                    n += 1
                    system.update({PV: 650.0 + n % 3})
                    await asyncio.sleep(1)
                    if len(switch_sets(devices)) != switched:
                        switched, quiet_since = len(switch_sets(devices)), time.monotonic()
                if watch is not None:
                    await watching.enter_async_context(watch())
                cpu0, t0 = cpu_seconds(p.pid), time.monotonic()
                while time.monotonic() - t0 < steady:
                    n += 1
                    system.update({PV: 650.0 + n % 3})
                    await asyncio.sleep(1)
                cpu = (cpu_seconds(p.pid) - cpu0) / (time.monotonic() - t0)
                figures = {
                    "cpu": cpu * 100,
                    "switched_on": switched,
                    "switches_while_steady": len(switch_sets(devices)) - switched,
                    **memory(p.pid),
                }
            metering.cancel()
            client.bus.disconnect()
            for d in devices:
                await d.stop()
    return figures


async def run_figures(trees: Trees, only: set[str]) -> None:
    if "reaction" in only:
        changes = int(os.environ.get("BENCH_REACTION_CHANGES", "1000"))
        base_changes = int(os.environ.get("BENCH_REACTION_BASE_CHANGES", "200"))
        samples = {
            t: sorted(await reaction(tree, base_changes if t == "base" else changes))
            for t, tree in trees.items()
        }
        for t, s in samples.items():
            report(f"reaction_samples_{t}", len(s), "changes")
        compare("reaction_p50", {t: statistics.median(s) * 1000 for t, s in samples.items()}, "ms")
        compare(
            "reaction_p99",
            {t: s[max(0, int(len(s) * 0.99) - 1)] * 1000 for t, s in samples.items()},
            "ms",
        )
    if "run" in only:
        for stack in filter(None, (DEV, gx_stack())):
            await run_on(stack, trees)


async def run_on(stack: Stack, trees: Trees) -> None:
    """Start-up, memory and CPU of `run` on one stack, for each tree."""
    for tree in trees.values():
        compile_tree(tree, stack)
    starts: dict[str, list[tuple[float, float]]] = {t: [] for t in trees}
    for _ in range(STARTS):  # alternately, so that both see the same machine
        for t, tree in trees.items():
            starts[t].append(await startup(tree, stack=stack))
    for i, name in enumerate(("run_start_to_first_decision", "run_start_to_first_switch_set")):
        compare(
            name + stack.name,
            {t: statistics.median(s[i] for s in v) * 1000 for t, v in starts.items()},
            "ms",
        )
    steady = float(os.environ.get("BENCH_STEADY_SECONDS", "20"))
    results = {t: await footprint(tree, steady, stack=stack) for t, tree in trees.items()}
    for key, name, unit in (
        ("VmRSS", "run_10_consumers_rss", "MiB"),
        ("Pss", "run_10_consumers_pss", "MiB"),
        ("Uss", "run_10_consumers_uss", "MiB"),
        ("Anonymous", "run_10_consumers_anonymous", "MiB"),
        ("VmHWM", "run_10_consumers_peak_rss", "MiB"),
        ("cpu", "run_10_consumers_steady_cpu", "% of one core"),
    ):
        compare(name + stack.name, {t: r[key] for t, r in results.items()}, unit)
    for t, r in results.items():
        report(f"run_10_consumers_on{stack.name}_{t}", r["switched_on"], "Switch.Set before steady")
        steady_switches = r["switches_while_steady"]
        report(f"run_10_consumers_switches_while_steady{stack.name}_{t}", steady_switches, "")


def main() -> None:
    only = set(os.environ.get("BENCH_ONLY", "decide,day,reaction,run").split(","))
    with base_tree() as base:
        trees = {"new": REPO} if base is None else {"base": base, "new": REPO}
        if base is not None:
            older_lib(Path(sys.prefix))
        if "decide" in only:
            decide_figures(trees)
        if "day" in only:
            day_figures(trees)
        asyncio.run(run_figures(trees, only))


if __name__ == "__main__":
    main()
