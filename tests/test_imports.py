"""What each command loads: a GX runs `run`, and RAM there is shared with a dozen services."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent

# Never needed on a GX: the demo and its emulators, the simulator, a web server.
NOT_FOR_RUN = ("hems_rules.demo", "hems_rules.simulate", "aiohttp.web")


def loaded(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    )
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return set(modules)


def under(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.startswith(prefixes))


def test_run_loads_no_demo_emulator_simulator_web_server_or_unused_mqtt() -> None:
    modules = loaded("import hems_rules.cli, hems_rules.app")
    assert "hems_rules.app" in modules
    assert under(modules, NOT_FOR_RUN) == []
    assert under(modules, ("aiomqtt", "paho")) == [], "MQTT only for rules that use it"
    # A quarter of the start on a GX, and the first decision needs none of it: loaded
    # with the first Shelly or HTTP variable, after that decision (app.py).
    assert under(modules, ("aiohttp",)) == [], "an HTTP client only for rules that use one"


# The relays and the variable sources of `rules`, started as `run` starts them.
RELAYS_AND_SOURCES = """
import asyncio
from hems_rules.core.inputs import Inputs
from hems_rules.ruleset.compiler import compile_documents
from hems_rules.ruleset.yamldoc import parse_yaml
from hems_rules.shelly.relays import ShellyRelays
from hems_rules.sources.variables import VariableSources

doc, problems = parse_yaml("rules.yaml", {rules!r})
rules = compile_documents([doc], problems)
inputs = Inputs(rules)

async def main():
    async with (
        ShellyRelays(inputs.set_device) as relays,
        VariableSources(inputs, rules, lambda n, v: False),
    ):
        relays.sync(rules.consumers)

asyncio.run(main())
"""
DBUS_ONLY = """site: {phases: 1, battery_reservation: 0}
variables:
  outside: {dbus: {service: com.victronenergy.temperature.x, path: /Temperature}}
consumers:
  - {id: pump, dbus: {service: com.victronenergy.switch.x, output: 0}, power: 500}
"""


def test_rules_without_a_shelly_or_an_http_variable_never_load_aiohttp() -> None:
    assert under(loaded(RELAYS_AND_SOURCES.format(rules=DBUS_ONLY)), ("aiohttp",)) == []
    shelly = DBUS_ONLY.replace(
        "dbus: {service: com.victronenergy.switch.x, output: 0}", "shelly: {host: 127.0.0.1}"
    )
    http = DBUS_ONLY.replace(
        "dbus: {service: com.victronenergy.temperature.x, path: /Temperature}",
        "http: {url: 'http://127.0.0.1:9/t', json: t}",
    )
    for rules in (shelly, http):
        assert "aiohttp.client" in loaded(RELAYS_AND_SOURCES.format(rules=rules))


def test_check_loads_neither_the_app_nor_what_run_leaves_out() -> None:
    modules = loaded("from hems_rules.cli import main\nmain(['check', 'rules'])")
    assert "hems_rules.ruleset.compiler" in modules
    assert under(modules, (*NOT_FOR_RUN, "hems_rules.app", "dbus_fast", "aiohttp")) == []


def test_the_pure_engine_loads_no_rule_file_machinery() -> None:
    modules = loaded("import hems_rules.core.controller, hems_rules.core.engine")
    assert under(modules, ("yaml", "jsonschema", "hems_rules.ruleset.compiler")) == []


def test_the_core_and_the_simulator_load_no_io() -> None:
    """Imports flow sources -> core -> sinks: the core (the inputs store included) and
    the simulator stand on their own, without an event loop, a bus or a socket."""
    core = ", ".join(f"hems_rules.core.{m}" for m in ("controller", "engine", "inputs", "timers"))
    modules = loaded(f"import {core}, hems_rules.simulate.scenario")
    assert under(modules, ("asyncio", "dbus_fast", "aiohttp", "aiomqtt", "sqlite3", "socket")) == []
    assert under(modules, ("hems_rules.sources", "hems_rules.sinks", "hems_rules.loop")) == []
