"""The command line as a user meets it: exit codes and what is printed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hems_rules.cli import main
from hems_rules.demo.broker import mosquitto
from tests.bus import DbusDaemon
from tests.processes import processes

REPO = Path(__file__).parent.parent

SCENARIO = """\
rules:
  site: {phases: 1, battery_reservation: 0}
  consumers:
    - {id: heater, shelly: {host: h.invalid}, power: 1000}
timeline:
  - at: 0s
    system: {/Ac/PvOnGrid/L1/Power: 2000, /Ac/Consumption/L1/Power: 500}
expect:
  - at: 5s
    state: {heater: EXPECTED}
"""


def test_check_prints_a_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(REPO / "rules")]) == 0
    out = capsys.readouterr().out
    assert "rules OK: 6 consumers" in out
    assert "SOC 0% -> 5000 W, SOC 50% -> 2500 W, SOC 100% -> 0 W" in out
    assert out.index("pool_filter") < out.index("heater_l1") < out.index("pool_heater ")


def test_check_lists_errors_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text(
        "consumers:\n  - {id: x, power: 1, shelly: {host: h}, colour: red}\n"
    )
    assert main(["check", str(tmp_path)]) == 1
    assert "bad.yaml:2:42: consumers[0].colour: unknown key 'colour'" in capsys.readouterr().err


def test_simulate_prints_json_lines_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "ok.yaml"
    scenario.write_text(SCENARIO.replace("EXPECTED", "on"))
    assert main(["simulate", str(scenario)]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first == {
        "t": 0.0,
        "consumer": "heater",
        "state": "on",
        "reason": "on: 1000 W, 500 W left",
        "switch": "on",
    }


def test_a_failed_expectation_exits_1_and_names_itself(tmp_path: Path) -> None:
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text(SCENARIO.replace("EXPECTED", "off"))
    done = subprocess.run(
        [sys.executable, "-m", "hems_rules.cli", "simulate", str(scenario)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "FAILED wrong.yaml: expect[0] at 5s: heater is on, expected off" in done.stderr


def test_a_scenario_with_a_typo_is_refused_with_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "typo.yaml"
    scenario.write_text(SCENARIO.replace("EXPECTED", "on").replace("timeline:", "timelime:"))
    assert main(["simulate", str(scenario)]) == 2
    assert "typo.yaml:5:1: timelime: unknown key 'timelime'" in capsys.readouterr().err


def test_simulate_with_a_rules_directory(tmp_path: Path) -> None:
    scenario = tmp_path / "day.yaml"
    phases = ("L1", "L2", "L3")
    system = ", ".join(
        [f"/Ac/PvOnGrid/{p}/Power: 5000" for p in phases]
        + [f"/Ac/Consumption/{p}/Power: 300" for p in phases]
        + ["/Dc/Battery/Soc: 99"]
    )
    scenario.write_text(
        f"timeline:\n  - at: 0s\n    system: {{{system}}}\n"
        "    variables: {tank_temp: 50, rod_temp: 50}\n"
        "expect:\n  - at: 50s\n    state: {pool_filter: on, heater_l1: on, heater_l2: on}\n"
    )
    assert main(["simulate", str(scenario), "--rules", str(REPO / "rules")]) == 0


def hems_rules(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "hems_rules.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["kill", "hangup"])
def test_a_signal_stops_the_demo_with_its_private_bus_and_broker(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """`kill` or a closed terminal stops the demo as Ctrl-C does: the dbus-daemon and
    mosquitto it started end with it, and their temporary directories go (both signals
    used to leave them running)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hems_rules.cli", "demo", "--speed", "120", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        while "status page:" not in (line := process.stdout.readline()):
            assert line, "the demo ended before it was running"
        started = {p.pid: p.command for p in processes() if p.parent == process.pid}
        process.send_signal(sig)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    commands = " ".join(started.values())
    assert "dbus-daemon" in commands
    if mosquitto() is not None:
        assert "mosquitto" in commands
    assert [c for pid, c in started.items() if Path(f"/proc/{pid}").exists()] == []
    directories = re.findall(r"[= ](/\S+)/(?:bus|mosquitto)\.conf", commands)
    assert directories and not [d for d in directories if Path(d).exists()]


def test_the_demo_runs_from_any_directory_and_its_day_replays(tmp_path: Path) -> None:
    """Defect 12: the package carries its example rules; the demo records its day."""
    done = hems_rules(tmp_path, "demo", "--duration", "4s", "--speed", "120", "--port", "0")
    assert done.returncode == 0, done.stderr
    assert "Pool filter" in done.stdout and "battery reservation" in done.stdout
    *_, heater_l3 = (line for line in done.stdout.splitlines() if "Heater L3" in line)
    assert "D-Bus" in heater_l3 and "unavailable" not in heater_l3, "the dbus: relay works"
    assert "status page: http://127.0.0.1:" in done.stdout
    if mosquitto() is not None:  # #15 15c: through the real MQTT source, as `run` does
        assert re.search(r"tank_temp \d+(\.\d+)? \(via MQTT\)", done.stdout), done.stdout
    assert "demo ended after" in done.stdout
    # What a newcomer does next: ask what the day would have been with other rules.
    replayed = hems_rules(tmp_path, "replay", "demo-history")
    assert replayed.returncode == 0, replayed.stderr
    assert "replay of 2026-06-21, 09:30" in replayed.stdout
    assert "Pool filter" in replayed.stdout


# `run` with a signal sent to itself at a chosen moment outside the event loop: while
# its rules load (before the loop handles signals) or once the loop has closed.
SIGNAL_AT = """
import asyncio, os, signal, sys
import hems_rules.ruleset.compiler as compiler
when, sig = sys.argv[1], signal.Signals[sys.argv[2]]
def kill():
    os.kill(os.getpid(), sig)
if when == "loading":
    load = compiler.load_rules
    def load_rules(directory):
        kill()
        return load(directory)
    compiler.load_rules = load_rules
else:
    run = asyncio.run
    def run_then_kill(main):
        try:
            return run(main)
        finally:
            kill()
    asyncio.run = run_then_kill
from hems_rules.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize(
    ("when", "sig"),
    [
        ("loading", "SIGTERM"),
        ("loading", "SIGINT"),
        ("loading", "SIGHUP"),
        ("closed", "SIGHUP"),
        ("closed", "SIGTERM"),
    ],
)
def test_a_signal_outside_the_event_loop_stops_run_cleanly_or_does_nothing(
    dbus_daemon: DbusDaemon, tmp_path: Path, when: str, sig: str
) -> None:
    """A stop during start-up, before the event loop handles signals (imports and the
    rules load take seconds on a GX), or a signal after it closed, killed run with the
    signal's default action: a traceback and exit -2 for SIGINT, -15 for SIGTERM, and
    a reload (`svc -h`) -1. Now a stop exits 0 and a reload does not kill it."""
    (tmp_path / "rules.yaml").write_text("site: {phases: 1}\nconsumers: []\n")
    log = tmp_path / "log" / "info.log"
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_AT, when, sig, "run", "--rules", str(tmp_path),
         "--day-state", str(tmp_path / "day-state.json"),
         "--bus", dbus_daemon.address, "--log-dir", str(tmp_path / "log")],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        if when == "closed" or sig == "SIGHUP":
            # Start-up goes on (a SIGHUP is no stop) to wait for localsettings; then
            # SIGTERM ends it, and when the loop has closed the signal comes.
            deadline = time.monotonic() + 20
            while "waiting for com.victronenergy.settings" not in (
                log.read_text() if log.exists() else ""
            ):
                assert process.poll() is None, "the SIGHUP ended run"
                assert time.monotonic() < deadline, "run did not start"
                time.sleep(0.05)
            process.terminate()
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err
